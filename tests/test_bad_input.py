"""Every refusal: bad usage or bad input is exit 2 with one line on stderr naming the culprit,
never a traceback, and nothing written.

The catalogue runs each case through the command line in a scratch directory holding one file
per kind of bad input, with `--output out.json` pointing at a report that already exists (where
--output is not itself the bad input): a refused run leaves every file byte for byte as it was
and writes no other. Where the case pins the message, it is the whole line; docs/errors.md lists
the same cases with the message each one produces. Then the refusals a catalogue cannot hold:
pickles that must never run, a config's every mistake, an archive that would inflate past the
memory budget, and any text at all as input or option value.
"""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
import pickle
import struct
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, examples, gradcheck, listing, refusal
from helpers import MODELS as MODELS_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    "empty_example.py": (
        "import numpy as np\n\n\ndef forward(x):\n    return float(np.sum(x**2))\n\n\n"
        "def backward(x):\n    return 2 * x\n\n\n"
        "def example_inputs():\n    return {'x': np.zeros((0, 3))}\n"
    ),
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
    "model.py": (
        "import numpy as np\n\n\ndef forward(X, W):\n    return float(np.sum(np.tanh(X @ W)))\n\n\n"
        "def backward(X, W):\n    d = 1.0 - np.tanh(X @ W) ** 2\n    return d @ W.T, X.T @ d\n"
    ),
    "ref_cube.py": "def cube(x):\n    return x**3\n",
    "twoout.py": (
        "import numpy as np\n\n\ndef step_forward(x):\n    return x, 2 * x, x\n\n\n"
        "def step_backward(dout, cache):\n    return dout\n\n\ndef example_inputs():\n"
        "    return {'x': np.ones(3)}\n"
    ),
}
"""Model files, each wrong in one way (the seed's X is 3x3 and W 3x2, so W.T has a wrong shape);
from naive.py on, code as course code writes it, each file with its own examples; model.py is
a correct one, to be named as an input."""

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
    "huge_x.csv": "1e200,1e200,1e200\n" * 3,
    "huge_w.csv": "1e200,1e200\n" * 3,
    "huge32_x.csv": "1e20,1e20,1e20\n1,2,3\n4,5,6\n",
    "huge32_w.csv": "1e20,1e20\n1,2\n4,5\n",
    "X.csv": "0.1,0.2,0.3\n0.4,0.5,0.6\n0.7,0.8,0.9\n",
}


def make_bad_inputs(directory: Path) -> None:
    """Write every file the catalogue refers to into `directory`."""
    for name, text in {**CSV_FILES, **MODEL_FILES}.items():
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
    np.save(directory / "W.npy", np.arange(6.0).reshape(3, 2))
    np.save(directory / "b.npy", np.ones(2))
    np.savez(directory / "in.npz", X=np.ones((3, 3)), W=np.ones((3, 2)))
    (directory / "link.csv").symlink_to("X.csv")
    os.link(directory / "X.csv", directory / "hard.csv")
    with (directory / "forged.npy").open("wb") as handle:  # declares 8 TB, holds 64 bytes
        header = {"descr": "<f8", "fortran_order": False, "shape": (1_000_000, 1_000_000)}
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(bytes(64))
    for name in ("loop.py", "loop.csv", "loop.json"):
        (directory / name).symlink_to(name)
    (directory / "dangling.py").symlink_to("gone.py")


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


def hide_matplotlib(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """matplotlib is not installed, as where the plot extra was left out."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        if name == "matplotlib" or name.startswith("matplotlib."):
            return None
        return real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


# --- the catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: the arguments, and what its one line must say."""

    case_id: str
    args: tuple[str, ...]
    names: tuple[str, ...]
    """What the line must name, each somewhere in it."""
    line: str | None = None
    """The whole line after `gradcheck: error: `, where the case pins the message."""
    patch: Patch | None = None
    output: bool = True
    """Add `--output out.json` (False where an output path is itself the bad input)."""


def case(
    case_id: str,
    args: str,
    *names: str,
    line: str | None = None,
    patch: Patch | None = None,
    output: bool = True,
    marks: Any = (),
) -> Any:
    """A pytest.param of a Case; `args` is split on spaces, `names` must be in the message."""
    bad = Case(case_id, tuple(args.split()), names, line, patch, output)
    return pytest.param(bad, id=case_id, marks=marks)


NEEDS_MATPLOTLIB = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="--plot needs matplotlib"
)
MODELS = str(MODELS_DIR)


