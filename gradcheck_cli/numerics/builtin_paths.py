"""The built-in models' own paths to finite differences, chosen by capability
(models.ElementwiseModel), never by name:
- structured: f(x + o h e) - f(x) from the row or column of X @ W an entry touches alone
  (models.ElementwiseModel.entry_shift_differences), in chunks of bounded memory;
- dense: every entry of X or W at once from the closed-form brackets (kernels.central_brackets),
  which subtract nothing, with their own truncation and round-off budgets.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.numerics import kernels
from gradcheck_cli.numerics.evaluation import ProgressCallback
from gradcheck_cli.numerics.models import Array, ElementwiseModel, Inputs, Model, Wrt
from gradcheck_cli.numerics.schemes import FloatArray, Scheme, machine_epsilon

# Memory bound for the structured path: a chunk of entries moves at most this many elements
# of X @ W at once (each a float64 or complex128), a few such arrays live at a time.
CHUNK_ELEMENTS = 1 << 20


def structured_differences(
    model: ElementwiseModel,
    inputs: Inputs,
    wrt: Wrt,
    flat_indices: NDArray[np.intp],
    shifts: Array,
    progress: ProgressCallback | None,
) -> tuple[Array, FloatArray, FloatArray]:
    """f(x + shifts[b, k] e) - f(x) for each entry b and shift k, from the touched row or column
    alone; with the size of the touched terms' values and of the derivative's terms per entry
    (for the round-off budget)."""
    X, W = inputs["X"], inputs["W"]
    rows, cols = (
        np.asarray(i, dtype=np.intp) for i in np.unravel_index(flat_indices, inputs[wrt].shape)
    )
    G = X @ W
    length = G.shape[1] if wrt == "X" else G.shape[0]
    chunk = max(1, CHUNK_ELEMENTS // max(1, length * shifts.shape[1]))
    diffs = np.empty(shifts.shape, dtype=np.result_type(G, shifts))
    values = np.empty(rows.shape, dtype=np.float64)
    terms = np.empty(rows.shape, dtype=np.float64)
    for start in range(0, rows.size, chunk):
        part = slice(start, start + chunk)
        diffs[part], values[part], terms[part] = model.entry_shift_differences(
            X, W, G, wrt, rows[part], cols[part], shifts[part]
        )
        if progress is not None:
            progress(rows[part].size)
    return diffs, values, terms


DENSE_RATIOS = {"central": (0.5, 1.0), "five-point": (0.5, 1.0, 2.0, 4.0)}
"""Central differences needed, as multiples of h: five-point is Richardson on central,
(4 C(h) - C(2h)) / 3, and needs D(h/2), D(h), D(2h). Central needs D(h/2) and D(h) where its
truncation is Richardson's (relu); for the smooth activations it needs D(h) alone, its
truncation being bounded by Taylor's theorem in closed form (kernels.truncation_bound)."""


def dense_ratios(scheme: Scheme, model: ElementwiseModel) -> tuple[float, ...]:
    if scheme.name == "central" and model.activation.name in kernels.FOURTH_DERIVATIVE_BOUND:
        return (1.0,)
    return DENSE_RATIOS[scheme.name]


def dense_coverage(
    model: Model,
    inputs: Inputs,
    wrt: Wrt,
    flat_indices: NDArray[np.intp],
    steps: FloatArray,
    scheme: Scheme,
) -> NDArray[np.bool_] | None:
    """Where the dense path may be taken: every entry of the matrix, in order, for a built-in
    model with a closed-form bracket. The mask of the entries it covers (the others' shifts are
    too large for its cosh: the structured path takes them); None where it does not apply or
    covers nothing."""
    if scheme.name not in DENSE_RATIOS or not steps.size:
        return None
    target = inputs[wrt]
    if flat_indices.size != target.size or not np.array_equal(flat_indices, np.arange(target.size)):
        return None
    if not isinstance(model, ElementwiseModel) or not kernels.supports(
        model, inputs["X"], inputs["W"]
    ):
        return None
    reach = float(np.max(steps)) * max(dense_ratios(scheme, model))
    covered = ~kernels.beyond_reach(inputs["X"], inputs["W"], wrt, reach).reshape(-1)
    return covered if covered.any() else None


