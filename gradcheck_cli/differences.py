"""Finite-difference derivatives of f along single entries, with an estimate of their own error.

Every scheme is written as a weighted sum of differences f(x + o_k h e) - f(x); working with the
differences rather than the values lets the built-in models compute them from the touched row
or column alone (models.ElementwiseModel.entry_shift_differences) and lets any model skip f(x).

Each estimate carries its error budget:
- truncation: Richardson's estimates from the same scheme at half and at twice the step, the
  larger of |D(h/2) - D(h)| / (1 - 2^-p) and |D(2h) - D(h)| / (2^p - 1) for a scheme of order p.
  Both agree in the asymptotic range; beyond it, either can land near D(h) by chance.
  (A full central check of a built-in smooth model instead bounds it by Taylor's theorem in
  closed form: kernels.truncation_bound.)
- round-off: eps * F * sum|w_k| / h, where F is the size of the function values whose difference
  was taken (the touched terms for the structured path, |f| for whole forward passes), plus
  eps * S, where S is the size of the derivative's terms (sum_j |d term_j / dx|): where they
  cancel, their sum, and the analytic gradient's, rounds in proportion to S rather than to |D|.

The textbook step eps^(1/(p+1)) * max(1, |x|) assumes f varies on the scale of |x|; f(X @ W) varies
on the scale of 1/|W| (or 1/|X|), so for large entries that step can be far too long.
`estimate_at_default_steps` starts from it and shrinks it, entry by entry, where the estimate
says truncation dominates round-off (the step-selection idea of Gill, Murray, Saunders & Wright).

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli import kernels
from gradcheck_cli.models import Array, ElementwiseModel, Model, Wrt

FloatArray = NDArray[np.floating]
ProgressCallback = Callable[[float], None]
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

COMPLEX_STEPS = {"float64": COMPLEX_STEP, "float32": 1e-10}
"""Per dtype. The imaginary part h * f' must stay a normal number to keep its digits: in float32
(smallest normal 1.2e-38) h = 1e-20 leaves a saturated f' ~ 1e-20 with a handful of bits. Any h
with (h * scale)^2 far below eps is still exact there, and 1e-10 is."""

REFINE_ROUNDS = 3
"""At most this many times an entry's step is shrunk towards the balance of the error terms."""
REFINE_BELOW = 0.5
"""Shrink only a step more than twice the estimated best one: not worth a re-evaluation else."""
REFINE_LIMIT = 1e-2
"""Shrink by at most this factor per round: the estimate that suggests it is itself rough."""

_SHRUNK = " rounded down to a power of two, shrunk where truncation dominates"

SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("forward", (1,), (1.0,), 1, 1 / 2, f"eps^(1/2) * max(1, |x|){_SHRUNK}"),
        Scheme("backward", (-1,), (-1.0,), 1, 1 / 2, f"eps^(1/2) * max(1, |x|){_SHRUNK}"),
        Scheme("central", (1, -1), (0.5, -0.5), 2, 1 / 3, f"eps^(1/3) * max(1, |x|){_SHRUNK}"),
        Scheme(
            "five-point",
            (2, 1, -1, -2),
            (-1 / 12, 8 / 12, -8 / 12, 1 / 12),
            4,
            1 / 5,
            f"eps^(1/5) * max(1, |x|){_SHRUNK}",
        ),
        Scheme(
            "complex-step",
            (1j,),
            (1.0,),
            2,
            None,
            " or ".join(f"{h:g} ({name})" for name, h in COMPLEX_STEPS.items()) + ", fixed",
        ),
    )
}
METHOD_NAMES = tuple(SCHEMES)

# Memory bound for the structured path: a chunk of entries moves at most this many elements
# of X @ W at once (each a float64 or complex128), a few such arrays live at a time.
CHUNK_ELEMENTS = 1 << 20


def machine_epsilon(dtype: np.dtype[Any]) -> float:
    return float(np.finfo(dtype).eps)


