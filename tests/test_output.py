"""The outputs: the JSON report as strict JSON text, output paths checked (never over an input),
atomic writes (through symlinks, cleaned up on any exit, with the usual permissions), stdout
holding the report alone whatever the model prints, and each output landing where it was asked.
"""

from __future__ import annotations

import errno
import importlib.util
import io
import json
import math
import os
import stat
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import TANH_MODEL, gradcheck, gradcheck_process, listing
from hypothesis import given
from hypothesis import strategies as st

from gradcheck_cli.errors import InputError
from gradcheck_cli.render.output import (
    OutputError,
    check_output_path,
    is_stdout,
    remove_temporary_files,
    to_json_text,
    write_atomically,
    write_bytes_atomically,
    write_stdout,
)

# --- to_json_text -------------------------------------------------------------------------------


def test_non_finite_floats_become_null() -> None:
    """NaN and ±inf, Python or numpy, anywhere in the document, are written as null."""
    document = {
        "nan": math.nan,
        "inf": math.inf,
        "neg": [-math.inf, 1.0],
        "nested": {"np": np.float64("nan"), "np32": np.float32("inf")},
        "array": np.array([1.5, np.nan, -np.inf]),
    }
    text = to_json_text(document)
    assert "NaN" not in text
    assert "Infinity" not in text
    assert json.loads(text) == {
        "nan": None,
        "inf": None,
        "neg": [None, 1.0],
        "nested": {"np": None, "np32": None},
        "array": [1.5, None, None],
    }


def test_numpy_values_become_plain_json() -> None:
    """numpy scalars become numbers or booleans, arrays and tuples become lists."""
    document = {
        "int": np.int64(3),
        "uint": np.uint8(255),
        "bool": np.bool_(True),
        "float32": np.float32(0.1),
        "matrix": np.array([[1, 2], [3, 4]]),
        "shape": (3, 2),
        "tuple_of_arrays": (np.zeros(1), np.ones(1)),
    }
    assert json.loads(to_json_text(document)) == {
        "int": 3,
        "uint": 255,
        "bool": True,
        "float32": 0.10000000149011612,
        "matrix": [[1, 2], [3, 4]],
        "shape": [3, 2],
        "tuple_of_arrays": [[0.0], [1.0]],
    }


def test_layout_is_indented_by_two() -> None:
    """The text is json.dumps with indent=2, keys in the document's order."""
    assert to_json_text({"b": 1, "a": [True, None]}) == (
        '{\n  "b": 1,\n  "a": [\n    true,\n    null\n  ]\n}'
    )


def test_unknown_types_are_still_refused() -> None:
    """Values JSON cannot express are an error, not silently stringified."""
    with pytest.raises(TypeError):
        to_json_text({"x": object()})


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_round_trip_exactly(value: float) -> None:
    """Every finite float reads back with the same bits (signed zero included)."""
    back = json.loads(to_json_text({"x": value, "np": np.float64(value)}))
    assert struct.pack("<d", back["x"]) == struct.pack("<d", value)
    assert struct.pack("<d", back["np"]) == struct.pack("<d", value)


# --- check_output_path --------------------------------------------------------------------------


def test_check_output_path_accepts_new_and_existing_files(tmp_path: Path) -> None:
    """A new file in a writable directory, or an existing file, is fine."""
    check_output_path(tmp_path / "new.json")
    (tmp_path / "old.json").write_text("{}")
    check_output_path(tmp_path / "old.json")


def test_check_output_path_missing_directory(tmp_path: Path) -> None:
    """A path in a directory that does not exist is an OutputError naming both."""
    path = tmp_path / "missing" / "report.json"
    with pytest.raises(OutputError) as caught:
        check_output_path(path)
    assert str(caught.value) == (
        f"{path}: cannot write the report: directory {tmp_path / 'missing'} does not exist"
    )


def test_check_output_path_parent_is_a_file(tmp_path: Path) -> None:
    """A path under a regular file is refused: its parent is not a directory."""
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "report.json"
    with pytest.raises(OutputError) as caught:
        check_output_path(path)
    assert str(caught.value) == (
        f"{path}: cannot write the report: {tmp_path / 'file'} is not a directory"
    )


def test_check_output_path_is_a_directory(tmp_path: Path) -> None:
    """An existing directory cannot be the report file."""
    with pytest.raises(OutputError) as caught:
        check_output_path(tmp_path)
    assert str(caught.value) == f"{tmp_path}: is a directory; the report needs a file path"


