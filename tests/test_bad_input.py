"""The catalogue of bad inputs: each is one line on stderr and exit code 2, never a traceback.

Every case runs through the CLI (click's CliRunner) in a scratch directory holding one file per
kind of bad input, and with `--output out.json` pointing at a report that already exists: a
failing run must leave it byte for byte as it was and leave no other file behind.
docs/errors.md lists the same cases with the message each one produces.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from helpers import gradcheck

EXIT_USAGE = 2
OUTPUT = "out.json"
OUTPUT_CONTENT = '{"report": "from an earlier run; a failing run must not touch it"}\n'
MARKER = "UNPICKLED"
"""The file a pickle payload would create if anything ever unpickled it."""


class CreateMarker:
    """Unpickling this object calls open(MARKER, "w"): the marker file proves code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


# --- the scratch directory -------------------------------------------------------------------

MODEL_FILES = {
    "syntax_error.py": "def forward(X, W)\n    return 1.0\n",
    "import_fails.py": "import numpy as np\n\nraise RuntimeError('needs a GPU')\n",
    "imports_missing.py": "import no_such_module_for_gradcheck\n",
    "no_forward.py": "def backward(X, W):\n    return X, W\n",
    "no_backward.py": "def forward(X, W):\n    return 1.0\n",
    "forward_raises.py": (
        "def forward(X, W):\n    raise ValueError('boom')\n\n\n"
        "def backward(X, W):\n    return X, W\n"
    ),
    "forward_nan.py": (
        "def forward(X, W):\n    return float('nan')\n\n\ndef backward(X, W):\n    return X, W\n"
    ),
    "forward_inf.py": (
        "def forward(X, W):\n    return float('inf')\n\n\ndef backward(X, W):\n    return X, W\n"
    ),
    "backward_three.py": (
        "import numpy as np\n\n\ndef forward(X, W):\n    return float(np.sum(X @ W))\n\n\n"
        "def backward(X, W):\n    return X, W, X\n"
    ),
    "jvp_shape.py": (
        "import numpy as np\n\n\ndef forward(x):\n    return np.tanh(x)\n\n\n"
        "def backward(x, grad_output):\n    return grad_output * (1 - np.tanh(x) ** 2)\n\n\n"
        "def jvp(x, tangents):\n    return ((1 - np.tanh(x) ** 2) * tangents['x'])[:2]\n\n\n"
        "def example_inputs():\n    return {'x': np.ones((3, 2))}\n"
    ),
    "labels.py": (
        "import numpy as np\n\n\ndef forward(x, y):\n    return float(np.sum(x[y]))\n\n\n"
        "def backward(x, y):\n    g = np.zeros_like(x)\n    np.add.at(g, y, 1.0)\n"
        "    return g, None\n\n\n"
        "def example_inputs():\n    return {'x': np.arange(4.0), 'y': np.array([0, 2])}\n"
    ),
    "backward_shapes.py": (
        "import numpy as np\n\n\ndef forward(X, W):\n    return float(np.sum(X @ W))\n\n\n"
        "def backward(X, W):\n    return X, W.T\n"
    ),
    "naive.py": (
        "def conv_forward_naive(x):\n    return 2 * x, x\n\n\n"
        "def conv_backward_naive(dout, cache):\n    return 2 * dout\n\n\n"
        "def conv_forward_fast(x):\n    return 2 * x, x\n\n\n"
        "def conv_backward_fast(dout, cache):\n    return 2 * dout\n"
    ),
    "lonely.py": (
        "import numpy as np\n\n\ndef conv_forward_naive(x):\n    return 2 * x, (x,)\n\n\n"
        "def example_inputs():\n    return {'x': np.ones((2, 3))}\n"
    ),
    "scaled.py": (
        "import numpy as np\n\n\ndef scaled_forward(x):\n    return 2 * x, x\n\n\n"
        "def scaled_backward(dout, cache, factor):\n    return factor * dout\n\n\n"
        "def example_inputs():\n    return {'x': np.ones(3)}\n"
    ),
    "noisy.py": (
        "import numpy as np\n\n\ndef forward(X, W):\n"
        "    return float(np.sum(X @ W) + np.random.default_rng().standard_normal())\n\n\n"
        "def backward(X, W):\n    return np.ones_like(X) @ W.T * 0 + W.sum(axis=1), X.sum(axis=0)\n"
    ),
    "drifting.py": (
        "import numpy as np\n\ncalls = [0]\n\n\ndef forward(X, W):\n"
        "    return float(np.sum(X @ W))\n\n\ndef backward(X, W):\n    calls[0] += 1\n"
        "    dX = np.tile(W.sum(axis=1), (X.shape[0], 1)) + 1e-9 * calls[0]\n"
        "    return dX, np.tile(X.sum(axis=0)[:, None], (1, W.shape[1]))\n"
    ),
    "half.py": (
        "import numpy as np\n\n\ndef square_forward(x):\n    y = x.astype(np.float16)\n"
        "    return y * y, y\n\n\ndef square_backward(dout, cache):\n"
        "    return 2 * cache * dout.astype(np.float16)\n\n\n"
        "def example_inputs():\n    return {'x': np.array([0.5, -1.25, 2.0])}\n"
    ),
    "ref32.py": ("import numpy as np\n\n\ndef square(x):\n    return x.astype(np.float32) ** 2\n"),
    "notlinear.py": (
        "import numpy as np\n\n\ndef square_forward(x):\n    return x**2, x\n\n\n"
        "def square_backward(out, cache):\n    return 2 * cache * np.sqrt(np.abs(out))\n\n\n"
        "def example_inputs():\n    return {'x': np.arange(1.0, 4.0)}\n"
    ),
    "classes.py": (
        "import numpy as np\n\n\nclass Dense:\n    def __init__(self, n_in):\n"
        "        self.W = np.ones((n_in, 2))\n\n    def forward(self, x):\n"
        "        return x @ self.W\n\n    def backward(self, dout):\n"
        "        return dout @ self.W.T\n\n\nclass Forward:\n    def forward(self, x):\n"
        "        return 2 * x\n\n\nclass Wide:\n    def __call__(self, x):\n"
        "        return np.tanh(x)\n\n    def gradient(self, x):\n"
        "        return np.ones((x.size + 1,))\n\n\ndef example_inputs():\n"
        "    return {'x': np.ones((2, 3))}\n"
    ),
    "dictgrad.py": (
        "import numpy as np\n\n\ndef forward(X, parameters):\n"
        "    return float(np.sum(parameters['W'] @ X))\n\n\ndef backward(X, parameters):\n"
        "    return None, parameters['W']\n\n\ndef example_inputs():\n"
        "    return {'X': np.ones((2, 3)), 'parameters': {'W': np.ones((4, 2))}}\n"
    ),
    "twoout.py": (
        "import numpy as np\n\n\ndef step_forward(x):\n    return x, 2 * x, x\n\n\n"
        "def step_backward(dout, cache):\n    return dout\n\n\ndef example_inputs():\n"
        "    return {'x': np.ones(3)}\n"
    ),
}
"""Model files, each wrong in one way (the seed's X is 3x3 and W 3x2, so W.T has a wrong shape);
from naive.py on, code as course code writes it (issue 21), each file with its own examples."""

