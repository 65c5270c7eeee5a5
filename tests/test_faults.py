"""What goes wrong around a run: memory that runs out, a full disk, signals and Ctrl-C, a
reader that goes away, worker processes that die, user code that ends the process or shadows the
tool's own modules. Nothing is lost, nothing corrupted, nothing mislabelled: every failure is
its exit code and its exact one line, and every file around it is left byte for byte as it was.

What needs a process of its own (signals, file descriptor 1, a broken pipe, /dev/full,
os._exit, a fresh interpreter) runs in one (helpers.gradcheck_process); the rest in-process.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
from helpers import (
    TANH_BACKWARD,
    TANH_MODEL,
    gradcheck,
    gradcheck_command,
    gradcheck_process,
    listing,
    process_environment,
    refusal,
)

EXIT_USAGE, EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 2, 129, 130, 141, 143
OLD_REPORT = '{"report": "from an earlier run; this run must not touch it"}\n'
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and descriptors")

# --- helpers -------------------------------------------------------------------------------------


def single_line(stderr: str) -> str:
    """The one line on stderr."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


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


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory, the current one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- memory runs out: the inputs' fault or the model's, never gradcheck's -----------------------


def test_memory_error_during_the_check_is_exit_2(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running out of memory in the middle of the check: one line naming the allocation, exit 2,
    and the old report kept."""

    def out_of_memory(*args: Any, **kwargs: Any) -> NoReturn:
        raise MemoryError(
            "Unable to allocate 7.28 TiB for an array with shape (1000000, 1000000) and data "
            "type float64"
        )

    monkeypatch.setattr("gradcheck_cli.session.run_check", out_of_memory)
    (workdir / "out.json").write_text(OLD_REPORT, encoding="utf-8")
    line = refusal(gradcheck("run", "--output", "out.json"))
    assert line == (
        "gradcheck: error: out of memory: Unable to allocate 7.28 TiB for an array with shape "
        "(1000000, 1000000) and data type float64 (the inputs need more memory than this machine "
        "has free: check fewer entries with --entries random:K, or use --mode fast)"
    )
    assert (workdir / "out.json").read_text(encoding="utf-8") == OLD_REPORT


def test_memory_error_in_the_models_forward_names_the_file(workdir: Path) -> None:
    """A MemoryError raised by the user's forward is the model's failure: exit 2, file and line."""
    (workdir / "hungry.py").write_text(
        "def forward(X, W):\n    raise MemoryError('Unable to allocate 8 TiB')\n" + TANH_BACKWARD,
        encoding="utf-8",
    )
    line = refusal(gradcheck("run", "--model", "hungry.py"))
    assert line == (
        "gradcheck: error: hungry.py:2: forward raised MemoryError: Unable to allocate 8 TiB"
    )


# --- a full disk: a report that cannot be written is never exit 0 ------------------------------

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
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while the report file is written: the catalogue's `--output` prefix, exit 2, the old
    report intact and no temporary file left."""

    def disk_full(descriptor: int) -> NoReturn:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (workdir / "out.json").write_text(OLD_REPORT, encoding="utf-8")
    before = listing(workdir)
    monkeypatch.setattr(os, "fsync", disk_full)
    line = refusal(gradcheck("run", "--format", "json", "--output", "out.json"))
    assert line == (
        "gradcheck: error: --output out.json: cannot write the report: No space left on device"
    )
    assert listing(workdir) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_outputs_are_written_all_together_or_not_at_all(workdir: Path) -> None:
    """--junit-xml on a full device with --output keep.json and --plot: exit 2 naming the JUnit
    file, and neither the existing report nor the plot is written: every output of one run is
    committed together, only once each has been written whole."""
    (workdir / "keep.json").write_text(OLD_REPORT, encoding="utf-8")
    before = listing(workdir)
    args = ["run", "--junit-xml", "/dev/full", "--output", "keep.json", "--plot", "map.png"]
    line = refusal(gradcheck(*args))
    assert line == (
        "gradcheck: error: --junit-xml /dev/full: cannot write the report: No space left on device"
    )
    assert listing(workdir) == before
    assert (workdir / "keep.json").read_text(encoding="utf-8") == OLD_REPORT


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_to_a_full_device_names_the_option(workdir: Path) -> None:
    """--output /dev/full (a real ENOSPC): exit 2 with the `--output` prefix."""
    line = refusal(gradcheck("run", "--output", "/dev/full"))
    assert line == (
        "gradcheck: error: --output /dev/full: cannot write the report: No space left on device"
    )


# --- signals, Ctrl-C and a broken pipe -----------------------------------------------------------


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
{TANH_BACKWARD}"""


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
        (signal.SIGINT, EXIT_INTERRUPTED, "interrupted"),
        (signal.SIGTERM, EXIT_TERMINATED, "terminated"),
        (getattr(signal, "SIGHUP", signal.SIGTERM), EXIT_HANGUP, "hang-up"),
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_signal_stops_a_long_run_promptly(
    long_run: tuple[Path, Path, list[str]], signum: int, code: int, word: str
) -> None:
    """Ctrl-C (SIGINT), SIGTERM (CI's cancel) and SIGHUP mid-check: 130/143/129 within a
    second, one line, no traceback, out.json untouched and no temporary file."""
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


def interrupted(*args: Any, **kwargs: Any) -> NoReturn:
    raise KeyboardInterrupt


def test_ctrl_c_in_the_check_is_exit_130(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt raised by the check becomes exit 130 and one line on stderr; the old
    report stays whole and nothing else is written."""
    monkeypatch.setattr("gradcheck_cli.session.run_check", interrupted)
    (workdir / "out.json").write_text(OLD_REPORT, encoding="utf-8")
    result = gradcheck("run", "--output", "out.json")
    assert result.exit_code == EXIT_INTERRUPTED, result.stderr
    assert "interrupted" in single_line(result.stderr)
    assert listing(workdir) == {"out.json": OLD_REPORT.encode()}


def test_ctrl_c_while_the_report_is_written_keeps_the_old_one(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the report is being written: exit 130 and one line; the old file stays
    whole, the temporary file goes."""
    monkeypatch.setattr(os, "fsync", interrupted)
    monkeypatch.setattr(os, "replace", interrupted)
    (workdir / "out.json").write_text(OLD_REPORT, encoding="utf-8")
    result = gradcheck("run", "--output", "out.json", "--format", "json")
    assert result.exit_code == EXIT_INTERRUPTED, result.stderr
    assert "interrupted" in single_line(result.stderr)
    assert listing(workdir) == {"out.json": OLD_REPORT.encode()}


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


# --- what the user's code does to the process ---------------------------------------------------


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
        "import os\n\n\ndef forward(X, W):\n    os._exit(0)\n" + TANH_BACKWARD, encoding="utf-8"
    )
    done = gradcheck_process("run", "--model", "quits.py", "--format", "json", cwd=tmp_path)
    line = (
        "quits.py:5: forward raised ExitRefused: os._exit(0) would end gradcheck's process "
        "before it reports; a model must return a value or raise"
    )
    assert (done.returncode, done.stderr) == (EXIT_USAGE, f"gradcheck: error: {line}\n")
    # --format json: the error document, as on every exit 2, not an empty stdout.
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
        "    return float(np.sum(np.tanh(X @ W)))\n" + TANH_BACKWARD,
        encoding="utf-8",
    )
    done = gradcheck_process(
        *("run", "--model", "quits.py", "--x", "x.npy", "--w", "w.npy", "--jobs", "2"), cwd=tmp_path
    )
    assert (done.returncode, done.stdout) == (EXIT_USAGE, "")
    assert done.stderr.startswith("gradcheck: error: quits.py: a worker process ")
    assert len(done.stderr.splitlines()) == 1
