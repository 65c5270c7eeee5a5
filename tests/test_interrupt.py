"""Ctrl-C: exit code 130, one line on stderr, and the --output file complete or untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
from helpers import gradcheck

EXIT_INTERRUPTED = 130
MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "dense_tanh.py"
OUTPUT_CONTENT = '{"report": "from an earlier run; an interrupted run must not touch it"}\n'
SIDE = 100
"""X and W are SIDE x SIDE: 2 * SIDE^2 entries, each a few whole forward passes of the black-box
model file, take tens of seconds; the test interrupts after about one."""


def assert_interrupted(returncode: int, stdout: str, stderr: str) -> None:
    """Exit 130, exactly one line on stderr saying "interrupted", no traceback anywhere."""
    assert returncode == EXIT_INTERRUPTED, (returncode, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "interrupted" in lines[0]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX only")
def test_ctrl_c_during_a_long_check(tmp_path: Path) -> None:
    """SIGINT in the middle of a long run: 130, one line, out.json untouched, no temp files."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "big.npy", rng.standard_normal((SIDE, SIDE)))
    np.save(tmp_path / "big_w.npy", rng.standard_normal((SIDE, SIDE)))
    output = tmp_path / "out.json"
    output.write_text(OUTPUT_CONTENT, encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    command = [
        sys.executable,
        "-m",
        "gradcheck_cli",
        "run",
        "--model",
        str(MODEL),
        "--x",
        "big.npy",
        "--w",
        "big_w.npy",
        "--output",
        "out.json",
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        assert process.poll() is None, "the check finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert time.monotonic() - started < 20, "SIGINT did not stop the check promptly"
    assert_interrupted(process.returncode, stdout, stderr)
    assert output.read_text(encoding="utf-8") == OUTPUT_CONTENT
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary files left


def test_keyboard_interrupt_in_the_check_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt raised by the check becomes exit 130 and one line on stderr."""

    def interrupted(*args: Any, **kwargs: Any) -> NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr("gradcheck_cli.session.run_check", interrupted)
    output = tmp_path / "out.json"
    output.write_text(OUTPUT_CONTENT, encoding="utf-8")
    result = gradcheck("run", "--output", str(output))
    assert_interrupted(result.exit_code, result.stdout, result.stderr)
    assert output.read_text(encoding="utf-8") == OUTPUT_CONTENT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_keyboard_interrupt_while_writing_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the report is being written: the old file stays whole, the temp file goes."""

    def interrupted(*args: Any, **kwargs: Any) -> NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    monkeypatch.setattr(os, "replace", interrupted)
    output = tmp_path / "out.json"
    output.write_text(OUTPUT_CONTENT, encoding="utf-8")
    result = gradcheck("run", "--output", str(output), "--format", "json")
    assert_interrupted(result.exit_code, result.stdout, result.stderr)
    assert output.read_text(encoding="utf-8") == OUTPUT_CONTENT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