def overflows(model: str, dtype: str) -> str:
    return (
        f"{model}: X @ W overflows to inf at [0, 0] (X (3, 3), W (3, 2) in {dtype}); it must be "
        "finite: scale the inputs down"
    )


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
    case(
        "npy-header-claiming-a-terabyte",
        "run --x forged.npy",
        line="forged.npy: not a valid .npy file: its header declares shape (1000000, 1000000) of "
        "float64, 8000000000000 bytes (7.28 TiB) of data, but the file holds 64 bytes (given to "
        "--x)",
    ),
    case("1-d-array", "run --x vector.npy", "vector.npy", "(3,)"),
    case("3-d-array", "run --w cube.npy", "cube.npy", "(3, 3, 2)"),
    case("shapes-do-not-fit", "run --w w_4x2.npy", "w_4x2.npy", "(3, 3)", "(4, 2)"),
    case(
        "x-and-w-swapped",
        f"run --x {FIXTURES}/seed_W.csv --w {FIXTURES}/seed_X.csv",
        "(3, 2)",
        "(3, 3)",
    ),
    case(
        "input-symlink-loop",
        "run --x loop.csv",
        line="loop.csv: is a symlink loop, it never reaches a file (given to --x)",
    ),
    # X @ W overflows, though every input is finite: no verdict can be reached, in any command
    # or model (and no numpy warning: pytest makes warnings errors).
    *[
        case(
            f"{command}-product-overflows-{dtype}",
            f"{command} --x {prefix}_x.csv --w {prefix}_w.csv --dtype {dtype}",
            line=overflows("sigmoid-sum", dtype),
        )
        for command in ("run", "perturb", "sweep")
        for prefix, dtype in (("huge", "float64"), ("huge32", "float32"))
    ],
    *[
        case(
            f"{'-'.join(options)}-product-overflows",
            f"run {' '.join(options)} --x huge_x.csv --w huge_w.csv",
            line=overflows(model, "float64"),
        )
        for options, model in (
            (("--model", "relu-sum"), "relu-sum"),
            (("--model", "tanh-sum"), "tanh-sum"),
            (("--mode", "fast"), "sigmoid-sum"),
        )
    ],
]