def default_steps(scheme: Scheme, values: FloatArray) -> FloatArray:
    """The textbook step per entry, eps^(1/(p+1)) * max(1, |x|), rounded down to a power of two.

    A power of two makes x +- h exact wherever h >= ulp(x), so the step taken is the step
    meant; and it leaves few distinct steps, which the dense kernels (kernels.py) batch.
    """
    if scheme.step_power is None:
        step = COMPLEX_STEPS.get(np.dtype(values.dtype).name, COMPLEX_STEP)
        return np.full(values.shape, step, dtype=np.float64)
    eps = machine_epsilon(values.dtype)
    textbook = eps**scheme.step_power * np.maximum(1.0, np.abs(values).astype(np.float64))
    # Rounded down: never longer than the textbook step (truncation grows like h^p).
    return np.asarray(np.exp2(np.floor(np.log2(textbook))), dtype=np.float64)


@dataclass(frozen=True)
class DerivativeEstimates:
    """Finite-difference estimates for a batch of entries of one matrix (arrays of shape (B,))."""

    numerical: FloatArray
    steps: FloatArray
    truncation: FloatArray
    roundoff: FloatArray
    one_sided_gap: FloatArray
    """|forward - backward| slope at h, and its growth from h/2 to h: used to spot kinks."""
    gap_growth: FloatArray
    reach: FloatArray
    """The farthest any evaluation moved the entry: a kink within it may explain a mismatch."""
    balance: FloatArray
    """The round-off a step is balanced against when it is shrunk: that of differencing by
    subtraction. The same as `roundoff`, except on the dense path, which subtracts nothing and
    so has far less; shrinking steps by its own round-off would only trade one path for the
    other."""

    @property
    def error(self) -> FloatArray:
        return np.asarray(self.truncation + self.roundoff)

    def replaced(self, where: NDArray[np.intp], other: DerivativeEstimates) -> DerivativeEstimates:
        """A copy with the entries at positions `where` taken from `other` (of that length)."""
        fields: dict[str, FloatArray] = {}
        for name in self.__dataclass_fields__:
            column = np.array(getattr(self, name), copy=True)
            column[where] = getattr(other, name)
            fields[name] = column
        return DerivativeEstimates(**fields)


def _stencil(
    scheme: Scheme, ratios: tuple[float, ...]
) -> tuple[list[complex], list[int], list[list[int]]]:
    """The offsets needed for D(h) and each D(r h), and where the scheme's offsets sit in them.

    Real schemes also get +-1 and +-r for the first ratio r: one-sided slopes that spot kinks.
    """
    needed: list[complex] = []
    wanted: list[complex] = [*scheme.offsets, 1, -1, ratios[0], -ratios[0]]
    for r in ratios:
        wanted += [r * o for o in scheme.offsets]
    for o in wanted:
        if scheme.imaginary and not (isinstance(o, complex) and o.imag != 0):
            continue  # complex-step never evaluates real shifts
        if o not in needed:
            needed.append(o)
    at_h = [needed.index(o) for o in scheme.offsets]
    return needed, at_h, [[needed.index(r * o) for o in scheme.offsets] for r in ratios]


def richardson_offsets(scheme: Scheme) -> tuple[list[complex], list[int], list[int]]:
    """The offsets needed for D(h) and D(2h) alone (a single directional check needs no more)."""
    needed, at_h, (at_2h,) = _stencil(scheme, (2.0,))
    return needed, at_h, at_2h


