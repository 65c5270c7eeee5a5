"""The Python API: check your own forward/backward from code or from a pytest test.

    from gradcheck_cli import assert_gradients_close

    def test_my_layer_gradient():
        assert_gradients_close(forward, backward, X, W)

Both functions return the same `RunReport` that `gradcheck run --format json` prints
(`report.to_document()` is that JSON document).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from gradcheck_cli.checks import run_check
from gradcheck_cli.errors import InputError
from gradcheck_cli.models import Wrt
from gradcheck_cli.report import ModelInfo, RunReport
from gradcheck_cli.user_model import ModelFile, bind_models


def check_gradients(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    X: ArrayLike,
    W: ArrayLike,
    *,
    wrt: Literal["X", "W", "both"] = "both",
    method: str = "central",
    delta: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    dtype: Literal["float64", "float32"] = "float64",
    entries: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    details: Literal["auto", "all", "worst"] = "auto",
    top: int = 10,
    cotangents: int = 2,
    seed: int = 0,
    name: str | None = None,
    formula: str | None = None,
) -> RunReport:
    """Check backward against finite differences of forward, as `gradcheck run` does.

    forward(X, W) returns a number (then backward(X, W) returns (dX, dW)) or an array (then
    backward(X, W, grad_output) returns the vector-Jacobian product (dX, dW)). The settings mean
    what the CLI options of the same name mean; `entries` maps "X"/"W" to (i, j) pairs.
    Bad input raises `gradcheck_cli.errors.InputError`.
    """
    _choice("wrt", wrt, ("X", "W", "both"))
    _choice("dtype", dtype, ("float64", "float32"))
    _choice("details", details, ("auto", "all", "worst"))
    if cotangents < 1 or top < 1:
        raise InputError(f"cotangents and top must be at least 1; got {cotangents} and {top}")
    x_array = _matrix(X, "X").astype(np.dtype(dtype))
    w_array = _matrix(W, "W").astype(np.dtype(dtype))
    if x_array.shape[1] != w_array.shape[0]:
        raise InputError(
            f"X {x_array.shape} and W {w_array.shape} do not fit: "
            f"X's {x_array.shape[1]} columns must equal W's {w_array.shape[0]} rows"
        )
    source = inspect.getsourcefile(forward) or "<api>"
    label = name or str(getattr(forward, "__qualname__", "forward"))
    model_file = ModelFile(
        path=Path(source).resolve() if source != "<api>" else Path(source),
        name=label,
        formula=formula or f"{label}(X, W)",
        forward=forward,
        backward=backward,
    )
    models = bind_models(model_file, x_array, w_array, cotangents=cotangents, seed=seed)
    matrices: list[Wrt] = ["X", "W"] if wrt == "both" else [wrt]
    selection = None if entries is None else _selection(entries, x_array, w_array)
    return run_check(
        models,
        x_array,
        w_array,
        model_info=ModelInfo(label, model_file.formula, "api"),
        sources={"X": "array", "W": "array"},
        wrt=matrices,
        entries=selection,
        method=method,
        delta=delta,
        rtol=rtol,
        atol=atol,
        details=details,
        top=top,
        extra_settings={"wrt": wrt, "entries": "all" if entries is None else "list", "seed": seed},
    )


def assert_gradients_close(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    X: ArrayLike,
    W: ArrayLike,
    **settings: Any,
) -> RunReport:
    """Like check_gradients, but raise AssertionError naming the worst entries when any fails."""
    report = check_gradients(forward, backward, X, W, **settings)
    if not report.passed:
        failed = sorted((c for c in report.checks if not c.passed), key=lambda c: -c.excess)[:5]
        total = sum(s.failed for s in report.summary.values())
        lines = [f"{total} gradient entries disagree with finite differences; worst first:"]
        lines += [
            f"  d{c.wrt}[{c.index[0]}, {c.index[1]}]"
            + ("" if c.cotangent is None else f" (cotangent v{c.cotangent})")
            + f": analytic {c.analytic:.10g}, numerical {c.numerical:.10g},"
            f" |diff| {c.abs_error:.3g} > tolerance {c.tolerance:.3g} ({c.reason})"
            for c in failed
        ]
        raise AssertionError("\n".join(lines))
    return report


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _selection(
    entries: Mapping[str, Sequence[tuple[int, int]]],
    X: np.ndarray[Any, Any],
    W: np.ndarray[Any, Any],
) -> dict[str, np.ndarray[Any, Any]]:
    selection = {}
    for key, pairs in entries.items():
        _choice("entries key", key, ("X", "W"))
        shape = (X if key == "X" else W).shape
        flat = []
        for i, j in pairs:
            if not (0 <= i < shape[0] and 0 <= j < shape[1]):
                raise InputError(
                    f"entry {key}[{i}, {j}] is out of range for shape {shape}: "
                    f"i must be 0..{shape[0] - 1} and j 0..{shape[1] - 1}"
                )
            flat.append(i * shape[1] + j)
        selection[key] = np.asarray(sorted(set(flat)), dtype=np.intp)
    return selection


def _matrix(value: ArrayLike, label: str) -> np.ndarray[Any, Any]:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"{label} must be a non-empty 2-D array; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{label} holds NaN or Inf values")
    return array