CSV_FILES = {
    "good.csv": "1,2,3\n4,5,6\n7,8,9\n",
    "locked.csv": "1,2,3\n4,5,6\n7,8,9\n",
    "empty.csv": "",
    "header.csv": "a,b,c\n",
    "ragged.csv": "1,2,3\n4,5\n7,8,9\n",
    "nonnumeric.csv": "1,2,3\n4,five,6\n7,8,9\n",
    "nan.csv": "1,2,3\n4,nan,6\n7,8,9\n",
    "inf.csv": "1,2,3\n4,5,6\n7,8,-inf\n",
    "matrix.txt": "1,2,3\n4,5,6\n7,8,9\n",
    "big.csv": "1,1e39,3\n4,5,6\n7,8,9\n",
    "huge_x.csv": "1e200,1e200,1e200\n1,2,3\n4,5,6\n",
    "huge_w.csv": "1e200,1e200\n1,2\n4,5\n",
}


CONFIG_FILES = {
    "unknown_key.toml": (
        "[tool.gradcheck]\npoints = 2\n\n[[tool.gradcheck.checks]]\nmodel = 'naive.py'\n"
        "rtoll = 1e-6\n"
    ),
    "wrong_type.toml": (
        "[tool.gradcheck]\npoints = 'five'\n\n[[tool.gradcheck.checks]]\nmodel = 'naive.py'\n"
    ),
    "no_checks.toml": "[tool.gradcheck]\npoints = 2\n",
    "broken.toml": "[tool.gradcheck\npoints = 2\n",
    "no_table.toml": "[tool.other]\nx = 1\n",
}
"""Configs for `gradcheck check`, each wrong in one way (issue 26)."""