def combine_differences(
    scheme: Scheme, diffs: Array, idx: list[int], step: FloatArray
) -> FloatArray:
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
    offsets, at_h, (at_half, at_2h) = _stencil(scheme, (0.5, 2.0))
    offset_array = np.asarray(offsets, dtype=np.complex128 if scheme.imaginary else np.float64)
    shifts = steps[:, None] * offset_array[None, :]
    # Shifts in the working precision, so a float32 check is float32 throughout.
    working = np.result_type(target.dtype, np.complex64) if scheme.imaginary else target.dtype
    shifts = shifts.astype(working)

    if structured and _dense_applies(model, X, W, target, flat_indices, steps, scheme):
        assert isinstance(model, ElementwiseModel)
        return _dense_estimates(model, X, W, wrt, steps, scheme, progress)
    if structured and isinstance(model, ElementwiseModel):
        diffs, values, terms = _structured_differences(
            model, X, W, wrt, rows, cols, shifts, progress
        )
    else:
        diffs, values, terms = _black_box_differences(
            model, X, W, wrt, rows, cols, shifts, f0, progress
        )

    eps = machine_epsilon(target.dtype)
    at_h_value = combine_differences(scheme, diffs, at_h, steps)
    at_half_value = combine_differences(scheme, diffs, at_half, steps / 2)
    at_2h_value = combine_differences(scheme, diffs, at_2h, 2 * steps)
    # Richardson from both sides: from h/2 (the better estimate, which still moves towards the
    # truth where h is beyond the asymptotic range) and from 2h (which leaves that range first,
    # so it flags a step barely inside). Either alone can miss, by chance, where D(h) lies.
    from_half = np.abs(at_half_value - at_h_value) / (1.0 - 2.0**-scheme.order)
    from_double = np.abs(at_2h_value - at_h_value) / (2.0**scheme.order - 1.0)
    truncation = np.maximum(from_half, from_double)
    # Summing the derivative's terms (here, and in the analytic gradient) rounds in proportion
    # to their size, which exceeds |D| wherever they cancel.
    summed = terms + np.abs(at_h_value)
    if scheme.imaginary:
        # No subtraction of nearby values: that summation is the only round-off.
        roundoff = 4 * eps * summed
    else:
        weight_sum = float(sum(abs(w) for w in scheme.weights))
        # The terms' own rounding, plus the rounding of the shift itself (x + h is not exact).
        magnitudes = np.abs(target.ravel()[flat_indices])
        roundoff = (
            4
            * eps
            * (
                values * weight_sum / steps
                + np.maximum(1.0, magnitudes) / steps * np.abs(at_h_value)
                + summed
            )
        )

    if scheme.imaginary:
        gap = np.zeros_like(at_h_value)
        growth = np.zeros_like(at_h_value)
    else:
        # One-sided slopes at h/2 and h: for smooth f their gap grows like h; across a kink it
        # stays of the size of the jump in slope.
        p1, m1, p2, m2 = (offsets.index(o) for o in (1, -1, 0.5, -0.5))
        gap_h = (diffs[:, p1].real + diffs[:, m1].real) / steps
        gap_half = (diffs[:, p2].real + diffs[:, m2].real) / (steps / 2)
        gap = np.abs(gap_h)
        growth = np.abs(gap_h - 2 * gap_half)
    reach = steps * max(abs(o) for o in offsets)
    return DerivativeEstimates(
        at_h_value, steps, truncation, roundoff, gap, growth, reach, balance=roundoff
    )


DENSE_RATIOS = {"central": (0.5, 1.0), "five-point": (0.5, 1.0, 2.0, 4.0)}
"""Central differences needed, as multiples of h: five-point is Richardson on central,
(4 C(h) - C(2h)) / 3, and needs D(h/2), D(h), D(2h). Central needs D(h/2) and D(h) where its
truncation is Richardson's (relu); for the smooth activations it needs D(h) alone, its
truncation being bounded by Taylor's theorem in closed form (kernels.truncation_bound)."""


def dense_ratios(scheme: Scheme, model: ElementwiseModel) -> tuple[float, ...]:
    if scheme.name == "central" and model.activation.name in kernels.FOURTH_DERIVATIVE_BOUND:
        return (1.0,)
    return DENSE_RATIOS[scheme.name]


def _dense_applies(
    model: Model,
    X: Array,
    W: Array,
    target: Array,
    flat_indices: NDArray[np.intp],
    steps: FloatArray,
    scheme: Scheme,
) -> bool:
    """Every entry of the matrix, in order, for a built-in model with a closed-form bracket."""
    if scheme.name not in DENSE_RATIOS or flat_indices.size != target.size or not steps.size:
        return False
    if not np.array_equal(flat_indices, np.arange(target.size)):
        return False
    if not isinstance(model, ElementwiseModel):
        return False
    reach = float(np.max(steps)) * max(dense_ratios(scheme, model))
    return kernels.supports(model, X, W, reach)