def test_check_output_path_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory the user may not write to is refused (simulated: tests run as root)."""
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        if Path(path) == tmp_path and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    path = tmp_path / "report.json"
    with pytest.raises(OutputError) as caught:
        check_output_path(path)
    assert str(caught.value) == (
        f"{path}: cannot write the report: directory {tmp_path} is not writable"
    )


def test_output_error_is_an_input_error() -> None:
    """The CLI reports OutputError like any bad input (exit 2)."""
    assert issubclass(OutputError, InputError)


# --- write_atomically ---------------------------------------------------------------------------


def test_write_creates_the_file_with_the_text(tmp_path: Path) -> None:
    """The file holds exactly the text, UTF-8 encoded, and nothing else is left behind."""
    path = tmp_path / "report.json"
    write_atomically(path, '{"δ": 1}\n')
    assert path.read_bytes() == '{"δ": 1}\n'.encode()
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_gives_a_new_file_the_usual_permissions(tmp_path: Path) -> None:
    """A new file gets 0o666 minus the umask, like any file the user creates (not 0o600)."""
    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "report.json", "{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644


def test_write_replaces_an_existing_file_keeping_its_permissions(tmp_path: Path) -> None:
    """Overwriting replaces the content and keeps the old file's permission bits."""
    path = tmp_path / "report.json"
    path.write_text("old")
    path.chmod(0o640)
    write_atomically(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(tmp_path.iterdir()) == [path]


def test_failed_replace_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the final rename fails, the old file is untouched and the temp file is removed."""
    path = tmp_path / "report.json"
    path.write_text("old")

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OutputError) as caught:
        write_atomically(path, "new")
    assert str(caught.value) == f"{path}: cannot write the report: Invalid cross-device link"
    assert path.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_failed_write_of_data_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while writing the data leaves the old file whole and no temp file."""
    path = tmp_path / "report.json"
    path.write_text("old")

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_interrupt_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of writing propagates, leaving the old file and no temp file."""
    path = tmp_path / "report.json"
    path.write_text("old")

    def interrupted(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_into_missing_directory_is_an_output_error(tmp_path: Path) -> None:
    """Writing where the directory has gone is an OutputError naming the path."""
    path = tmp_path / "gone" / "report.json"
    with pytest.raises(OutputError) as caught:
        write_atomically(path, "{}")
    assert str(caught.value) == f"{path}: cannot write the report: No such file or directory"
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_gives_a_new_file_the_usual_permissions(tmp_path: Path) -> None:
    """A plot (bytes) gets 0o666 minus the umask like a report, not mkstemp's 0o600."""
    umask = os.umask(0o022)
    try:
        write_bytes_atomically(tmp_path / "plot.png", b"\x89PNG\r\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "plot.png").read_bytes() == b"\x89PNG\r\n"
    assert stat.S_IMODE((tmp_path / "plot.png").stat().st_mode) == 0o644
    assert sorted(tmp_path.iterdir()) == [tmp_path / "plot.png"]


def test_write_bytes_keeps_an_existing_files_permissions(tmp_path: Path) -> None:
    """Replacing an existing plot keeps its permission bits."""
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    path.chmod(0o604)
    write_bytes_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


@pytest.mark.parametrize("exit_signal", [KeyboardInterrupt, SystemExit])
def test_write_bytes_removes_its_temp_on_any_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_signal: type[BaseException]
) -> None:
    """KeyboardInterrupt or SystemExit during a bytes write leaves the old file and no temp."""
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")

    def interrupted(descriptor: int) -> None:
        raise exit_signal

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(exit_signal):
        write_bytes_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    """A report path that is a symlink is written through: the target is replaced atomically
    (its mode kept, no temp file left in its directory) and the link stays a link."""
    target_dir = tmp_path / "real"
    target_dir.mkdir()
    target = target_dir / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    write_atomically(link, "new")
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(target_dir.iterdir()) == [target]
    assert sorted(tmp_path.iterdir()) == [link, target_dir]


def test_write_through_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    """A symlink to a file not yet there is written through: the target appears, the link stays."""
    link = tmp_path / "out.json"
    link.symlink_to("made.json")
    write_atomically(link, "{}")
    assert link.is_symlink()
    assert (tmp_path / "made.json").read_text() == "{}"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_write_to_a_device_writes_in_place(tmp_path: Path) -> None:
    """A link to /dev/null is written through in place: no rename over the device node."""
    link = tmp_path / "discard.json"
    link.symlink_to("/dev/null")
    write_atomically(link, "{}")
    assert link.is_symlink()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(tmp_path.iterdir()) == [link]


def test_remove_temporary_files_cleans_a_write_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM handler calling remove_temporary_files mid-write removes the temp file, even
    if it then ends the process without unwinding (os._exit skips every finally)."""
    path = tmp_path / "out.json"
    path.write_text("old")
    seen: dict[str, list[str]] = {}

    def handler_during_fsync(descriptor: int) -> None:
        seen["before"] = sorted(p.name for p in tmp_path.iterdir())
        remove_temporary_files()
        seen["after"] = sorted(p.name for p in tmp_path.iterdir())
        raise SystemExit(143)

    monkeypatch.setattr(os, "fsync", handler_during_fsync)
    with pytest.raises(SystemExit):
        write_atomically(path, "new")
    assert len(seen["before"]) == 2
    assert seen["before"][0].startswith(".out.json.")
    assert seen["before"][0].endswith(".tmp")
    assert seen["after"] == ["out.json"]
    assert path.read_text() == "old"
    remove_temporary_files()  # nothing left in flight: a second call is harmless


# --- check_output_path: never over an input, resolved before user code runs ---------------------


def test_check_output_path_returns_the_absolute_resolved_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative --output resolves against the directory at check time, not at write time."""
    monkeypatch.chdir(tmp_path)
    resolved = check_output_path(Path("out.json"))
    assert resolved == tmp_path.resolve() / "out.json"
    monkeypatch.chdir(tmp_path.parent)  # a model's os.chdir at import must not move the report
    write_atomically(resolved, "{}")
    assert (tmp_path / "out.json").read_text() == "{}"


def test_check_output_path_resolves_a_symlink_to_its_target(tmp_path: Path) -> None:
    """A symlinked --output resolves to the file the link points to."""
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link.json").symlink_to("real.json")
    assert check_output_path(tmp_path / "link.json") == (tmp_path / "real.json").resolve()


def _inputs(tmp_path: Path) -> dict[Path, str]:
    (tmp_path / "x.csv").write_text("1,2\n")
    (tmp_path / "w.npz").write_bytes(b"PK")
    return {tmp_path / "x.csv": "--x", tmp_path / "w.npz": "--input w"}


@pytest.mark.parametrize(
    ("spelling", "option"),
    [
        ("x.csv", "--x"),
        ("./x.csv", "--x"),
        ("sub/../x.csv", "--x"),
        ("link.csv", "--x"),
        ("hardlink.csv", "--x"),
        ("w.npz", "--input w"),
    ],
)
def test_output_that_is_an_input_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str, option: str
) -> None:
    """--output naming an input file, however spelled (./, .., symlink, hard link), is refused."""
    protected = _inputs(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.csv").symlink_to("x.csv")
    os.link(tmp_path / "x.csv", tmp_path / "hardlink.csv")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError) as caught:
        check_output_path(Path(spelling), protected=protected)
    assert str(caught.value) == (
        f"{Path(spelling)}: is the file given to {option}; refusing to overwrite an input"
    )
    assert (tmp_path / "x.csv").read_text() == "1,2\n"