def make_bad_inputs(directory: Path) -> None:
    """Write every file the catalogue refers to into `directory`."""
    for name, text in {**CSV_FILES, **MODEL_FILES, **CONFIG_FILES}.items():
        (directory / name).write_text(text, encoding="utf-8")
    (directory / "folder.csv").mkdir()
    (directory / "outdir").mkdir()
    (directory / "readonly").mkdir()
    (directory / "readonly" / OUTPUT).write_text(OUTPUT_CONTENT, encoding="utf-8")
    nan = np.ones((3, 3))
    nan[1, 2] = np.nan
    np.save(directory / "nan.npy", nan)
    np.save(directory / "vector.npy", np.ones(3))
    np.save(directory / "cube.npy", np.ones((3, 3, 2)))
    np.save(directory / "w_4x2.npy", np.ones((4, 2)))
    payload = np.array([CreateMarker(MARKER)], dtype=object)
    np.save(directory / "objects.npy", payload, allow_pickle=True)
    np.savez(directory / "objects.npz", m=payload)
    (directory / "pickle.npy").write_bytes(pickle.dumps(CreateMarker(MARKER), protocol=2))
    np.savez(directory / "several.npz", a=np.ones((3, 3)), b=np.ones((3, 3)))
    (directory / "loop.py").symlink_to("loop.py")
    (directory / "dangling.py").symlink_to("gone.py")


def listing(directory: Path) -> dict[str, bytes | str | None]:
    """Every path under `directory` with its content (None for a directory; a symlink's target)."""
    return {
        str(path.relative_to(directory)): (
            f"-> {os.readlink(path)}"
            if path.is_symlink()
            else None
            if path.is_dir()
            else path.read_bytes()
        )
        for path in sorted(directory.rglob("*"))
    }


# --- simulated faults ------------------------------------------------------------------------

Patch = Callable[[pytest.MonkeyPatch, Path], None]