OPTION_CASES = [
    case("run-entries-malformed", "run --entries 1", "--entries 1", "2 dimensions"),
    case("run-entries-letters", "run --entries 0,x", "--entries"),
    case("run-entries-out-of-range", "run --entries 5,0", "--entries", "5,0", "0..2"),
    case("run-entries-out-of-range-w", "run --entries 0,2", "--entries", "W", "0..1"),
    case("run-entries-random-none", "run --entries random:0", "--entries", "random:0"),
    case("perturb-entry-malformed", "perturb --entry x", "--entry"),
    case("perturb-entry-letters", "perturb --entry abc", "--entry", "'abc'"),
    case(
        "perturb-entry-of-one-index",
        "perturb --entry 1",
        "--entry 1",
        "1 index",
        "2 dimensions",
        "X[0,0]",
    ),
    case("perturb-entry-of-no-input", "perturb --entry b[0]", "--entry b[0]", "no input named b"),
    case("perturb-entry-out-of-range", "perturb --entry 3,0", "--entry", "3,0", "(3, 3)", "0..2"),
    case(
        "perturb-entry-out-of-range-w",
        "perturb --wrt W --entry 0,2",
        "--entry",
        "0,2",
        "(3, 2)",
        "0..1",
    ),
    case("sweep-entry-malformed", "sweep --entry a,b", "--entry"),
    case("sweep-entry-out-of-range", "sweep --entry 9,9", "--entry", "9,9", "0..2"),
    case("sweep-entry-out-of-range-w", "sweep --wrt W --entry 3,0", "--entry", "0..2", "0..1"),
    case(
        "sweep-entry-and-random-direction",
        "sweep --direction random --entry 0,0",
        "--entry",
        "--direction",
    ),
    case("sweep-both-inputs-by-entry", "sweep --wrt both", "--wrt X,W", "--direction random"),
    *[
        case(f"{command}-delta-{label}", f"{command} --delta {value}", "--delta", *said)
        for command in ("run", "perturb")
        for label, value, said in (
            ("zero", "0", ("> 0",)),
            ("negative", "-1e-4", ("-1e-4",)),
            ("nan", "nan", ()),
            ("inf", "inf", ()),
            ("text", "small", ()),
            ("below-spacing", "1e-300", ()),
        )
    ],
    case("perturb-delta-too-small", "perturb --delta 1e-30", "--delta", "too small"),
    # run --dtype float32 differences a float64 forward: a step of 1e-10 moves every entry there.
    case("perturb-delta-below-float32-spacing", "perturb --delta 1e-10 --dtype float32", "--delta"),
    case("sweep-smallest-zero", "sweep --smallest 0", "--smallest"),
    case("sweep-smallest-above-largest", "sweep --smallest 1", "--smallest"),
    case(
        "sweep-largest-below-smallest",
        "sweep --smallest 1 --largest 0.1",
        "--smallest",
        "--largest",
    ),
    case(
        "sweep-more-than-30-steps",
        "sweep --largest 1 --smallest 1e-40",
        "--largest",
        "--smallest",
        "30",
    ),
    case(
        "sweep-range-too-wide", "sweep --largest 1e300 --smallest 1e-300", "--largest", "--smallest"
    ),
    case("sweep-smallest-subnormal", "sweep --smallest 1e-320", "--smallest"),
    case("rtol-negative", "run --rtol -1e-6", "--rtol", ">= 0"),
    case("atol-negative", "run --atol -1e-9", "--atol", ">= 0"),
    case("perturb-rtol-negative", "perturb --rtol -1", "--rtol"),
    case("rtol-nan", "run --rtol nan", "--rtol"),
    case("top-zero", "run --top 0", "--top"),
    case("method-unknown", "run --method secant", "--method", "secant"),
    *[
        case(f"{command}-format-unknown", f"{command} --format xml", "--format", "xml")
        for command in ("run", "perturb", "sweep")
    ],
    case("models-format-unknown", "models --format xml", "--format", "xml", output=False),
    case("command-unknown", "frobnicate", "frobnicate", output=False),
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
    case(
        "plot-without-matplotlib",
        "sweep --plot taylor.png",
        "--plot",
        "matplotlib",
        "pip install",
        patch=hide_matplotlib,
    ),
    *[
        case(
            f"{command}-complex-step-of-{Path(model).stem}",
            f"{command} --model {model} --method complex-step",
            "complex-step",
            "--method central",
        )
        for command in ("run", "perturb")
        for model in (
            "relu-sum",
            "relu-mean",
            f"{MODELS}/dense_tanh.py",
            f"{MODELS}/dense_tanh_vector.py",
        )
    ],
]