def _dense_estimates(
    model: ElementwiseModel,
    X: Array,
    W: Array,
    wrt: Wrt,
    steps: FloatArray,
    scheme: Scheme,
    progress: ProgressCallback | None,
) -> DerivativeEstimates:
    """All entries at once from kernels.central_brackets. Truncation: for central differences of
    the smooth activations, the Taylor bound (one difference per entry, at h); otherwise
    Richardson, as on the structured path. Round-off: that of summing the brackets, since the
    closed form subtracts nothing."""
    target = X if wrt == "X" else W
    grid = steps.reshape(target.shape)
    G = X @ W
    ratios = dense_ratios(scheme, model)

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
    # What the structured path's subtraction would round by (see estimate_derivatives), for
    # the step-shrinking rule only.
    values = kernels.value_sizes(model, G, wrt)
    weight_sum = float(sum(abs(w) for w in scheme.weights))
    subtraction = (
        4
        * eps
        * (
            values * weight_sum / grid
            + np.maximum(1.0, np.abs(target)) / grid * np.abs(at[1.0])
            + terms
            + np.abs(at[1.0])
        )
    )
    zeros = np.zeros(target.size)
    return DerivativeEstimates(
        numerical=at[1.0].ravel(),
        steps=steps,
        truncation=truncation.ravel(),
        roundoff=roundoff.ravel(),
        one_sided_gap=zeros,
        gap_growth=zeros,
        reach=steps * max(2.0, max(ratios)),
        balance=subtraction.ravel(),
    )


def best_step_ratio(scheme: Scheme, estimates: DerivativeEstimates) -> FloatArray:
    """h_best / h per entry, from the estimated truncation (~ h^p) and round-off (~ 1/h).

    Minimising c h^p + r / h gives h_best = (r / (p c))^(1/(p+1)); with c = T / h^p and
    r = R h that is h (R / (p T))^(1/(p+1)). T is first cleared of the round-off that
    D(h/2) - D(h) itself may carry (R at h, 2R at h/2), so only truncation that is surely there
    shrinks a step. Entries without such truncation get 1 (keep the step).
    """
    p = scheme.order
    noise = 3 * estimates.balance / (1.0 - 2.0**-p)
    sure = np.maximum(estimates.truncation - noise, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (estimates.balance / (p * sure)) ** (1.0 / (p + 1))
    # No round-off at all (every touched term exactly 0, a dead relu) gives 0: shrink freely.
    return np.asarray(np.where(sure > 0, ratio, 1.0), dtype=np.float64)


def estimate_at_default_steps(
    model: Model,
    X: Array,
    W: Array,
    wrt: Wrt,
    flat_indices: NDArray[np.intp],
    scheme: Scheme,
    *,
    f0: float,
    structured: bool = True,
    progress: ProgressCallback | None = None,
) -> DerivativeEstimates:
    """Estimates at the textbook step, shrunk per entry where truncation dominates.

    The textbook step suits f varying on the scale of |x|; when it varies faster (a large entry
    times a large weight) its truncation error dwarfs the round-off. Such entries are estimated
    again at the step that balances the two. The new estimate replaces the old even when its
    error estimate is larger: far outside the asymptotic range the old one was too optimistic.
    """
    target = X if wrt == "X" else W
    steps = default_steps(scheme, target.ravel()[flat_indices])
    estimates = estimate_derivatives(
        model,
        X,
        W,
        wrt,
        flat_indices,
        steps,
        scheme,
        f0=f0,
        structured=structured,
        progress=progress,
    )
    if scheme.imaginary:
        return estimates  # the complex step has no round-off to balance
    for _ in range(REFINE_ROUNDS):
        ratio = best_step_ratio(scheme, estimates)
        redo = np.flatnonzero(np.isfinite(estimates.numerical) & (ratio < REFINE_BELOW))
        if not redo.size:
            break
        shorter = estimates.steps[redo] * np.maximum(ratio[redo], REFINE_LIMIT)
        again = estimate_derivatives(
            model, X, W, wrt, flat_indices[redo], shorter, scheme, f0=f0, structured=structured
        )
        estimates = estimates.replaced(redo, again)
    return estimates


def _structured_differences(
    model: ElementwiseModel,
    X: Array,
    W: Array,
    wrt: Wrt,
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    shifts: Array,
    progress: ProgressCallback | None,
) -> tuple[Array, FloatArray, FloatArray]:
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
) -> tuple[Array, FloatArray, FloatArray]:
    """Whole forward passes, one per entry and shift: the only path for user models.

    Returns the differences, |f| at its largest, and zeros for the size of the derivative's
    terms: a black box does not show its terms.
    """
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
                magnitudes[b] = max(magnitudes[b], abs(np.real(value)))
            target[i, j] = original[i, j]
            if progress is not None:
                progress(1)
    return diffs, magnitudes, np.zeros(rows.shape, dtype=np.float64)