def deny_reading_locked_csv(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Opening locked.csv raises PermissionError, as for a file without read permission.

    A chmod would not do: the tests may run as root, who reads anything.
    """
    real_open = io.open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and Path(file).name == "locked.csv":
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(builtins, "open", guarded_open)


def deny_writing_readonly_dir(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """The directory `readonly` refuses new files, as it would without write permission."""
    locked = (directory / "readonly").resolve()

    def inside(path: Any) -> bool:
        """Whether `path` is the directory or a file in it (an open descriptor is not)."""
        if not isinstance(path, (str, os.PathLike)):
            return False
        resolved = Path(path).resolve()
        return locked in (resolved, resolved.parent)

    real_access, real_mkstemp, real_open = os.access, tempfile.mkstemp, io.open

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if mode & os.W_OK and inside(path):
            return False
        return real_access(path, mode, *args, **kwargs)

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        if inside(kwargs.get("dir")):
            raise PermissionError(13, "Permission denied", str(kwargs["dir"]))
        return real_mkstemp(*args, **kwargs)

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+") and inside(file):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(builtins, "open", guarded_open)


# --- the catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: the arguments, and what the one-line message must name."""

    case_id: str
    args: tuple[str, ...]
    names: tuple[str, ...]
    patch: Patch | None = None
    output: bool = True
    """Add `--output out.json` (False where the --output path itself is the bad input)."""


def case(
    case_id: str, args: str, *names: str, patch: Patch | None = None, output: bool = True
) -> Any:
    """A pytest.param of a Case; `args` is split on spaces, `names` must be in the message."""
    return pytest.param(Case(case_id, tuple(args.split()), names, patch, output), id=case_id)


FILE_CASES = [
    case("missing-file", "run --x missing.csv", "missing.csv", "--x"),
    case("missing-file-w", "run --w missing.npy", "missing.npy", "--w"),
    case("directory", "run --x folder.csv", "folder.csv"),
    case(
        "unreadable",
        "run --x locked.csv",
        "locked.csv",
        "permission",
        patch=deny_reading_locked_csv,
    ),
    case("empty-file", "run --x empty.csv", "empty.csv"),
    case("header-only", "run --x header.csv", "header.csv", "line 1"),
    case("ragged-row", "run --x ragged.csv", "ragged.csv", "line 2"),
    case("ragged-row-w", "perturb --w ragged.csv", "ragged.csv", "line 2", "--w"),
    case("non-numeric-cell", "run --x nonnumeric.csv", "nonnumeric.csv", "line 2", "column 2"),
    case("nan-csv", "run --x nan.csv", "nan.csv", "line 2", "column 2", "NaN"),
    case("inf-csv", "sweep --x inf.csv", "inf.csv", "line 3", "column 3", "inf"),
    case(
        "csv-overflows-float32",
        "run --x big.csv --dtype float32",
        "big.csv",
        "[0, 1]",
        "overflows float32",
        "--x",
    ),
    case("nan-npy", "run --x nan.npy", "nan.npy", "[1, 2]", "NaN"),
    case("unknown-extension", "run --x matrix.txt", "matrix.txt", ".txt"),
    case("npy-object-array", "run --x objects.npy", "objects.npy"),
    case("npy-pickle", "run --x pickle.npy", "pickle.npy"),
    case("npz-object-array", "run --x objects.npz", "objects.npz"),
    case("npz-several-no-key", "run --x several.npz", "several.npz", "'a'", "'b'"),
    case("npz-missing-key", "run --x several.npz:c", "several.npz", "'c'"),
    case("1-d-array", "run --x vector.npy", "vector.npy", "(3,)"),
    case("3-d-array", "run --w cube.npy", "cube.npy", "(3, 3, 2)"),
    case("shapes-do-not-fit", "run --w w_4x2.npy", "w_4x2.npy", "(3, 3)", "(4, 2)"),
    *[
        case(
            f"{command}-product-overflows",
            f"{command} --x huge_x.csv --w huge_w.csv",
            "X @ W overflows",
            "[0, 0]",
        )
        for command in ("run", "perturb", "sweep")
    ],
]

OPTION_CASES = [
    case("run-entries-malformed", "run --entries 1", "--entries 1", "2 dimensions"),
    case("run-entries-letters", "run --entries 0,x", "--entries"),
    case("run-entries-out-of-range", "run --entries 5,0", "--entries", "0..2"),
    case("run-entries-out-of-range-w", "run --entries 0,2", "--entries", "W", "0..1"),
    case("perturb-entry-malformed", "perturb --entry x", "--entry"),
    case("perturb-entry-out-of-range", "perturb --entry 3,0", "--entry", "0..2"),
    case("perturb-entry-out-of-range-w", "perturb --wrt W --entry 0,2", "--entry", "0..1"),
    case("sweep-entry-malformed", "sweep --entry a,b", "--entry"),
    case("sweep-entry-out-of-range", "sweep --entry 9,9", "--entry", "0..2"),
    case("sweep-entry-out-of-range-w", "sweep --wrt W --entry 3,0", "--entry", "0..2", "0..1"),
    *[
        case(f"{command}-delta-{label}", f"{command} --delta {value}", "--delta")
        for command in ("run", "perturb")
        for label, value in (
            ("zero", "0"),
            ("negative", "-1e-4"),
            ("nan", "nan"),
            ("inf", "inf"),
            ("text", "small"),
            ("below-spacing", "1e-300"),
        )
    ],
    # run --dtype float32 differences a float64 forward: a step of 1e-10 moves every entry there.
    case("perturb-delta-below-float32-spacing", "perturb --delta 1e-10 --dtype float32", "--delta"),
    case("sweep-smallest-zero", "sweep --smallest 0", "--smallest"),
    case("sweep-smallest-above-largest", "sweep --smallest 1", "--smallest"),
    case("rtol-negative", "run --rtol -1e-6", "--rtol"),
    case("atol-negative", "run --atol -1e-9", "--atol"),
    case("perturb-rtol-negative", "perturb --rtol -1", "--rtol"),
    case("rtol-nan", "run --rtol nan", "--rtol"),
    case("param-json-nested-too-deep", "run --param x=" + "[" * 5000, "--param", "too deeply"),
    case(
        "entries-of-a-constant", "run --model labels.py --entries y[0]", "--entries y", "constant"
    ),
    case("junit-xml-dash", "run --junit-xml -", "--junit-xml -", "only --output"),
    case(
        "jvp-of-the-wrong-shape",
        "run --model jvp_shape.py --mode jvp",
        "jvp_shape.py",
        "shape (2, 2)",
        "expected (3, 2)",
    ),
    case(
        "inputs-archive-key-of-no-parameter",
        "run --model labels.py --inputs several.npz",
        "--inputs several.npz",
        "'a'",
        "x, y",
    ),
    case("plot-dash", "run --plot -", "--plot -", "only --output"),
]

MODEL_CASES = [
    case("unknown-model", "run --model nope", "'nope'", "--model"),
    case("model-file-missing", "run --model absent.py", "absent.py"),
    case("model-syntax-error", "run --model syntax_error.py", "syntax_error.py", "SyntaxError"),
    case("model-import-fails", "run --model import_fails.py", "import_fails.py", "needs a GPU"),
    case(
        "model-import-missing-module",
        "perturb --model imports_missing.py",
        "imports_missing.py",
        "no_such_module_for_gradcheck",
    ),
    case("model-no-forward", "run --model no_forward.py", "no_forward.py", "forward"),
    case("model-no-backward", "sweep --model no_backward.py", "no_backward.py", "backward"),
    case("forward-raises", "run --model forward_raises.py", "forward_raises.py", "boom"),
    case("forward-raises-perturb", "perturb --model forward_raises.py", "forward_raises.py"),
    case("forward-nan", "run --model forward_nan.py", "forward_nan.py", "nan"),
    case("forward-nan-sweep", "sweep --model forward_nan.py", "forward_nan.py", "nan"),
    case("forward-inf", "run --model forward_inf.py", "forward_inf.py", "= inf"),
    case("forward-inf-perturb", "perturb --model forward_inf.py", "forward_inf.py", "= inf"),
    case("model-file-symlink-loop", "run --model loop.py", "loop.py", "symlink loop"),
    case("model-file-broken-symlink", "run --model dangling.py", "dangling.py", "gone.py"),
    case("backward-count", "run --model backward_three.py", "backward_three.py"),
    case(
        "backward-shapes",
        "perturb --model backward_shapes.py",
        "backward_shapes.py",
        "(2, 3)",
        "(3, 2)",
    ),
]

CONVENTION_CASES = [
    case("ambiguous-layer-name", "run --model naive.py:conv", "conv_naive", "conv_fast"),
    case(
        "out-and-cache-without-backward",
        "run --model lonely.py:conv_forward_naive",
        "lonely.py",
        "(out, cache)",
        "conv_backward_naive",
    ),
    case("backward-value-missing", "run --model scaled.py:scaled", "factor", "--param"),
    case("backward-not-linear-in-dout", "run --model notlinear.py:square", "not linear in out"),
    case("forward-not-deterministic", "run --model noisy.py", "forward is not deterministic"),
    case("bfloat16-for-numpy", "run --model half.py:square --dtype bfloat16", "numpy has no"),
    case("perturb-in-float16", "perturb --dtype float16", "--dtype", "float64 or float32"),
    case("reference-model-in-float64", "run --reference-model ref32.py", "--reference-model"),
    case(
        "reference-model-in-fast-mode",
        "run --dtype float16 --mode fast --reference-model ref32.py",
        "--mode full",
    ),
    case(
        "reference-model-without-the-function",
        "run --model half.py:square --dtype float16 --reference-model ref32.py:cube",
        "ref32.py",
        "cube",
    ),
    case(
        "reference-model-not-in-float64",
        "run --model half.py:square --dtype float16 --reference-model ref32.py:square",
        "computes in float32",
    ),
    case(
        "backward-not-deterministic-without-side-effect-checks",
        "run --model drifting.py --no-side-effects",
        "backward is not deterministic",
        "give dX",
    ),
    case("class-needs-an-argument", "run --model classes.py:Dense", "Dense()", "n_in"),
    case(
        "param-for-neither-class-nor-call",
        "run --model classes.py:Dense --param n_in=3 --param foo=1",
        "--param foo",
        "Dense()",
    ),
    case("class-without-backward", "run --model classes.py:Forward", "Forward", "gradient"),
    case("gradient-of-no-shape", "run --model classes.py:Wide", "classes.py:Wide", "(7,)"),
    case("dict-argument-gradient-not-a-dict", "run --model dictgrad.py", "parameters", "dict"),
    case("fewer-douts-than-outputs", "run --model twoout.py:step", "2 outputs", "step_backward"),
]

PROJECT_CASES = [
    case("only-unknown-layer", "run --model naive.py --only conv", "--only conv", "conv_naive"),
    case("skip-every-layer", "run --model naive.py --skip conv_naive,conv_fast", "leaves no layer"),
    case(
        "only-with-a-layer-named",
        "run --model naive.py:conv_naive --only conv_naive",
        "--only",
        "whole file",
    ),
    case("input-no-layer-takes", "run --model naive.py --input q=vector.npy", "--input q"),
    case("x-in-a-whole-file", "run --model naive.py --x good.csv", "--x", "--input NAME=PATH"),
    case("wrt-in-a-whole-file", "run --model naive.py --wrt x", "--wrt", "naive.py:NAME"),
    case("plot-of-several-layers", "run --model naive.py --plot p.png", "--plot", "one layer"),
    case("points-zero", "run --points 0", "--points"),
    case("config-unknown-key", "check --config unknown_key.toml", "unknown_key.toml:6", "rtoll"),
    case("config-wrong-type", "check --config wrong_type.toml", "wrong_type.toml:2", "points"),
    case("config-without-checks", "check --config no_checks.toml", "no_checks.toml", "checks"),
    case("config-not-toml", "check --config broken.toml", "broken.toml", "line 1"),
    case("config-without-table", "check --config no_table.toml", "[tool.gradcheck]"),
    case("config-missing", "check --config absent.toml", "--config absent.toml"),
]

OUTPUT_CASES = [
    *[
        case(
            f"{command}-output-missing-dir",
            f"{command} --output nowhere/{OUTPUT}",
            "nowhere",
            output=False,
        )
        for command in ("run", "perturb", "sweep")
    ],
    case("output-is-directory", "run --output outdir", "outdir", "--output", output=False),
    case(
        "output-not-writable",
        f"run --output readonly/{OUTPUT}",
        "readonly",
        patch=deny_writing_readonly_dir,
        output=False,
    ),
    case(
        "output-is-the-input",
        "run --x good.csv --output good.csv",
        "--output good.csv",
        "--x",
        output=False,
    ),
    case(
        "output-is-the-model",
        "run --model forward_raises.py --output forward_raises.py",
        "--output forward_raises.py",
        "--model",
        output=False,
    ),
    case(
        "junit-xml-is-the-output",
        f"run --output {OUTPUT} --junit-xml {OUTPUT}",
        f"--junit-xml {OUTPUT}",
        "--output",
        output=False,
    ),
    case(
        "output-not-writable-perturb",
        f"perturb --output readonly/{OUTPUT}",
        "readonly",
        patch=deny_writing_readonly_dir,
        output=False,
    ),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory, the current one, with every bad input and an existing out.json."""
    make_bad_inputs(tmp_path)
    (tmp_path / OUTPUT).write_text(OUTPUT_CONTENT, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_clean_usage_error(result: Result, names: tuple[str, ...]) -> str:
    """Exit 2, one non-empty line on stderr naming every one of `names`, no traceback."""
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == EXIT_USAGE, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    message = lines[0]
    assert message.strip()
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


@pytest.mark.parametrize(
    "bad",
    [
        *FILE_CASES,
        *OPTION_CASES,
        *MODEL_CASES,
        *CONVENTION_CASES,
        *PROJECT_CASES,
        *OUTPUT_CASES,
    ],
)
def test_bad_input_is_one_line_exit_2_and_output_untouched(workdir: Path, bad: Case) -> None:
    """A bad input exits 2 with one line naming the culprit; no file is written or changed."""
    args = list(bad.args)
    if bad.output:
        args += ["--output", OUTPUT]
    before = listing(workdir)
    with pytest.MonkeyPatch.context() as faults:  # undone before the files are compared
        if bad.patch is not None:
            bad.patch(faults, workdir)
        result = gradcheck(*args)
    assert_clean_usage_error(result, bad.names)
    assert (workdir / OUTPUT).read_text(encoding="utf-8") == OUTPUT_CONTENT
    assert listing(workdir) == before
    assert not (workdir / MARKER).exists()


@pytest.mark.parametrize("spec", ["objects.npy", "pickle.npy", "objects.npz"])
def test_pickles_are_refused_never_unpickled(workdir: Path, spec: str) -> None:
    """A pickle in a .npy/.npz is refused by name and its payload never runs."""
    pickle.loads(pickle.dumps(CreateMarker("control"))).close()
    assert (workdir / "control").exists()  # the payload does create its file when unpickled
    for option in ("--x", "--w"):
        result = gradcheck("run", option, spec)
        message = assert_clean_usage_error(result, (spec, option))
        assert "pickle" in message
        assert not (workdir / MARKER).exists()


def test_debug_shows_the_traceback(workdir: Path) -> None:
    """--debug adds the traceback on stderr; the exit code and the last line stay the same."""
    result = gradcheck("run", "--x", "missing.csv", "--output", OUTPUT, "--debug")
    assert result.exit_code == EXIT_USAGE
    assert "Traceback (most recent call last)" in result.stderr
    assert "missing.csv" in result.stderr.splitlines()[-1]
    assert (workdir / OUTPUT).read_text(encoding="utf-8") == OUTPUT_CONTENT


def test_good_input_in_the_same_directory_passes(workdir: Path) -> None:
    """The scratch directory's good files do work: the failures above are the bad inputs'."""
    result = gradcheck("run", "--x", "good.csv", "--output", OUTPUT, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert (workdir / OUTPUT).read_text(encoding="utf-8") != OUTPUT_CONTENT
