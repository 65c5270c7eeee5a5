"""Finite-difference derivatives of f along single entries, with an estimate of their own error.

Every scheme is written as a weighted sum of differences f(x + o_k h e) - f(x); working with the
differences rather than the values lets the built-in models compute them from the touched row
or column alone (models.ElementwiseModel.entry_shift_differences) and lets any model skip f(x).

Each estimate carries its error budget:
- truncation: Richardson's estimate from the same scheme at step 2h,
  |D(2h) - D(h)| / (2^p - 1) for a scheme of order p;
- round-off: eps * F * sum|w_k| / h, where F is the size of the function values whose difference
  was taken (the touched terms for the structured path, |f| for whole forward passes).

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.models import Array, ElementwiseModel, Model, Wrt

FloatArray = NDArray[np.floating]
ProgressCallback = Callable[[int], None]
"""Called with the number of entries just finished."""


@dataclass(frozen=True)
class Scheme:
    name: str
    offsets: tuple[complex, ...]
    """Multiples of the step h at which f is evaluated."""
    weights: tuple[float, ...]
    """derivative ~ sum_k weights[k] * (f(x + offsets[k] h) - f(x)) / h"""
    order: int
    """Truncation error ~ h**order."""
    step_power: float | None
    """Default step eps**step_power * max(1, |x|) (balances truncation and round-off);
    None for complex-step, whose step is fixed."""
    step_rule: str

    @property
    def imaginary(self) -> bool:
        return any(isinstance(o, complex) and o.imag != 0 for o in self.offsets)


COMPLEX_STEP = 1e-20
"""Complex-step has no subtraction, so no round-off to balance: any tiny step is exact."""

SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("forward", (1,), (1.0,), 1, 1 / 2, "eps^(1/2) * max(1, |x|)"),
        Scheme("backward", (-1,), (-1.0,), 1, 1 / 2, "eps^(1/2) * max(1, |x|)"),
        Scheme("central", (1, -1), (0.5, -0.5), 2, 1 / 3, "eps^(1/3) * max(1, |x|)"),
        Scheme(
            "five-point",
            (2, 1, -1, -2),
            (-1 / 12, 8 / 12, -8 / 12, 1 / 12),
            4,
            1 / 5,
            "eps^(1/5) * max(1, |x|)",
        ),
        Scheme("complex-step", (1j,), (1.0,), 2, None, f"{COMPLEX_STEP:g} (fixed)"),
    )
}
METHOD_NAMES = tuple(SCHEMES)

# Memory bound for the structured path: a chunk of entries moves at most this many elements
# of X @ W at once (each a float64 or complex128), a few such arrays live at a time.
CHUNK_ELEMENTS = 1 << 20


def machine_epsilon(dtype: np.dtype[Any]) -> float:
    return float(np.finfo(dtype).eps)


def default_steps(scheme: Scheme, values: FloatArray) -> FloatArray:
    """The textbook step per entry: eps^(1/(p+1)) scaled by the entry's magnitude."""
    if scheme.step_power is None:
        return np.full(values.shape, COMPLEX_STEP, dtype=np.float64)
    eps = machine_epsilon(values.dtype)
    return np.asarray(eps**scheme.step_power * np.maximum(1.0, np.abs(values)), dtype=np.float64)


@dataclass(frozen=True)
class DerivativeEstimates:
    """Finite-difference estimates for a batch of entries of one matrix (arrays of shape (B,))."""

    numerical: FloatArray
    steps: FloatArray
    truncation: FloatArray
    roundoff: FloatArray
    one_sided_gap: FloatArray
    """|forward - backward| slope at h, and its growth from h to 2h: used to spot kinks."""
    gap_growth: FloatArray


def _richardson_offsets(scheme: Scheme) -> tuple[list[complex], list[int], list[int]]:
    """The offsets needed for D(h) and D(2h), and where each scheme offset sits among them."""
    needed: list[complex] = []
    for o in (*scheme.offsets, *(2 * o for o in scheme.offsets), 1, -1, 2, -2):
        if scheme.imaginary and not (isinstance(o, complex) and o.imag != 0):
            continue  # complex-step never evaluates real shifts
        if o not in needed:
            needed.append(o)
    at_h = [needed.index(o) for o in scheme.offsets]
    at_2h = [needed.index(2 * o) for o in scheme.offsets]
    return needed, at_h, at_2h


def _combine(scheme: Scheme, diffs: Array, idx: list[int], step: FloatArray) -> FloatArray:
    total = sum(w * diffs[:, k] for w, k in zip(scheme.weights, idx, strict=True))
    total = np.asarray(total)
    if scheme.imaginary:
        return np.asarray(total.imag / step, dtype=np.float64)
    return np.asarray(total.real / step, dtype=np.float64)