def test_relative_protected_paths_match_absolute_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inputs given as relative paths are matched against an absolute --output too."""
    (tmp_path / "x.csv").write_text("1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="is the file given to --x;"):
        check_output_path(tmp_path / "x.csv", protected={Path("x.csv"): "--x"})


def test_output_beside_the_inputs_is_accepted(tmp_path: Path) -> None:
    """A report next to the inputs, new or existing, is fine and comes back absolute."""
    protected = _inputs(tmp_path)
    assert check_output_path(tmp_path / "out.json", protected=protected) == (
        tmp_path.resolve() / "out.json"
    )
    (tmp_path / "old.json").write_text("{}")
    check_output_path(tmp_path / "old.json", protected=protected)


def test_output_symlink_loop_is_refused(tmp_path: Path) -> None:
    """An --output that is a symlink loop is refused by name."""
    (tmp_path / "a.json").symlink_to("b.json")
    (tmp_path / "b.json").symlink_to("a.json")
    with pytest.raises(OutputError) as caught:
        check_output_path(tmp_path / "a.json")
    assert (
        str(caught.value)
        == f"{tmp_path / 'a.json'}: is a symlink loop; the report needs a file path"
    )


def test_output_symlink_into_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A symlinked --output is checked where the write goes: its target's directory."""
    (tmp_path / "out.json").symlink_to(tmp_path / "gone" / "out.json")
    with pytest.raises(OutputError) as caught:
        check_output_path(tmp_path / "out.json")
    assert str(caught.value) == (
        f"{tmp_path / 'out.json'}: cannot write the report: directory {tmp_path / 'gone'} "
        "does not exist"
    )