@dataclass(frozen=True)
class DenseEstimates:
    """What the dense path knows of every entry (flat arrays, in the input's order); the one-sided
    slopes and kink evidence it does not have (estimates.DerivativeEstimates fills them in)."""

    numerical: FloatArray
    truncation: FloatArray
    roundoff: FloatArray
    balance: FloatArray
    """What the structured path's subtraction would round by: the step-shrinking rule's
    round-off (see estimates.DerivativeEstimates.balance)."""
    terms: FloatArray
    reach: FloatArray


def dense_estimates(
    model: ElementwiseModel,
    inputs: Inputs,
    wrt: Wrt,
    steps: FloatArray,
    scheme: Scheme,
    progress: ProgressCallback | None,
) -> DenseEstimates:
    """All entries at once from kernels.central_brackets. Truncation: for central differences of
    the smooth activations, the Taylor bound (one difference per entry, at h); otherwise
    Richardson, as on the structured path. Round-off: that of summing the brackets, since the
    closed form subtracts nothing."""
    X, W = inputs["X"], inputs["W"]
    target = inputs[wrt]
    grid = steps.reshape(target.shape)
    G = X @ W
    ratios = dense_ratios(scheme, model)
    reach = float(np.max(steps)) * max(ratios)
    far = kernels.beyond_reach(X, W, wrt, reach)
    if far.any():
        # Entries beyond the brackets' reach are the structured path's (the caller replaces
        # them); their shifts are zeroed here, so that nothing overflows on the way.
        if wrt == "X":
            W = np.where(far[0][:, None], 0.0, W).astype(W.dtype)
        else:
            X = np.where(far[:, 0][None, :], 0.0, X).astype(X.dtype)

    def share(amount: float) -> None:
        if progress is not None:
            progress(amount / len(ratios))

    central = {
        r: kernels.central_brackets(model, X, W, G, wrt, grid * r, progress=share) / (2 * r * grid)
        for r in ratios
    }
    p = scheme.order
    if ratios == (1.0,):
        at = central
        truncation = kernels.truncation_bound(model, X, W, G, wrt, grid)
    elif scheme.name == "central":
        at = central
        # relu: piecewise linear, so D(h) is exact unless a kink lies within the step.
        truncation = np.abs(at[0.5] - at[1.0]) / (1.0 - 2.0**-p)
    else:
        at = {r: (4 * central[r] - central[2 * r]) / 3 for r in (0.5, 1.0, 2.0)}
        from_half = np.abs(at[0.5] - at[1.0]) / (1.0 - 2.0**-p)
        truncation = np.maximum(from_half, np.abs(at[2.0] - at[1.0]) / (2.0**p - 1.0))
    # Each bracket rounds by a few ulps of itself, and a (an entry of X @ W, computed once)
    # carries ~eps |a| of its own, which moves the bracket by ~eps |a| relatively.
    eps = machine_epsilon(target.dtype)
    # A bracket that under- or overflows (cosh past its range, a saturated term) keeps only an
    # absolute accuracy of ~tiny: each of the summed terms counts as at least tiny / eps, as on
    # the structured path.
    summed = G.shape[1] if wrt == "X" else G.shape[0]
    floor = summed * float(np.finfo(target.dtype).tiny) / eps / grid
    terms = kernels.term_sizes(model, X, W, G, wrt) + floor
    roundoff = 8 * eps * (terms + np.abs(at[1.0]))
    # What the structured path's subtraction would round by (see estimates.py), for
    # the step-shrinking rule only.
    values = kernels.value_sizes(model, G, wrt)
    weight_sum = float(sum(abs(w) for w in scheme.weights))
    subtraction = (
        4
        * eps
        * (
            values * weight_sum / grid
            + np.maximum(np.abs(target), grid) / grid * np.abs(at[1.0])
            + terms
            + np.abs(at[1.0])
        )
    )
    return DenseEstimates(
        numerical=at[1.0].ravel(),
        truncation=truncation.ravel(),
        roundoff=roundoff.ravel(),
        balance=subtraction.ravel(),
        terms=np.asarray(terms, dtype=np.float64).ravel(),
        reach=steps * max(2.0, max(ratios)),
    )