def estimate_derivatives(
    model: Model,
    X: Array,
    W: Array,
    wrt: Wrt,
    flat_indices: NDArray[np.intp],
    steps: FloatArray,
    scheme: Scheme,
    *,
    f0: float,
    structured: bool = True,
    progress: ProgressCallback | None = None,
) -> DerivativeEstimates:
    """Estimate dF/d(wrt)[entry] for each flat index, with truncation and round-off budgets."""
    target = X if wrt == "X" else W
    rows, cols = np.unravel_index(flat_indices, target.shape)
    rows = np.asarray(rows, dtype=np.intp)
    cols = np.asarray(cols, dtype=np.intp)
    offsets, at_h, at_2h = _richardson_offsets(scheme)
    offset_array = np.asarray(offsets, dtype=np.complex128 if scheme.imaginary else np.float64)
    shifts = steps[:, None] * offset_array[None, :]
    # Shifts in the working precision, so a float32 check is float32 throughout.
    working = np.result_type(target.dtype, np.complex64) if scheme.imaginary else target.dtype
    shifts = shifts.astype(working)

    if structured and isinstance(model, ElementwiseModel):
        diffs, magnitudes = _structured_differences(model, X, W, wrt, rows, cols, shifts, progress)
    else:
        diffs, magnitudes = _black_box_differences(
            model, X, W, wrt, rows, cols, shifts, f0, progress
        )

    eps = machine_epsilon(target.dtype)
    at_h_value = _combine(scheme, diffs, at_h, steps)
    at_2h_value = _combine(scheme, diffs, at_2h, 2 * steps)
    truncation = np.abs(at_2h_value - at_h_value) / (2.0**scheme.order - 1.0)
    if scheme.imaginary:
        # No cancellation: the imaginary part carries the derivative to a few ulps.
        roundoff = 4 * eps * np.abs(at_h_value)
    else:
        weight_sum = float(sum(abs(w) for w in scheme.weights))
        # The terms' own rounding, plus the rounding of the shift itself (x + h is not exact).
        values = np.abs(target.ravel()[flat_indices])
        roundoff = (
            4
            * eps
            * (
                magnitudes * weight_sum / steps
                + np.maximum(1.0, values) / steps * np.abs(at_h_value)
            )
        )

    if scheme.imaginary:
        gap = np.zeros_like(at_h_value)
        growth = np.zeros_like(at_h_value)
    else:
        # One-sided slopes at h and 2h: for smooth f their gap grows like h; across a kink it
        # stays of the size of the jump in slope.
        p1, m1, p2, m2 = (offsets.index(o) for o in (1, -1, 2, -2))
        gap_h = (diffs[:, p1].real + diffs[:, m1].real) / steps
        gap_2h = (diffs[:, p2].real + diffs[:, m2].real) / (2 * steps)
        gap = np.abs(gap_h)
        growth = np.abs(gap_2h - 2 * gap_h)
    return DerivativeEstimates(at_h_value, steps, truncation, roundoff, gap, growth)


def _structured_differences(
    model: ElementwiseModel,
    X: Array,
    W: Array,
    wrt: Wrt,
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    shifts: Array,
    progress: ProgressCallback | None,
) -> tuple[Array, FloatArray]:
    G = X @ W
    length = G.shape[1] if wrt == "X" else G.shape[0]
    chunk = max(1, CHUNK_ELEMENTS // max(1, length * shifts.shape[1]))
    diffs = np.empty(shifts.shape, dtype=np.result_type(G, shifts))
    magnitudes = np.empty(rows.shape, dtype=np.float64)
    for start in range(0, rows.size, chunk):
        part = slice(start, start + chunk)
        diffs[part], magnitudes[part] = model.entry_shift_differences(
            X, W, G, wrt, rows[part], cols[part], shifts[part]
        )
        if progress is not None:
            progress(rows[part].size)
    return diffs, magnitudes


def _black_box_differences(
    model: Model,
    X: Array,
    W: Array,
    wrt: Wrt,
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    shifts: Array,
    f0: float,
    progress: ProgressCallback | None,
) -> tuple[Array, FloatArray]:
    """Whole forward passes, one per entry and shift: the only path for user models."""
    diffs = np.empty(shifts.shape, dtype=np.result_type(np.asarray(f0), shifts))
    magnitudes = np.full(rows.shape, abs(f0), dtype=np.float64)
    moved_X = X.astype(np.result_type(X, shifts), copy=True)
    moved_W = W.astype(np.result_type(W, shifts), copy=True)
    target = moved_X if wrt == "X" else moved_W
    original = X if wrt == "X" else W
    with np.errstate(all="ignore"):  # a user's forward may overflow at a shifted point
        for b, (i, j) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            for k in range(shifts.shape[1]):
                target[i, j] = original[i, j] + shifts[b, k]
                value = model.value(moved_X, moved_W)
                diffs[b, k] = value - f0
                magnitudes[b] = max(magnitudes[b], abs(value))
            target[i, j] = original[i, j]
            if progress is not None:
                progress(1)
    return diffs, magnitudes