def test_control_characters_in_the_output_path_are_escaped(tmp_path: Path) -> None:
    """An --output path holding ESC[2J reaches the message as visible text."""
    path = tmp_path / "\x1b[2J" / "out.json"
    with pytest.raises(OutputError) as caught:
        check_output_path(path)
    message = str(caught.value)
    assert "\x1b" not in message
    assert message == (
        f"{tmp_path}/\\x1b[2J/out.json: cannot write the report: directory "
        f"{tmp_path}/\\x1b[2J does not exist"
    )


# --- stdout -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("-", True), (Path("-"), True), ("out.json", False), ("./-", False), ("--", False)],
)
def test_is_stdout(given: str | Path, expected: bool) -> None:
    """Only `-` itself means stdout; `./-` is a file named `-`."""
    assert is_stdout(given) is expected


def test_check_output_path_leaves_stdout_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-` is returned as is: no check, and no file named `-` anywhere."""
    monkeypatch.chdir(tmp_path)
    assert check_output_path(Path("-")) == Path("-")
    assert list(tmp_path.iterdir()) == []


class FailingStream(io.StringIO):
    """A stdout whose writes (or flushes) fail with `error`, like a full disk or a closed pipe."""

    def __init__(self, error: BaseException, *, on_flush: bool = False) -> None:
        super().__init__()
        self.error = error
        self.on_flush = on_flush

    def write(self, text: str) -> int:
        if not self.on_flush:
            raise self.error
        return super().write(text)

    def flush(self) -> None:
        if self.on_flush:
            raise self.error


def test_write_stdout_writes_and_flushes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The text reaches stdout whole."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    write_stdout('{"passed": true}\n')
    assert stream.getvalue() == '{"passed": true}\n'


@pytest.mark.parametrize("on_flush", [False, True], ids=["write", "flush"])
@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "No space left on device"), (errno.EIO, "Input/output error")],
)
def test_write_stdout_failure_is_an_output_error(
    monkeypatch: pytest.MonkeyPatch, on_flush: bool, code: int, reason: str
) -> None:
    """A full disk (`> /dev/full`) or an I/O error on stdout is one line, not a traceback."""
    monkeypatch.setattr(sys, "stdout", FailingStream(OSError(code, reason), on_flush=on_flush))
    with pytest.raises(OutputError) as caught:
        write_stdout("{}\n")
    assert str(caught.value) == f"cannot write the report to stdout: {reason}"


def test_write_stdout_lets_a_broken_pipe_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that went away (`| head`) is a BrokenPipeError, for the CLI to end quietly."""
    monkeypatch.setattr(sys, "stdout", FailingStream(BrokenPipeError(errno.EPIPE, "Broken pipe")))
    with pytest.raises(BrokenPipeError):
        write_stdout("{}\n")


def test_write_stdout_with_stdout_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started with stdout closed (`>&-`, sys.stdout is None): one line, not AttributeError."""
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(OutputError) as caught:
        write_stdout("{}\n")
    assert str(caught.value) == "cannot write the report to stdout: stdout is closed"


def test_write_stdout_to_a_closed_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stdout closed while running (ValueError from the stream) is one line too."""
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)
    with pytest.raises(OutputError) as caught:
        write_stdout("{}\n")
    assert str(caught.value) == "cannot write the report to stdout: I/O operation on closed file"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_write_to_a_full_device_is_an_output_error(tmp_path: Path) -> None:
    """A device written in place that fails (/dev/full) is an OutputError naming the path."""
    link = tmp_path / "out.json"
    link.symlink_to("/dev/full")
    with pytest.raises(OutputError) as caught:
        write_atomically(link, "{}")
    assert str(caught.value) == f"{link}: cannot write the report: No space left on device"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


# --- the command line's outputs -----------------------------------------------------------------

OLD_REPORT = '{"report": "from an earlier run; this run must not touch it"}\n'
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX descriptors and modes")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory, the current one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


NOISY_MODEL = """\
import os
import subprocess

import numpy as np

os.write(1, b"noise at import\\n")
subprocess.run(["echo", "a subprocess at import"], check=True)


def forward(X, W):
    os.write(1, b"noise from forward")
    subprocess.run(["echo", "a subprocess in forward"], check=True)
    print("printed in forward")
    return float(np.sum(np.tanh(X @ W)))


def backward(X, W):
    os.write(1, b"noise from backward")
    print("printed in backward")
    d = 1.0 - np.tanh(X @ W) ** 2
    return d @ W.T, X.T @ d
"""


@POSIX_ONLY
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_writes_to_descriptor_1_and_subprocesses_go_to_stderr(tmp_path: Path, command: str) -> None:
    """os.write(1, ...), `echo` in a subprocess and print(), at import and in forward and
    backward: stdout is exactly one JSON document, of a passing run, and the noise is on
    stderr."""
    (tmp_path / "noisy.py").write_text(NOISY_MODEL, encoding="utf-8")
    done = gradcheck_process(command, "--model", "noisy.py", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # one document, nothing around it
    assert (report["command"], report["passed"]) == (command, True)
    noises = ["noise at import", "a subprocess at import", "noise from forward"]
    noises += ["a subprocess in forward", "printed in forward", "noise from backward"]
    for noise in (*noises, "printed in backward"):
        assert noise in done.stderr
        assert noise not in done.stdout


def test_a_model_changing_directory_does_not_move_relative_outputs(workdir: Path) -> None:
    """os.chdir at import (and in forward): --output and --junit-xml land where they were asked."""
    models = workdir / "models"
    models.mkdir()
    (models / "wanders.py").write_text(
        "import os\n\nos.chdir(os.path.dirname(os.path.abspath(__file__)))\n\n"
        + TANH_MODEL.replace("def forward(X, W):\n", "def forward(X, W):\n    os.chdir('/')\n"),
        encoding="utf-8",
    )
    result = gradcheck(
        "run",
        "--model",
        "models/wanders.py",
        "--output",
        "report.json",
        "--junit-xml",
        "report.xml",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads((workdir / "report.json").read_text(encoding="utf-8"))["passed"] is True
    assert (workdir / "report.xml").read_text(encoding="utf-8").startswith("<?xml")
    assert sorted(p.name for p in models.iterdir()) == ["wanders.py"]


def test_output_dash_is_stdout_never_a_file(workdir: Path) -> None:
    """--output - writes the JSON report to stdout and creates no file named `-`."""
    before = listing(workdir)
    result = gradcheck("run", "--format", "json", "--output", "-")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True
    assert listing(workdir) == before


def test_output_through_a_symlink_writes_its_target(workdir: Path) -> None:
    """--output link.json, a symlink: the target gets the report, the link stays a link."""
    (workdir / "reports").mkdir()
    (workdir / "reports" / "latest.json").write_text(OLD_REPORT, encoding="utf-8")
    (workdir / "link.json").symlink_to("reports/latest.json")
    result = gradcheck("run", "--output", "link.json")
    assert result.exit_code == 0, result.stderr
    assert os.readlink(workdir / "link.json") == "reports/latest.json"
    written = json.loads((workdir / "reports" / "latest.json").read_text(encoding="utf-8"))
    assert written["passed"] is True
    assert sorted(p.name for p in (workdir / "reports").iterdir()) == ["latest.json"]


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="--plot needs matplotlib")
@POSIX_ONLY
def test_sweep_plot_follows_the_umask_like_output(workdir: Path) -> None:
    """sweep --plot: a new PNG gets 0o666 minus the umask, as --output does; an existing file
    keeps its own mode."""
    (workdir / "kept.png").write_bytes(b"old")
    os.chmod(workdir / "kept.png", 0o600)
    old_umask = os.umask(0o027)
    try:
        for name in ("new.png", "kept.png"):
            result = gradcheck("sweep", "--plot", name, "--output", f"{name}.json")
            assert result.exit_code == 0, result.stderr
    finally:
        os.umask(old_umask)
    assert (workdir / "new.png").read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE((workdir / "new.png").stat().st_mode) == 0o640
    assert stat.S_IMODE((workdir / "new.png.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((workdir / "kept.png").stat().st_mode) == 0o600
