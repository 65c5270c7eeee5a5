"""Faults and hostile input, end to end through the real CLI (issue 13): nothing lost, nothing
corrupted, nothing mislabelled.

One section per point of the issue. CliRunner runs what a process of its own is not needed for;
a subprocess (`python -m gradcheck_cli`) runs what needs one: signals, file descriptor 1, a
broken pipe, /dev/full, os._exit. Every failure is checked for its exit code and its exact
one-line message, and every file around it for being left byte for byte as it was.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
from helpers import (
    gradcheck,
    gradcheck_command,
    gradcheck_process,
    listing,
    process_environment,
    refusal,
)

EXIT_USAGE, EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 2, 129, 130, 141, 143
OLD_REPORT = '{"report": "from an earlier run; this run must not touch it"}\n'
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and descriptors")

TANH_MODEL = """\
import numpy as np


def forward(X, W):
    return float(np.sum(np.tanh(X @ W)))


def backward(X, W):
    d = 1.0 - np.tanh(X @ W) ** 2
    return d @ W.T, X.T @ d
"""
"""A correct model of X and W."""

BACKWARD = """

def backward(X, W):
    d = 1.0 - np.tanh(X @ W) ** 2
    return d @ W.T, X.T @ d
"""


# --- helpers -------------------------------------------------------------------------------------


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def shared_memory_segments() -> set[str]:
    """The POSIX shared-memory segments multiprocessing makes (psm_*; wnsm_* on Windows)."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return set()
    return {p.name for p in shm.iterdir() if p.name.startswith(("psm_", "wnsm_"))}


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc (no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie awaiting its reaper has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


# --- 1. an output never overwrites an input -------------------------------------------------------


@pytest.fixture
def inputs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current directory, holding inputs of every kind and names for them."""
    (tmp_path / "X.csv").write_text("0.1,0.2,0.3\n0.4,0.5,0.6\n0.7,0.8,0.9\n", encoding="utf-8")
    np.save(tmp_path / "W.npy", np.arange(6.0).reshape(3, 2))
    np.save(tmp_path / "b.npy", np.ones(2))
    np.savez(tmp_path / "in.npz", X=np.ones((3, 3)), W=np.ones((3, 2)))
    (tmp_path / "model.py").write_text(TANH_MODEL, encoding="utf-8")
    (tmp_path / "link.csv").symlink_to("X.csv")
    os.link(tmp_path / "X.csv", tmp_path / "hard.csv")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- 2. the model cannot corrupt the JSON on stdout -----------------------------------------------

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
    d = 1.0 - np.tanh(X @ W) ** 2
    return d @ W.T, X.T @ d
"""


@POSIX_ONLY
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_writes_to_descriptor_1_and_subprocesses_go_to_stderr(tmp_path: Path, command: str) -> None:
    """os.write(1, ...) and `echo` in a subprocess, at import and in forward/backward: stdout is
    exactly one JSON document, and the noise is on stderr."""
    (tmp_path / "noisy.py").write_text(NOISY_MODEL, encoding="utf-8")
    done = gradcheck_process(command, "--model", "noisy.py", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["command"] == command  # one document, nothing around it
    noises = ("noise at import", "a subprocess at import", "noise from forward")
    for noise in (*noises, "a subprocess in forward", "printed in forward", "noise from backward"):
        assert noise in done.stderr
        assert noise not in done.stdout


# --- 3. resource errors are bad input, not bugs ---------------------------------------------------


def test_memory_error_during_the_check_is_exit_2(
    inputs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running out of memory in the middle of the check: one line naming the allocation, exit 2,
    and the old report kept."""

    def out_of_memory(*args: Any, **kwargs: Any) -> NoReturn:
        raise MemoryError(
            "Unable to allocate 7.28 TiB for an array with shape (1000000, 1000000) and data "
            "type float64"
        )

    monkeypatch.setattr("gradcheck_cli.session.run_check", out_of_memory)
    (inputs_dir / "out.json").write_text(OLD_REPORT, encoding="utf-8")
    line = refusal(gradcheck("run", "--output", "out.json"))
    assert line == (
        "gradcheck: error: out of memory: Unable to allocate 7.28 TiB for an array with shape "
        "(1000000, 1000000) and data type float64 (the inputs need more memory than this machine "
        "has free: check fewer entries with --entries random:K, or use --mode fast)"
    )
    assert (inputs_dir / "out.json").read_text(encoding="utf-8") == OLD_REPORT


def test_memory_error_in_the_models_forward_names_the_file(inputs_dir: Path) -> None:
    """A MemoryError raised by the user's forward is the model's failure: exit 2, file and line."""
    (inputs_dir / "hungry.py").write_text(
        "def forward(X, W):\n    raise MemoryError('Unable to allocate 8 TiB')\n" + BACKWARD,
        encoding="utf-8",
    )
    line = refusal(gradcheck("run", "--model", "hungry.py"))
    assert line == (
        "gradcheck: error: hungry.py:2: forward raised MemoryError: Unable to allocate 8 TiB"
    )


# --- 4. a failed write of the report is never exit 0 ----------------------------------------------

FULL_DISK = "gradcheck: error: cannot write the report to stdout: No space left on device"


@POSIX_ONLY
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED=1"])
@pytest.mark.parametrize("output_format", ["json", "table"])
def test_stdout_on_a_full_disk_is_exit_2_with_one_line(
    tmp_path: Path, output_format: str, unbuffered: str
) -> None:
    """`> /dev/full`: exit 2 and one line, whether Python buffers stdout or not; never exit 0
    with a truncated report, never 120 or 3. (github annotations go through the same write as
    JSON.)"""
    with open("/dev/full", "w", encoding="utf-8") as full:
        done = gradcheck_process(
            "run",
            "--format",
            output_format,
            cwd=tmp_path,
            env=process_environment(PYTHONUNBUFFERED=unbuffered),
            stdout=full,
            stderr=subprocess.PIPE,
        )
    assert (done.returncode, done.stderr) == (EXIT_USAGE, FULL_DISK + "\n")


def test_a_full_disk_under_output_keeps_the_old_report(
    inputs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while the report file is written: the catalogue's `--output` prefix, exit 2, the old
    report intact and no temporary file left."""

    def disk_full(descriptor: int) -> NoReturn:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (inputs_dir / "out.json").write_text(OLD_REPORT, encoding="utf-8")
    before = listing(inputs_dir)
    monkeypatch.setattr(os, "fsync", disk_full)
    line = refusal(gradcheck("run", "--format", "json", "--output", "out.json"))
    assert line == (
        "gradcheck: error: --output out.json: cannot write the report: No space left on device"
    )
    assert listing(inputs_dir) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_outputs_are_written_all_together_or_not_at_all(inputs_dir: Path) -> None:
    """--junit-xml on a full device with --output keep.json and --plot: exit 2 naming the JUnit
    file, and neither the existing report nor the plot is written: every output of one run is
    committed together, only once each has been written whole."""
    (inputs_dir / "keep.json").write_text(OLD_REPORT, encoding="utf-8")
    before = listing(inputs_dir)
    args = ["run", "--junit-xml", "/dev/full", "--output", "keep.json", "--plot", "map.png"]
    line = refusal(gradcheck(*args))
    assert line == (
        "gradcheck: error: --junit-xml /dev/full: cannot write the report: No space left on device"
    )
    assert listing(inputs_dir) == before
    assert (inputs_dir / "keep.json").read_text(encoding="utf-8") == OLD_REPORT


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_to_a_full_device_names_the_option(inputs_dir: Path) -> None:
    """--output /dev/full (a real ENOSPC): exit 2 with the `--output` prefix."""
    line = refusal(gradcheck("run", "--output", "/dev/full"))
    assert line == (
        "gradcheck: error: --output /dev/full: cannot write the report: No space left on device"
    )


# --- 5. signals and a broken pipe ----------------------------------------------------------------


def marking_model(ready: Path, *, pause: float = 0.0) -> str:
    """Source of dense tanh whose forward leaves a file named after its process in `ready`
    (MainProcess, or a worker's SpawnProcess-N) on its 20th call in that process, when the
    check proper is under way, and sleeps `pause` seconds per call."""
    return f"""\
import multiprocessing
import time
from pathlib import Path

import numpy as np

READY = Path({str(ready)!r})


CALLS = [0]


def forward(X, W):
    CALLS[0] += 1
    if CALLS[0] == 20:  # past the checks of forward made while the model is bound
        (READY / multiprocessing.current_process().name).touch()
    time.sleep({pause!r})
    return float(np.sum(np.tanh(X @ W)))
{BACKWARD}"""


@pytest.fixture
def long_run(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """(working directory holding out.json, the directory of readiness markers, the arguments
    of a run that lasts tens of seconds: a model file on 100 x 100 inputs, --jobs 1)."""
    work, ready = tmp_path / "work", tmp_path / "ready"
    work.mkdir()
    ready.mkdir()
    rng = np.random.default_rng(0)
    np.save(work / "x.npy", rng.standard_normal((100, 100)))
    np.save(work / "w.npy", rng.standard_normal((100, 100)))
    (work / "slow.py").write_text(marking_model(ready), encoding="utf-8")
    (work / "out.json").write_text(OLD_REPORT, encoding="utf-8")
    args = ["run", "--model", "slow.py", "--x", "x.npy", "--w", "w.npy", "--output", "out.json"]
    return work, ready, [*args, "--jobs", "1"]


Ended = tuple[int, str, str]
"""A process's exit code, stdout and stderr."""


def signal_when_ready(
    command: list[str], work: Path, ready: Path, signals: list[int], *, gap: float = 0.0
) -> tuple[Ended, float]:
    """Start `command`, send `signals` (`gap` seconds apart) once its check is under way; how
    it ended, and the seconds it took to exit after the first signal."""
    process = subprocess.Popen(
        command,
        cwd=work,
        env=process_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with process:
        try:
            wait_for(lambda: (ready / "MainProcess").exists(), 20, "the check to be under way")
            assert process.poll() is None, "the run ended before it could be signalled"
            sent = time.monotonic()
            for k, signum in enumerate(signals):
                if k:
                    time.sleep(gap)
                process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=20)
            return (process.returncode, stdout, stderr), time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def stopped(code: int, word: str) -> Ended:
    """What a run stopped by a signal ends with: its code, nothing on stdout, one line."""
    return (code, "", f"gradcheck: {word}\n")


@POSIX_ONLY
@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [
        (signal.SIGTERM, EXIT_TERMINATED, "terminated"),
        (getattr(signal, "SIGHUP", signal.SIGTERM), EXIT_HANGUP, "hang-up"),
    ],
    ids=["SIGTERM", "SIGHUP"],
)
def test_sigterm_and_sighup_stop_a_long_run_promptly(
    long_run: tuple[Path, Path, list[str]], signum: int, code: int, word: str
) -> None:
    """SIGTERM (CI's cancel) and SIGHUP mid-check: 143/129 within a second, one line, no
    traceback, out.json untouched and no temporary file."""
    work, ready, args = long_run
    before = listing(work)
    ended, seconds = signal_when_ready(gradcheck_command(*args), work, ready, [signum])
    assert ended == stopped(code, word)
    assert seconds < 1.0
    assert listing(work) == before


@POSIX_ONLY
def test_a_second_ctrl_c_right_after_the_first_is_quiet(
    long_run: tuple[Path, Path, list[str]],
) -> None:
    """Two SIGINTs a few milliseconds apart: still 130 and one line, no traceback."""
    work, ready, args = long_run
    before = listing(work)
    ended, seconds = signal_when_ready(
        gradcheck_command(*args), work, ready, [signal.SIGINT, signal.SIGINT], gap=0.003
    )
    assert ended == stopped(EXIT_INTERRUPTED, "interrupted")
    assert seconds < 1.0
    assert listing(work) == before


SLOW_REPORT_WRITE = """\
import os
import time
from pathlib import Path

from gradcheck_cli.cli import main

real_fsync = os.fsync


def slow_fsync(descriptor):
    Path(os.environ["WRITING_MARKER"]).touch()
    time.sleep(30)
    real_fsync(descriptor)


os.fsync = slow_fsync
main()
"""
"""gradcheck, with the report's write held at its fsync, after a marker says it got there."""


@POSIX_ONLY
@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [
        (signal.SIGTERM, EXIT_TERMINATED, "terminated"),
        (getattr(signal, "SIGHUP", signal.SIGTERM), EXIT_HANGUP, "hang-up"),
    ],
    ids=["SIGTERM", "SIGHUP"],
)
def test_a_signal_while_the_report_is_written_leaves_no_temporary_file(
    tmp_path: Path, signum: int, code: int, word: str
) -> None:
    """SIGTERM/SIGHUP between the temporary file's write and its rename: the old report stays
    whole and no `.out.json.*.tmp` is left."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "out.json").write_text(OLD_REPORT, encoding="utf-8")
    marker = tmp_path / "writing"
    before = listing(work)
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_REPORT_WRITE, "run", "--output", "out.json"],
        cwd=work,
        env=process_environment(WRITING_MARKER=str(marker)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with process:
        try:
            wait_for(marker.exists, 20, "the report's write")
            assert list(work.glob(".out.json.*.tmp")), "no temporary file to clean up"
            process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert (process.returncode, stdout, stderr) == stopped(code, word)
    assert listing(work) == before


@POSIX_ONLY
@pytest.mark.parametrize("output_format", ["json", "table"])
def test_a_broken_pipe_exits_141_quietly(tmp_path: Path, output_format: str) -> None:
    """The reader of stdout is gone (`| head -c 10` that has finished): exit 141, not 1 (which
    would mean a wrong gradient under `set -o pipefail`), and nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = gradcheck_process(
            "run", "--format", output_format, cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (EXIT_BROKEN_PIPE, "")


@POSIX_ONLY
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_stops_every_worker_process_and_frees_shared_memory(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group) while --jobs 2 workers evaluate forward: 130 and
    one line; within 0.5 s no worker is left and no psm_/wnsm_ segment is left in /dev/shm."""
    work, ready = tmp_path / "work", tmp_path / "ready"
    work.mkdir()
    ready.mkdir()
    rng = np.random.default_rng(0)
    np.save(work / "x.npy", rng.standard_normal((100, 100)))  # 80 kB: in shared memory
    np.save(work / "w.npy", rng.standard_normal((100, 100)))
    # 1 ms a call: the check would take tens of seconds in one process, so the workers start.
    (work / "slow.py").write_text(marking_model(ready, pause=0.001), encoding="utf-8")
    segments_before = shared_memory_segments()
    process = subprocess.Popen(
        gradcheck_command(
            "run", "--model", "slow.py", "--x", "x.npy", "--w", "w.npy", "--jobs", "2"
        ),
        cwd=work,
        env=process_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a job
    )
    with process:
        try:
            wait_for(lambda: len(list(ready.glob("SpawnProcess-*"))) >= 2, 20, "busy workers")
            workers = [
                pid
                for pid in children_of(process.pid)
                if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            assert len(workers) == 2, workers
            assert shared_memory_segments() - segments_before, "no input in shared memory"
            os.killpg(process.pid, signal.SIGINT)
            wait_for(
                lambda: process.poll() is not None and not any(running(p) for p in workers),
                0.5,
                "the run and its workers to stop",
            )
        finally:
            if process.poll() is None:
                process.kill()
            stdout, stderr = process.communicate(timeout=10)
    assert (process.returncode, stdout, stderr) == stopped(EXIT_INTERRUPTED, "interrupted")
    assert shared_memory_segments() - segments_before == set()


# --- 6. a model that changes directory does not move the report -----------------------------------


def test_a_model_changing_directory_does_not_move_relative_outputs(inputs_dir: Path) -> None:
    """os.chdir at import (and in forward): --output and --junit-xml land where they were asked."""
    models = inputs_dir / "models"
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
    assert json.loads((inputs_dir / "report.json").read_text(encoding="utf-8"))["passed"] is True
    assert (inputs_dir / "report.xml").read_text(encoding="utf-8").startswith("<?xml")
    assert sorted(p.name for p in models.iterdir()) == ["wanders.py"]


# --- 8. terminal escapes never reach the terminal raw ---------------------------------------------

ESCAPE = "\x1b[2J"
SHOWN = "\\x1b[2J"


def test_escapes_in_a_file_name_are_shown_not_sent(inputs_dir: Path) -> None:
    """A CSV named ESC[2Jx.csv in the table, and a missing one in the error: shown as \\x1b."""
    (inputs_dir / f"{ESCAPE}x.csv").write_text("1,2,3\n4,5,6\n7,8,9\n", encoding="utf-8")
    result = gradcheck("run", "--x", f"{ESCAPE}x.csv")
    assert result.exit_code == 0, result.stderr
    assert f"from {SHOWN}x.csv" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr
    line = refusal(gradcheck("run", "--x", f"{ESCAPE}gone.csv"))
    assert line == f"gradcheck: error: {SHOWN}gone.csv: no such file (given to --x)"


def test_escapes_in_a_models_exception_are_shown_not_sent(inputs_dir: Path) -> None:
    """forward raising ValueError('ESC[2J...'): the one line shows \\x1b, the terminal gets none."""
    (inputs_dir / "hostile.py").write_text(
        f"def forward(X, W):\n    raise ValueError('bad{SHOWN}thing')\n" + BACKWARD,
        encoding="utf-8",
    )
    result = gradcheck("run", "--model", "hostile.py")
    assert refusal(result) == (
        f"gradcheck: error: hostile.py:2: forward raised ValueError: bad{SHOWN}thing"
    )
    assert "\x1b" not in result.stderr


def test_escapes_in_a_models_name_are_shown_not_sent(inputs_dir: Path) -> None:
    """A model file's `name` and `formula` holding ESC sequences: the table shows them escaped."""
    (inputs_dir / "named.py").write_text(
        f"name = 'evil{SHOWN}name'\nformula = 'f{SHOWN}x'\n\n" + TANH_MODEL, encoding="utf-8"
    )
    for command in ("run", "perturb", "sweep"):
        result = gradcheck(command, "--model", "named.py")
        assert result.exit_code == 0, result.stderr
        assert f"evil{SHOWN}name" in result.stdout
        assert "\x1b" not in result.stdout + result.stderr


# --- 9. running a model file is said plainly ------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "perturb", "sweep"])
def test_help_says_a_model_file_is_code_that_runs(command: str) -> None:
    """`--help` says that a model file runs, as `python FILE.py` would."""
    result = gradcheck(command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "A model file is code: gradcheck runs it, as 'python FILE.py' would." in text


# --- 10. the smaller ones ------------------------------------------------------------------------


def test_output_dash_is_stdout_never_a_file(inputs_dir: Path) -> None:
    """--output - writes the JSON report to stdout and creates no file named `-`."""
    before = listing(inputs_dir)
    result = gradcheck("run", "--format", "json", "--output", "-")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True
    assert listing(inputs_dir) == before


def test_output_through_a_symlink_writes_its_target(inputs_dir: Path) -> None:
    """--output link.json, a symlink: the target gets the report, the link stays a link."""
    (inputs_dir / "reports").mkdir()
    (inputs_dir / "reports" / "latest.json").write_text(OLD_REPORT, encoding="utf-8")
    (inputs_dir / "link.json").symlink_to("reports/latest.json")
    result = gradcheck("run", "--output", "link.json")
    assert result.exit_code == 0, result.stderr
    assert os.readlink(inputs_dir / "link.json") == "reports/latest.json"
    written = json.loads((inputs_dir / "reports" / "latest.json").read_text(encoding="utf-8"))
    assert written["passed"] is True
    assert sorted(p.name for p in (inputs_dir / "reports").iterdir()) == ["latest.json"]


@pytest.mark.parametrize(("shadow", "command"), [("rich", "run"), ("threadpoolctl", "sweep")])
def test_a_module_next_to_the_model_cannot_shadow_the_tools_own(
    tmp_path: Path, shadow: str, command: str
) -> None:
    """A module named rich.py (threadpoolctl.py) beside a model that imports it: the table is
    still drawn, exit 0 and not 3. In a fresh process, where rich is not yet loaded. (numpy is
    imported before any model file, as the loaders need it.)"""
    project = tmp_path / "project"  # not the current directory, which -m puts on sys.path
    project.mkdir()
    (project / f"{shadow}.py").write_text("HELPER = 'the user module'\n", encoding="utf-8")
    (project / "model.py").write_text(f"import {shadow}  # noqa: F401\n" + TANH_MODEL, "utf-8")
    done = gradcheck_process(command, "--model", "project/model.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith("PASSED")


@POSIX_ONLY
def test_os_exit_in_forward_is_exit_2_not_0(tmp_path: Path) -> None:
    """os._exit(0) in forward, in gradcheck's process: exit 2 naming the file and line, where
    it would otherwise end the process with 0 and an empty stdout."""
    (tmp_path / "quits.py").write_text(
        "import os\n\n\ndef forward(X, W):\n    os._exit(0)\n" + BACKWARD, encoding="utf-8"
    )
    done = gradcheck_process("run", "--model", "quits.py", "--format", "json", cwd=tmp_path)
    line = (
        "quits.py:5: forward raised ExitRefused: os._exit(0) would end gradcheck's process "
        "before it reports; a model must return a value or raise"
    )
    assert (done.returncode, done.stderr) == (EXIT_USAGE, f"gradcheck: error: {line}\n")
    # --format json: the error document, as on every exit 2 (issue 24), not an empty stdout.
    assert json.loads(done.stdout)["error"] == line


@POSIX_ONLY
def test_os_exit_in_a_worker_process_is_exit_2(tmp_path: Path) -> None:
    """os._exit(0) in forward on the --jobs workers only: the dead worker is exit 2 too."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((20, 20)))
    np.save(tmp_path / "w.npy", rng.standard_normal((20, 20)))
    (tmp_path / "quits.py").write_text(
        "import multiprocessing\nimport os\nimport time\n\nimport numpy as np\n\n\n"
        "def forward(X, W):\n"
        "    if multiprocessing.current_process().name != 'MainProcess':\n"
        "        os._exit(0)\n"
        "    time.sleep(0.003)  # 800 entries: ~5 s in one process, so the workers start\n"
        "    return float(np.sum(np.tanh(X @ W)))\n" + BACKWARD,
        encoding="utf-8",
    )
    done = gradcheck_process(
        *("run", "--model", "quits.py", "--x", "x.npy", "--w", "w.npy", "--jobs", "2"), cwd=tmp_path
    )
    assert (done.returncode, done.stdout) == (EXIT_USAGE, "")
    assert done.stderr.startswith("gradcheck: error: quits.py: a worker process ")
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="--plot needs matplotlib")
@POSIX_ONLY
def test_sweep_plot_follows_the_umask_like_output(inputs_dir: Path) -> None:
    """sweep --plot: a new PNG gets 0o666 minus the umask, as --output does; an existing file
    keeps its own mode."""
    (inputs_dir / "kept.png").write_bytes(b"old")
    os.chmod(inputs_dir / "kept.png", 0o600)
    old_umask = os.umask(0o027)
    try:
        for name in ("new.png", "kept.png"):
            result = gradcheck("sweep", "--plot", name, "--output", f"{name}.json")
            assert result.exit_code == 0, result.stderr
    finally:
        os.umask(old_umask)
    assert (inputs_dir / "new.png").read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE((inputs_dir / "new.png").stat().st_mode) == 0o640
    assert stat.S_IMODE((inputs_dir / "new.png.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((inputs_dir / "kept.png").stat().st_mode) == 0o600


def test_jobs_beyond_the_cores_is_capped_and_said(inputs_dir: Path) -> None:
    """--jobs larger than any machine (2^64) neither overflows nor starts thousands of
    processes: it is capped at the cores this process may use, one line on stderr says so, and
    the report's jobs never exceeds that."""
    from gradcheck_cli.numerics.workers import default_jobs

    huge = str(2**64)
    result = gradcheck("run", "--jobs", huge, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"gradcheck: --jobs {huge} capped at {default_jobs()}, the cores this process may use\n"
    )
    assert json.loads(result.stdout)["settings"]["jobs"] <= default_jobs()