MODEL_CASES = [
    case("unknown-model", "run --model nope", "'nope'", "--model", "sigmoid-sum", "tanh-mean"),
    case("unknown-model-without-its-reduction", "run --model tanh", "'tanh'"),
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
    # f = inf at the given point: nothing can be differenced there, in any command.
    *[
        case(
            f"{command}-forward-inf",
            f"{command} --model forward_inf.py",
            line="forward_inf.py: forward(X, W) = inf at the given X, W; it must be finite there",
        )
        for command in ("run", "perturb", "sweep")
    ],
    case(
        "model-file-symlink-loop",
        "run --model loop.py",
        line="model file loop.py is a symlink loop, it never reaches a file",
    ),
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
    case(
        "backward-value-missing",
        "run --model scaled.py:scaled",
        line="scaled.py:scaled: no value for factor in scaled_backward(dout, cache, factor): give "
        "it with --param factor=JSON (the douts and the cache come first, other parameters by the "
        "names forward or --param give them)",
    ),
    case(
        "backward-not-linear-in-dout",
        "run --model notlinear.py:square",
        "notlinear.py:square: square_backward is not linear in out (twice out does not give "
        "twice dx), so out is not the gradient of forward's output",
    ),
    case("forward-not-deterministic", "run --model noisy.py", "forward is not deterministic"),
    case(
        "empty-example-input",
        "run --model empty_example.py",
        "empty_example.py: input x from example_inputs() is empty (shape 0x3); every input "
        "needs at least one entry",
    ),
    case("bfloat16-for-numpy", "run --model half.py:square --dtype bfloat16", "numpy has no"),
    case(
        "bfloat16-for-the-builtin-model",
        "run --dtype bfloat16",
        "--dtype bfloat16: numpy has no bfloat16, and the built-in model sigmoid-sum is numpy code",
    ),
    case("perturb-in-float16", "perturb --dtype float16", "--dtype", "float64 or float32"),
    case("reference-model-in-float64", "run --reference-model ref32.py", "--reference-model"),
    case(
        "reference-model-in-fast-mode",
        "run --dtype float16 --mode fast --reference-model ref32.py",
        "--mode full",
    ),
    case(
        "reference-model-without-the-forward",
        "run --model half.py:square --dtype float16 --reference-model ref_cube.py",
        "--reference-model ref_cube.py: no function square_forward or square",
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
        "ref32.py:square: the reference forward computes in float32 at float64 inputs",
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
    case("config-missing", "check --config absent.toml", line="--config absent.toml: no such file"),
]

SAME_FILE_CASES = [
    ("run --x X.csv --output X.csv", "--output X.csv: is the file given to --x"),
    ("run --x X.csv --output ./X.csv", "--output X.csv: is the file given to --x"),
    ("run --x X.csv --output link.csv", "--output link.csv: is the file given to --x"),
    ("run --x link.csv --output X.csv", "--output X.csv: is the file given to --x"),
    ("run --x X.csv --output hard.csv", "--output hard.csv: is the file given to --x"),
    ("perturb --w W.npy --output W.npy", "--output W.npy: is the file given to --w"),
    ("sweep --x in.npz:X --output in.npz", "--output in.npz: is the file given to --x"),
    (
        "run --model model.py --input b=b.npy --output b.npy",
        "--output b.npy: is the file given to --input b",
    ),
    ("run --inputs in.npz --output in.npz", "--output in.npz: is the file given to --inputs"),
    ("run --model model.py --output model.py", "--output model.py: is the file given to --model"),
    ("run --x X.csv --junit-xml X.csv", "--junit-xml X.csv: is the file given to --x"),
    ("run --x X.csv --plot link.csv", "--plot link.csv: is the file given to --x"),
    ("sweep --x X.csv --plot X.csv", "--plot X.csv: is the file given to --x"),
]
"""An output that is an input, however spelled (./, a symlink, a hard link): (arguments, the
start of the line). --plot first checks that matplotlib is there."""

OUTPUT_CASES = [
    *[
        case(
            f"{command}-output-missing-dir",
            f"{command} --output nowhere/{OUTPUT}",
            "--output",
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
    *[
        case(
            args,
            args,
            line=f"{start}; refusing to overwrite an input",
            output=False,
            marks=[NEEDS_MATPLOTLIB] if "--plot" in args else [],
        )
        for args, start in SAME_FILE_CASES
    ],
    case(
        "junit-xml-is-the-output",
        f"run --output {OUTPUT} --junit-xml {OUTPUT}",
        line=f"--junit-xml {OUTPUT}: is also the file given to --output; each report needs a "
        "file of its own",
        output=False,
    ),
    case(
        "junit-xml-is-a-new-output-spelled-otherwise",
        "run --output r.json --junit-xml ./r.json",
        line="--junit-xml r.json: is also the file given to --output; each report needs a file "
        "of its own",
        output=False,
    ),
    case(
        "output-symlink-loop",
        "run --output loop.json",
        line="--output loop.json: is a symlink loop; the report needs a file path",
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
    """A bad input exits 2 with one line naming the culprit, nothing on stdout; no file is
    written or changed."""
    args = list(bad.args)
    if bad.output:
        args += ["--output", OUTPUT]
    before = listing(workdir)
    with pytest.MonkeyPatch.context() as faults:  # undone before the files are compared
        if bad.patch is not None:
            bad.patch(faults, workdir)
        result = gradcheck(*args)
    line = refusal(result)
    assert result.stdout == ""
    message = line.removeprefix("gradcheck: error: ")
    if bad.line is not None:
        assert message == bad.line
    for name in bad.names:
        assert name in message, f"{name!r} not in {message!r}"
    assert (workdir / OUTPUT).read_text(encoding="utf-8") == OUTPUT_CONTENT
    assert listing(workdir) == before
    assert not (workdir / MARKER).exists()


@pytest.mark.parametrize("spec", ["objects.npy", "pickle.npy", "objects.npz"])
def test_pickles_are_refused_never_unpickled(workdir: Path, spec: str) -> None:
    """A pickle in a .npy/.npz is refused by name and its payload never runs."""
    pickle.loads(pickle.dumps(CreateMarker("control"))).close()
    assert (workdir / "control").exists()  # the payload does create its file when unpickled
    for option in ("--x", "--w"):
        message = refusal(gradcheck("run", option, spec))
        for name in (spec, option, "pickle"):
            assert name in message
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


# --- an archive that would inflate past the memory budget ---------------------------------------


def write_npz_declaring(path: Path, key: str, data_bytes: int) -> None:
    """An .npz whose member `key` declares (in the zip's headers and in its .npy header) that
    it inflates to `data_bytes` of float64 data, while the file is a few hundred bytes: what a
    zip bomb says of itself before it is inflated."""
    head = io.BytesIO()
    shape = (data_bytes // 8,)
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{key}.npy", head.getvalue() + bytes(64))
    data = bytearray(buffer.getvalue())
    declared = len(head.getvalue()) + data_bytes
    struct.pack_into("<I", data, data.index(b"PK\x03\x04") + 22, declared)  # local header
    struct.pack_into("<I", data, data.index(b"PK\x01\x02") + 24, declared)  # central directory
    path.write_bytes(bytes(data))


def test_npz_member_declaring_3_gib_is_refused_before_inflating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An .npz member that declares 3 GiB, against a 1 GiB budget: exit 2 naming the member,
    at once (from its headers: nothing is inflated)."""
    monkeypatch.chdir(tmp_path)
    write_npz_declaring(tmp_path / "bomb.npz", "z", 3 << 30)
    monkeypatch.setenv("GRADCHECK_MEMORY_BUDGET", "1G")
    started = time.monotonic()
    line = refusal(gradcheck("run", "--x", "bomb.npz"))
    assert line == (
        "gradcheck: error: bomb.npz:z: inflates to 3 GiB, more than the memory budget of 1 GiB; "
        "set GRADCHECK_MEMORY_BUDGET to allow more (given to --x)"
    )
    assert time.monotonic() - started < 2


# --- a config's every mistake -------------------------------------------------------------------


TOP = "[tool.gradcheck]\npoints = 2\n\n[[tool.gradcheck.checks]]\nmodel = 'a.py'\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            TOP + "\n[[tool.gradcheck.checks]]\nmodel = 'b.py'\nrtoll = 1e-6\n",
            "pyproject.toml:9: unknown key 'rtoll' in check 2 of [[tool.gradcheck.checks]]; the "
            "keys are name, model, inputs, params, only, skip, method, delta, rtol, atol, wrt, "
            "entries, details, top, mode, order, tangents, directions, seed, cotangents, "
            "reference, jobs, max_calls, dtype, nondet_tol, points",
        ),
        (
            "[tool.gradcheck]\npoint = 2\n",
            "pyproject.toml:2: unknown key 'point' in [tool.gradcheck]; the keys are checks, "
            "method, delta, rtol, atol, wrt, entries, details, top, mode, order, tangents, "
            "directions, seed, cotangents, reference, jobs, max_calls, dtype, nondet_tol, "
            "points",
        ),
        (
            TOP.replace("points = 2", "points = 'five'"),
            "pyproject.toml:2: points: expected an integer; got 'five'",
        ),
        (TOP + "method = 'left'\n", "pyproject.toml:6: method: expected one of forward, "
         "backward, central, five-point, complex-step; got 'left'"),
        (TOP + "delta = 0\n", "pyproject.toml:6: delta: must be > 0; got 0.0"),
        (TOP + "entries = 'x[a]'\n", "pyproject.toml:6: entries: expected an entry such as "
         "w[0,1], b[3], scale[] or (with --wrt) 0,1: non-negative integers; got 'x[a]'"),
        (TOP + "mode = 'jvp'\norder = 2\n", "pyproject.toml:4: check 1: use just one of mode = "
         '"jvp" (first order, forward mode) or order = 2'),
        ("[tool.gradcheck]\n", "pyproject.toml:1: [tool.gradcheck] needs its checks: one "
         "[[tool.gradcheck.checks]] table each, with at least a model"),
        (TOP.replace("model = 'a.py'", "name = 'x'"), "pyproject.toml:4: check 1 needs a "
         'model: model = "FILE.py" (every layer), "FILE.py:NAME" (one) or a built-in model\'s '
         "name"),
        ("[tool.gradcheck\n", "pyproject.toml: not valid TOML: Expected ']' at the end of a "
         "table declaration (at line 1, column 16)"),
        ("[tool.other]\nx = 1\n", "pyproject.toml: no [tool.gradcheck] table"),
        (TOP + "params = 3\n", "pyproject.toml:6: params: expected a table by name; got 3"),
        (TOP + "\n[[tool.gradcheck.checks]]\nname = 'a'\nmodel = 'b.py'\n"
         "\n[[tool.gradcheck.checks]]\nname = 'a'\nmodel = 'c.py'\n",
         "pyproject.toml: two checks are named 'a'; each needs its own name"),
    ],
    ids=[
        "unknown-key-in-a-check",
        "unknown-default",
        "wrong-type",
        "not-a-choice",
        "zero-step",
        "bad-entries",
        "settings-that-clash",
        "no-checks",
        "no-model",
        "not-toml",
        "no-table",
        "params-not-a-table",
        "a-name-twice",
    ],
)  # fmt: skip
def test_a_config_mistake_names_its_key_file_and_line(
    workdir: Path, text: str, message: str
) -> None:
    """What a [tool.gradcheck] table holds wrong is exit 2 with one line naming the key, the
    file and the line, before any check; no file is written or changed."""
    (workdir / "pyproject.toml").write_text(text, encoding="utf-8")
    before = listing(workdir)
    line = refusal(gradcheck("check", "--config", "pyproject.toml", "--output", OUTPUT))
    assert line == f"gradcheck: error: {message}"
    assert listing(workdir) == before


# --- whatever the input says --------------------------------------------------------------------

OPTION_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
"""What a shell can pass as one argument: any text without NUL."""
NUMBER_TEXT = st.one_of(
    st.floats().map(repr),
    st.floats().map(str),
    st.integers(-(10**6), 10**6).map(str),
    OPTION_TEXT,
)
ENTRY_TEXT = st.one_of(
    st.tuples(st.integers(-3, 8), st.integers(-3, 8)).map(lambda ij: f"{ij[0]},{ij[1]}"),
    st.integers(0, 20).map(lambda k: f"random:{k}"),
    OPTION_TEXT,
)

COMMAND_OPTIONS = {
    "run": {
        "--delta": NUMBER_TEXT,
        "--rtol": NUMBER_TEXT,
        "--atol": NUMBER_TEXT,
        "--entries": ENTRY_TEXT,
        "--method": st.sampled_from(["central", "five-point", "complex-step", "forward", "x"]),
        "--top": NUMBER_TEXT,
    },
    "perturb": {
        "--delta": NUMBER_TEXT,
        "--entry": ENTRY_TEXT,
        "--rtol": NUMBER_TEXT,
        "--wrt": st.sampled_from(["X", "W", "both"]),
    },
    "sweep": {
        "--entry": ENTRY_TEXT,
        "--largest": NUMBER_TEXT,
        "--smallest": NUMBER_TEXT,
        "--wrt": st.sampled_from(["X", "W"]),
    },
}


@st.composite
def invocations(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(content of the X CSV, arguments): a command with some of its options, any values."""
    content = draw(
        st.one_of(
            st.text(max_size=80),
            st.lists(
                st.lists(st.sampled_from(["1", "-2.5", "0", "1e3", "nan", "x", ""]), max_size=4),
                max_size=4,
            ).map(lambda rows: "\n".join(",".join(row) for row in rows)),
        )
    )
    command = draw(st.sampled_from(sorted(COMMAND_OPTIONS)))
    options = COMMAND_OPTIONS[command]
    chosen = draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=3))
    args = [command, "--x", "x.csv", "--format", "json"]
    for option in chosen:
        args.append(f"{option}={draw(options[option])}")
    return content, args


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invocation=invocations())
def test_cli_exits_0_1_or_2_without_a_traceback(invocation: tuple[str, list[str]]) -> None:
    """Whatever the X file holds and whatever the options say: exit 0, 1 or 2, no traceback; an
    exit 2 is one line."""
    content, args = invocation
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "x.csv"
        path.write_text(content, encoding="utf-8")
        args = [str(path) if arg == "x.csv" else arg for arg in args]
        result = gradcheck(*args)
    output: Any = result.stdout + result.stderr
    assert result.exit_code in (0, 1, 2), (args, content, result.exit_code, output)
    assert "Traceback" not in output, (args, content)
    if result.exit_code == 2:
        assert len(result.stderr.splitlines()) == 1, (args, content, result.stderr)
