"""What the tests share: the two ways to run gradcheck (in this process, or in a process of its
own), what every refusal looks like, the fixture files, and the seed's two inputs as the core's
named inputs.

Every test runs the command line through `gradcheck(...)` (click's CliRunner through the
group's own main, so exit codes apply) unless it needs a process of its own (signals, file
descriptor 1, a broken pipe, os._exit, a fresh interpreter): then `gradcheck_process(...)`, or
`gradcheck_command(...)` and `process_environment()` for a process it must signal.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from click.testing import CliRunner, Result
from hypothesis import settings
from numpy.typing import NDArray

from gradcheck_cli.cli import cli
from gradcheck_cli.numerics.models import Array, Model
from gradcheck_cli.subject.arguments import Supplied

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
MODELS = FIXTURES / "models"

Document = dict[str, Any]

EXIT_CODE = {"passed": 0, "failed": 1, "error": 2, "inconclusive": 4}
"""The exit code of each verdict a report can hold."""

TANH_BACKWARD = """

def backward(X, W):
    d = 1.0 - np.tanh(X @ W) ** 2
    return d @ W.T, X.T @ d
"""
"""The correct backward of sum(tanh(X @ W)), to follow a forward written for one test."""

TANH_MODEL = f"""\
import numpy as np


def forward(X, W):
    return float(np.sum(np.tanh(X @ W)))
{TANH_BACKWARD}"""
"""A correct model file of X and W: sum(tanh(X @ W))."""


# --- running gradcheck -------------------------------------------------------------------------


def gradcheck(
    *args: str, columns: int = 200, env: Mapping[str, str | None] | None = None
) -> Result:
    """`gradcheck ARGS...` in this process, with stdout and stderr apart (click 8.2+), on a
    colourless terminal `columns` wide (wide enough that no line of a report wraps). No run
    prints a traceback unless --debug asks for one."""
    runner = CliRunner(
        env={
            "COLUMNS": str(columns),
            "TERM": "dumb",
            "NO_COLOR": "1",
            "FORCE_COLOR": None,
            **(env or {}),
        }
    )
    result = runner.invoke(cli, list(args), prog_name="gradcheck")
    if "--debug" not in args:
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def document_of(result: Result) -> Document:
    """stdout as the one JSON document it must hold (json.loads refuses anything after it), from
    a run that ended without a traceback."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, dict), parsed
    return parsed


def gradcheck_json(*args: str, codes: tuple[int, ...] = (0, 1, 4)) -> tuple[int, Document]:
    """(exit code, JSON report) of `gradcheck ARGS... --format json` run in this process; the
    exit code must be one of `codes` (by default a verdict's: passed, failed or inconclusive)."""
    result = gradcheck(*args, "--format", "json")
    assert result.exit_code in codes, (result.exit_code, result.stderr)
    return result.exit_code, document_of(result)


def process_environment(**extra: str) -> dict[str, str]:
    """The environment of a gradcheck process: this one's, on a plain, wide, colourless terminal
    and with Python's own buffering of stdout (unless `extra` says otherwise)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "FORCE_COLOR")}
    env.update(TERM="dumb", COLUMNS="200", NO_COLOR="1", **extra)
    return env


def gradcheck_command(*args: str) -> list[str]:
    """The command line of `gradcheck ARGS...` as a process of its own (python -m gradcheck_cli,
    the program's own entry point)."""
    return [sys.executable, "-m", "gradcheck_cli", *args]


def gradcheck_process(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """`gradcheck ARGS...` in a process of its own, in `cwd`; stdout and stderr are captured
    unless `kwargs` sends them elsewhere."""
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run(
        gradcheck_command(*args),
        cwd=cwd,
        env=process_environment() if env is None else dict(env),
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


# --- what a refusal looks like -----------------------------------------------------------------


def refusal(result: Result) -> str:
    """The one line of a refusal: exit 2, no traceback, exactly one `gradcheck: error: ` line on
    stderr, and on stdout nothing but, under --format json, the error document of that line.
    Returns the line."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == EXIT_CODE["error"], (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("gradcheck: error: "), line
    if result.stdout:
        error = json.loads(result.stdout)
        assert error["verdict"] == "error"
        assert error["error"] == line.removeprefix("gradcheck: error: ")
    return line


def listing(directory: Path) -> dict[str, bytes | str | None]:
    """Every entry under `directory`: a file's bytes, a symlink's target, None for a directory;
    two listings are equal when nothing under `directory` was written, moved or left behind."""
    entries: dict[str, bytes | str | None] = {}
    for path in sorted(directory.rglob("*")):
        name = str(path.relative_to(directory))
        if path.is_symlink():
            entries[name] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            entries[name] = None
        else:
            entries[name] = path.read_bytes()
    return entries


# --- fixture files -----------------------------------------------------------------------------


def load_module(path: Path) -> ModuleType:
    """Import a Python file as a user's own script would be imported: the tests compute their
    expectations from the fixtures' own functions, independently of gradcheck."""
    spec = importlib.util.spec_from_file_location(f"fixture_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_fixture(stem: str) -> ModuleType:
    """fixtures/models/STEM.py as a module."""
    return load_module(MODELS / f"{stem}.py")


def examples(in_ci: int) -> int:
    """How many examples a property test draws: `in_ci` under the hypothesis profile "ci" (CI,
    see conftest.py), and as large a share of it as the loaded profile's default is of the ci
    profile's (fewer in the "dev" profile of a local run)."""
    share = settings().max_examples / settings.get_profile("ci").max_examples
    return max(1, round(in_ci * share))


# --- the seed's two inputs ---------------------------------------------------------------------


def xw(X: Array, W: Array) -> dict[str, Array]:
    """The inputs {"X": X, "W": W} that the core takes, for models of the seed's two matrices."""
    return {"X": X, "W": W}


def gradient_pair(model: Model, X: Array, W: Array) -> tuple[Array, Array]:
    """(dF/dX, dF/dW) of a model of X and W; both must be given."""
    gradient = model.gradient(xw(X, W))
    dX, dW = gradient["X"], gradient["W"]
    assert dX is not None
    assert dW is not None
    return dX, dW


# --- model files, checked independently of gradcheck -------------------------------------------


def supplied(**arrays: Array) -> dict[str, Supplied]:
    """Arrays given from outside a model file, as the API gives them."""
    return {name: Supplied(array, "array") for name, array in arrays.items()}


def central_differences(
    f: Callable[[Mapping[str, Array]], float], inputs: Mapping[str, Array], step: float = 1e-6
) -> dict[str, NDArray[np.float64]]:
    """df/d(input) for every floating input, by central differences of `f`, one entry at a
    time: the reference a gradient is compared with here, independently of gradcheck's
    numerics. Integer inputs (labels) are left alone."""
    grads: dict[str, NDArray[np.float64]] = {}
    for name, array in inputs.items():
        if array.dtype.kind != "f":
            continue
        args = {n: np.array(a, copy=True) for n, a in inputs.items()}
        grad = np.zeros_like(args[name], dtype=np.float64)
        for index in np.ndindex(grad.shape):
            base = args[name][index]
            args[name][index] = base + step
            up = f(args)
            args[name][index] = base - step
            down = f(args)
            args[name][index] = base
            grad[index] = (up - down) / (2 * step)
        grads[name] = grad
    return grads
