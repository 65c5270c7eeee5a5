"""Finite-difference derivatives of f along single entries, with an estimate of their own error.

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

The steps start at the scheme's default (schemes.default_steps) and are refined entry by entry
(`estimate_at_default_steps`). The differences come from the built-in models' own paths
(builtin_paths.py) or from whole forward passes of a black box (evaluation.py).

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.numerics.builtin_paths import (
    DenseEstimates,
    dense_coverage,
    dense_estimates,
    structured_differences,
)
from gradcheck_cli.numerics.evaluation import ProgressCallback, black_box_differences
from gradcheck_cli.numerics.models import (
    Array,
    ElementwiseModel,
    Inputs,
    Model,
    Wrt,
    batching,
    step_scale,
)
from gradcheck_cli.numerics.schemes import (
    GROW_CEILING,
    GROW_FACTOR,
    GROW_ROUNDS,
    REFINE_BELOW,
    REFINE_LIMIT,
    REFINE_ROUNDS,
    FloatArray,
    Scheme,
    default_steps,
    machine_epsilon,
)


@dataclass(frozen=True)
class DerivativeEstimates:
    """Finite-difference estimates for a batch of entries of one input (arrays of shape (B,))."""

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
    forward_slope: FloatArray
    backward_slope: FloatArray
    """(f(x + h) - f(x)) / h and (f(x) - f(x - h)) / h: at a kink the gradient must lie between
    them. NaN where they were not evaluated (complex-step, the dense path)."""
    slope_error: FloatArray
    """The error estimate of each one-sided slope (first order: Richardson from h/2, and
    round-off); NaN with them."""
    settled: NDArray[np.bool_]
    """True where one step already decided the entry (see `one_step_estimates`): its truncation
    was not estimated, because the difference agreed with the gradient within round-off."""
    shrunk: NDArray[np.bool_]
    """True where the step was shrunk below the default because truncation dominated: near a
    kink, a shrunk step can hide it, so such entries get the kink test."""
    terms: FloatArray
    """The size of the derivative's terms, sum_j |d term_j / dx| (where the path sees them: the
    built-in models; 0 for a black box). Where the terms cancel, the true derivative is far
    smaller than they are, and so is what any computation of it, the analytic one included,
    can resolve: an estimate at the level of their rounding is all the evidence there is."""

    @property
    def error(self) -> FloatArray:
        return np.asarray(self.truncation + self.roundoff)

    def replaced(self, where: NDArray[np.intp], other: DerivativeEstimates) -> DerivativeEstimates:
        """A copy with the entries at positions `where` taken from `other` (of that length)."""
        fields: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            column = np.array(getattr(self, name), copy=True)
            column[where] = getattr(other, name)
            fields[name] = column
        return DerivativeEstimates(**fields)

    def subset(self, where: NDArray[np.intp] | NDArray[np.bool_]) -> DerivativeEstimates:
        return DerivativeEstimates(
            **{name: getattr(self, name)[where] for name in self.__dataclass_fields__}
        )


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


def combine_differences(
    scheme: Scheme, diffs: Array, idx: list[int], step: FloatArray
) -> FloatArray:
    total = sum(w * diffs[:, k] for w, k in zip(scheme.weights, idx, strict=True))
    total = np.asarray(total)
    if scheme.imaginary:
        return np.asarray(total.imag / step, dtype=np.float64)
    return np.asarray(total.real / step, dtype=np.float64)


def _roundoff(
    scheme: Scheme,
    eps: float,
    numerical: FloatArray,
    steps: FloatArray,
    values: FloatArray,
    terms: FloatArray,
    magnitudes: FloatArray,
    noise: float,
) -> FloatArray:
    """The round-off budget of a difference quotient (see the module docstring); `noise` is an
    absolute uncertainty of each f value allowed by --nondet-tol."""
    # Summing the derivative's terms (here, and in the analytic gradient) rounds in proportion
    # to their size, which exceeds |D| wherever they cancel.
    summed = terms + np.abs(numerical)
    if scheme.imaginary:
        # No subtraction of nearby values: that summation is the only round-off.
        return np.asarray(4 * eps * summed)
    weight_sum = float(sum(abs(w) for w in scheme.weights))
    # The terms' own rounding, plus the rounding of the shift itself: x + h rounds by at most
    # an ulp of the larger of the two (a step of 1e-15 on x = 2e-10 is exact to 1e-26).
    return np.asarray(
        4
        * eps
        * (values * weight_sum / steps + np.maximum(magnitudes, steps) / steps * np.abs(numerical))
        + 4 * eps * summed
        + noise * weight_sum / steps
    )


def estimate_derivatives(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat_indices: NDArray[np.intp],
    steps: FloatArray,
    scheme: Scheme,
    *,
    f0: float,
    structured: bool = True,
    progress: ProgressCallback | None = None,
    eps: float | None = None,
    noise: float = 0.0,
    known: Mapping[complex, Array] | None = None,
    allow_dense: bool = True,
) -> DerivativeEstimates:
    """Estimate df/d(wrt)[entry] for each flat index, with truncation and round-off budgets.

    `eps` is the precision f is computed in (default: the input's dtype); `known` holds
    differences f(x + o h e) - f(x) already evaluated at some offsets o (`one_step_estimates`),
    which are not evaluated again. `allow_dense=False` keeps a built-in model on the structured
    path, which also gives one-sided slopes.
    """
    target = inputs[wrt]
    if eps is None:
        eps = machine_epsilon(target.dtype)
    builtin = structured and isinstance(model, ElementwiseModel) and wrt in ("X", "W")
    covered = (
        dense_coverage(model, inputs, wrt, flat_indices, steps, scheme)  # type: ignore[arg-type]
        if builtin and allow_dense
        else None
    )
    if covered is not None:
        assert isinstance(model, ElementwiseModel)
        dense = dense_estimates(model, inputs, wrt, steps, scheme, progress)  # type: ignore[arg-type]
        estimates = _with_dense_columns(dense, steps)
        beyond = np.flatnonzero(~covered)
        if not beyond.size:
            return estimates
        # Entries whose shifts are beyond the brackets' reach: the structured path's.
        structured_part = estimate_derivatives(
            model,
            inputs,
            wrt,
            flat_indices[beyond],
            steps[beyond],
            scheme,
            f0=f0,
            eps=eps,
            noise=noise,
            allow_dense=False,
        )
        return estimates.replaced(beyond, structured_part)
    offsets, at_h, (at_half, at_2h) = _stencil(scheme, (0.5, 2.0))
    offset_array = np.asarray(offsets, dtype=np.complex128 if scheme.imaginary else np.float64)
    shifts = steps[:, None] * offset_array[None, :]
    # Shifts in the working precision, so a float32 check is float32 throughout.
    working = np.result_type(target.dtype, np.complex64) if scheme.imaginary else target.dtype
    shifts = shifts.astype(working)
    if builtin:
        assert isinstance(model, ElementwiseModel)
        diffs, values, terms = structured_differences(
            model,
            inputs,
            wrt,  # type: ignore[arg-type]  # X or W: builtin says so
            flat_indices,
            shifts,
            progress,
        )
    else:
        given = {k: known[o] for k, o in enumerate(offsets) if known and o in known}
        diffs, values, terms = black_box_differences(
            model, inputs, wrt, flat_indices, shifts, f0, progress, known=given
        )

    at_h_value = combine_differences(scheme, diffs, at_h, steps)
    at_half_value = combine_differences(scheme, diffs, at_half, steps / 2)
    at_2h_value = combine_differences(scheme, diffs, at_2h, 2 * steps)
    # Richardson from both sides: from h/2 (the better estimate, which still moves towards the
    # truth where h is beyond the asymptotic range) and from 2h (which leaves that range first,
    # so it flags a step barely inside). Either alone can miss, by chance, where D(h) lies.
    from_half = np.abs(at_half_value - at_h_value) / (1.0 - 2.0**-scheme.order)
    from_double = np.abs(at_2h_value - at_h_value) / (2.0**scheme.order - 1.0)
    truncation = np.maximum(from_half, from_double)
    magnitudes = np.abs(target.ravel()[flat_indices])
    roundoff = _roundoff(scheme, eps, at_h_value, steps, values, terms, magnitudes, noise)

    nothing = np.full(at_h_value.shape, np.nan)
    if scheme.imaginary:
        gap = np.zeros_like(at_h_value)
        growth = np.zeros_like(at_h_value)
        forward_slope = backward_slope = slope_error = nothing
    else:
        # One-sided slopes at h/2 and h: for smooth f their gap grows like h; across a kink it
        # stays of the size of the jump in slope.
        p1, m1, p2, m2 = (offsets.index(o) for o in (1, -1, 0.5, -0.5))
        forward_slope = diffs[:, p1].real / steps
        backward_slope = -diffs[:, m1].real / steps
        gap_h = forward_slope - backward_slope
        gap_half = (diffs[:, p2].real + diffs[:, m2].real) / (steps / 2)
        gap = np.abs(gap_h)
        growth = np.abs(gap_h - 2 * gap_half)
        # First-order Richardson for each slope (its error ~ h), plus the round-off of one
        # subtraction of f values.
        forward_half = diffs[:, p2].real / (steps / 2)
        backward_half = -diffs[:, m2].real / (steps / 2)
        slope_truncation = 2 * np.maximum(
            np.abs(forward_half - forward_slope), np.abs(backward_half - backward_slope)
        )
        slope_error = slope_truncation + 4 * eps * values / steps + 2 * noise / steps
    reach = steps * max(abs(o) for o in offsets)
    return DerivativeEstimates(
        at_h_value,
        steps,
        truncation,
        roundoff,
        gap,
        growth,
        reach,
        balance=roundoff,
        forward_slope=np.asarray(forward_slope, dtype=np.float64),
        backward_slope=np.asarray(backward_slope, dtype=np.float64),
        slope_error=np.asarray(slope_error, dtype=np.float64),
        settled=np.zeros(at_h_value.shape, dtype=bool),
        shrunk=np.zeros(at_h_value.shape, dtype=bool),
        terms=np.asarray(terms, dtype=np.float64),
    )


def one_step_estimates(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat_indices: NDArray[np.intp],
    scheme: Scheme,
    *,
    f0: float,
    eps: float | None = None,
    noise: float = 0.0,
    variation: float = 1.0,
    progress: ProgressCallback | None = None,
) -> tuple[DerivativeEstimates, dict[complex, Array]]:
    """The scheme at the default step alone (two forward calls per entry for central), for a
    black-box model: the numerical derivative and its round-off, no truncation estimate.

    Where it already agrees with the gradient within round-off the verdict is clear without a
    second step: a wrong gradient would need a truncation error that mimics its error to
    within round-off. The caller estimates the other entries in full (`estimate_at_default_steps`
    with `known` set to the differences returned here, so no evaluation is repeated). A model
    that batches (models.batching) is evaluated here in batches, and no differences are
    returned: every entry not settled is then evaluated again one forward call at a time, so
    that a verdict other than a settled pass never rests on a batch's rounding.
    """
    target = inputs[wrt]
    if eps is None:
        eps = machine_epsilon(target.dtype)
    steps = default_steps(
        scheme,
        target.ravel()[flat_indices],
        eps,
        magnitude=step_scale(model, f0),
        noise=noise,
        variation=variation,
    )
    offsets = list(scheme.offsets)
    shifts = (steps[:, None] * np.asarray(offsets, dtype=np.float64)[None, :]).astype(target.dtype)
    # The first pass over every entry: in batches where the model offers them, since every
    # entry this pass does not settle is estimated again, one forward call at a time (its
    # batched differences are not handed on as `known`).
    batched = batching(model) is not None
    diffs, values, terms = black_box_differences(
        model, inputs, wrt, flat_indices, shifts, f0, progress, batched=batched
    )
    numerical = combine_differences(scheme, diffs, list(range(len(offsets))), steps)
    magnitudes = np.abs(target.ravel()[flat_indices])
    roundoff = _roundoff(scheme, eps, numerical, steps, values, terms, magnitudes, noise)
    zeros = np.zeros(numerical.shape)
    nothing = np.full(numerical.shape, np.nan)
    estimates = DerivativeEstimates(
        numerical,
        steps,
        truncation=zeros,
        roundoff=roundoff,
        one_sided_gap=zeros,
        gap_growth=zeros,
        reach=steps * max(abs(o) for o in offsets),
        balance=roundoff,
        forward_slope=nothing,
        backward_slope=nothing,
        slope_error=nothing,
        settled=np.ones(numerical.shape, dtype=bool),
        shrunk=np.zeros(numerical.shape, dtype=bool),
        terms=zeros,
    )
    if batched:
        return estimates, {}
    return estimates, {o: diffs[:, k] for k, o in enumerate(offsets)}


def _with_dense_columns(dense: DenseEstimates, steps: FloatArray) -> DerivativeEstimates:
    """The dense path's estimates, with the columns it has no values for: no one-sided slopes,
    no kink evidence. Read-only views of one number, not arrays as large as the input
    (replaced() copies a column before writing into it)."""
    zeros = np.broadcast_to(0.0, steps.shape)
    nothing = np.broadcast_to(np.nan, steps.shape)
    false = np.broadcast_to(False, steps.shape)
    return DerivativeEstimates(
        numerical=dense.numerical,
        steps=steps,
        truncation=dense.truncation,
        roundoff=dense.roundoff,
        one_sided_gap=zeros,
        gap_growth=zeros,
        reach=dense.reach,
        balance=dense.balance,
        forward_slope=nothing,
        backward_slope=nothing,
        slope_error=nothing,
        settled=false,
        shrunk=false,
        terms=dense.terms,
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


def _kept_off_the_bend(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat_indices: NDArray[np.intp],
    scheme: Scheme,
    estimates: DerivativeEstimates,
    resolution: FloatArray,
    eps: float | None,
    settings: Mapping[str, Any],
) -> tuple[DerivativeEstimates, FloatArray]:
    """A built-in model's estimates again, at a step that keeps every touched pre-activation on
    its side of the activation's bend, where the default step may have crossed it by more than
    its own error estimate allows (`ElementwiseModel.step_limits`); and the limits kept, which
    no later lengthening may pass. The new estimate replaces the old where its error estimate
    is smaller, and where the two disagree beyond both estimates even when it is larger: the
    old one could not see what the crossing did (tanh(9.4 +- 1.7e5) is +-1 at every step the
    truncation estimate tries). Where the shorter step only loses digits to the round-off of
    the large terms it keeps, and agrees within that, the old estimate stays, its truncation
    error grown by what the crossing may have cost (the activation's bend times the weight).
    """
    assert isinstance(model, ElementwiseModel)  # a built-in model's
    target = inputs[wrt]
    rows, cols = np.unravel_index(flat_indices, target.shape)
    z_step = (eps or machine_epsilon(target.dtype)) ** (scheme.step_power or 1.0)
    side: Wrt = "X" if wrt == "X" else "W"
    limited, risk = model.step_limits(
        inputs["X"], inputs["W"], side, np.asarray(rows), np.asarray(cols), estimates.steps, z_step
    )
    with np.errstate(divide="ignore"):  # inf where any step will do
        limits = np.maximum(np.exp2(np.floor(np.log2(limited))), resolution)
    redo = np.flatnonzero((risk > estimates.error) & (limits < estimates.steps))
    kept = np.full(limits.shape, np.inf)
    if redo.size:
        again = estimate_derivatives(
            model, inputs, wrt, flat_indices[redo], limits[redo], scheme, **settings
        )
        before = estimates.subset(redo)
        with np.errstate(invalid="ignore"):
            fooled = np.abs(again.numerical - before.numerical) > again.error + before.error
        better = fooled | (again.error < before.error)
        estimates = estimates.replaced(redo[better], again.subset(better))
        kept[redo[better]] = limits[redo[better]]
        # Where the shorter step is no better, the crossing stays in the estimate: what it may
        # have cost is part of the old one's truncation error.
        crossed = redo[~better]
        truncation = np.array(estimates.truncation, copy=True)
        truncation[crossed] += risk[crossed]
        estimates = dataclasses.replace(estimates, truncation=truncation)
    return estimates, kept


def estimate_at_default_steps(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat_indices: NDArray[np.intp],
    scheme: Scheme,
    *,
    f0: float,
    structured: bool = True,
    progress: ProgressCallback | None = None,
    eps: float | None = None,
    noise: float = 0.0,
    variation: float = 1.0,
    known: Mapping[complex, Array] | None = None,
    wanted: FloatArray | None = None,
) -> DerivativeEstimates:
    """Estimates at the textbook step, shrunk per entry where truncation dominates, and
    lengthened where round-off alone leaves the error above `wanted` (per entry: the error the
    caller needs for a verdict).

    The textbook step suits f varying on the scale of |x|; when it varies faster (a large entry
    times a large weight) its truncation error dwarfs the round-off. Such entries are estimated
    again at the step that balances the two. The new estimate replaces the old even when its
    error estimate is larger: far outside the asymptotic range the old one was too optimistic.
    A step is never shrunk below what the function's precision resolves (`eps`). `variation`
    is the size of the gradient (see schemes.default_steps).
    """
    target = inputs[wrt]
    values = target.ravel()[flat_indices]
    builtin = structured and isinstance(model, ElementwiseModel) and wrt in ("X", "W")
    # The built-in paths sum only the terms an entry touches: no round-off of |f| to balance.
    steps = default_steps(
        scheme,
        values,
        eps,
        magnitude=1.0 if builtin else step_scale(model, f0),
        noise=noise,
        variation=1.0 if builtin else variation,
    )
    # x + h must move x in the precision f is computed in, by a few of its units at least.
    resolution = 4 * (eps or machine_epsilon(target.dtype)) * np.maximum(1.0, np.abs(values))
    settings: dict[str, Any] = {"f0": f0, "structured": structured, "eps": eps, "noise": noise}
    estimates = estimate_derivatives(
        model, inputs, wrt, flat_indices, steps, scheme, progress=progress, known=known, **settings
    )
    if scheme.imaginary:
        return estimates  # the complex step has no round-off to balance
    for _ in range(REFINE_ROUNDS):
        ratio = best_step_ratio(scheme, estimates)
        shorter = estimates.steps * np.maximum(ratio, REFINE_LIMIT)
        redo = np.flatnonzero(
            np.isfinite(estimates.numerical) & (ratio < REFINE_BELOW) & (shorter >= resolution)
        )
        if not redo.size:
            break
        again = estimate_derivatives(
            model, inputs, wrt, flat_indices[redo], shorter[redo], scheme, **settings
        )
        again = dataclasses.replace(again, shrunk=np.ones(redo.shape, dtype=bool))
        estimates = estimates.replaced(redo, again)
    limits = np.full(values.shape, np.inf)
    if builtin:  # after shrinking: a step shrunk for truncation it saw may still cross a bend
        estimates, limits = _kept_off_the_bend(
            model, inputs, wrt, flat_indices, scheme, estimates, resolution, eps, settings
        )
    if wanted is None:
        return estimates
    # Never lengthened past the bend a step was kept short of.
    ceiling = np.minimum(GROW_CEILING * np.maximum(1.0, np.abs(values.astype(np.float64))), limits)
    for _ in range(GROW_ROUNDS):
        floor = 3 * estimates.balance / (1.0 - 2.0**-scheme.order)
        longer = estimates.steps * GROW_FACTOR
        grow = np.flatnonzero(
            np.isfinite(estimates.numerical)
            & (estimates.error > wanted)
            & (estimates.truncation <= floor)
            & (longer <= ceiling)
        )
        if not grow.size:
            break
        again = estimate_derivatives(
            model, inputs, wrt, flat_indices[grow], longer[grow], scheme, **settings
        )
        better = again.error < estimates.error[grow]
        estimates = estimates.replaced(grow[better], again.subset(better))
        if not better.any():
            break
    return estimates
