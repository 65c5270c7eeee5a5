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

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.numerics import kernels
from gradcheck_cli.numerics.models import Array, ElementwiseModel, Inputs, Model, Wrt

FloatArray = NDArray[np.floating]
ProgressCallback = Callable[[float], None]
"""Called with the number of entries just finished."""


@dataclass(frozen=True)
class Precision:
    """How precisely f itself is known, beyond the inputs' dtype."""

    eps: float | None = None
    """The precision f is computed in when coarser than the inputs' (a float32 forward on
    float64 inputs); None: the inputs' dtype."""
    noise: float = 0.0
    """How far two evaluations of f at the same point may differ (--nondet-tol)."""


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
GROW_ROUNDS = 2
GROW_FACTOR = 4.0
"""Where round-off alone spoils an estimate (a float32 forward, a large |f|) and no truncation
shows, the step is lengthened by this factor, at most this many times: round-off falls like
1/h, and any truncation the longer step brings shows in its own Richardson estimate."""
GROW_CEILING = 0.125
"""A lengthened step stays at most this times max(1, |x|)."""

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


def default_steps(
    scheme: Scheme,
    values: FloatArray,
    eps: float | None = None,
    magnitude: float = 1.0,
    noise: float = 0.0,
) -> FloatArray:
    """The textbook step per entry, eps^(1/(p+1)) * max(1, |x|), rounded down to a power of two.

    A power of two makes x +- h exact wherever h >= ulp(x), so the step taken is the step
    meant; and it leaves few distinct steps, which the dense kernels (kernels.py) batch.
    `eps` is the precision the function is computed in, when it is coarser than the values'
    dtype (a forward that computes in float32 on float64 inputs). `magnitude` is |f| where
    whole values of f are subtracted (a black box): their round-off is eps |f|, not eps, so
    the step that balances it against truncation is (eps |f|)^(1/(p+1)) for an f that varies
    on the scale of |x|; a longer step than that shows up in the truncation estimate and is
    shrunk again. `noise` is how far f may move between two calls at the same point
    (--nondet-tol): an absolute error of f, balanced the same way.
    """
    if scheme.step_power is None:
        step = COMPLEX_STEPS.get(np.dtype(values.dtype).name, COMPLEX_STEP)
        return np.full(values.shape, step, dtype=np.float64)
    if eps is None:
        eps = machine_epsilon(values.dtype)
    rounding = eps * max(1.0, float(magnitude)) if np.isfinite(magnitude) else eps
    floor = max(rounding, noise)
    textbook = floor**scheme.step_power * np.maximum(1.0, np.abs(values).astype(np.float64))
    # Rounded down: never longer than the textbook step (truncation grows like h^p).
    return np.asarray(np.exp2(np.floor(np.log2(textbook))), dtype=np.float64)


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
    # The terms' own rounding, plus the rounding of the shift itself (x + h is not exact).
    return np.asarray(
        4
        * eps
        * (values * weight_sum / steps + np.maximum(1.0, magnitudes) / steps * np.abs(numerical))
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
    if (
        builtin
        and allow_dense
        and _dense_applies(model, inputs, target, flat_indices, steps, scheme)
    ):
        assert isinstance(model, ElementwiseModel)
        return _dense_estimates(model, inputs, wrt, steps, scheme, progress)  # type: ignore[arg-type]
    offsets, at_h, (at_half, at_2h) = _stencil(scheme, (0.5, 2.0))
    offset_array = np.asarray(offsets, dtype=np.complex128 if scheme.imaginary else np.float64)
    shifts = steps[:, None] * offset_array[None, :]
    # Shifts in the working precision, so a float32 check is float32 throughout.
    working = np.result_type(target.dtype, np.complex64) if scheme.imaginary else target.dtype
    shifts = shifts.astype(working)
    if builtin:
        assert isinstance(model, ElementwiseModel)
        diffs, values, terms = _structured_differences(
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
    progress: ProgressCallback | None = None,
) -> tuple[DerivativeEstimates, dict[complex, Array]]:
    """The scheme at the default step alone (two forward calls per entry for central), for a
    black-box model: the numerical derivative and its round-off, no truncation estimate.

    Where it already agrees with the gradient within round-off the verdict is clear without a
    second step: a wrong gradient would need a truncation error that mimics its error to
    within round-off. The caller estimates the other entries in full (`estimate_at_default_steps`
    with `known` set to the differences returned here, so no evaluation is repeated).
    """
    target = inputs[wrt]
    if eps is None:
        eps = machine_epsilon(target.dtype)
    steps = default_steps(scheme, target.ravel()[flat_indices], eps, magnitude=abs(f0), noise=noise)
    offsets = list(scheme.offsets)
    shifts = (steps[:, None] * np.asarray(offsets, dtype=np.float64)[None, :]).astype(target.dtype)
    diffs, values, terms = black_box_differences(
        model, inputs, wrt, flat_indices, shifts, f0, progress
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
    return estimates, {o: diffs[:, k] for k, o in enumerate(offsets)}


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
    inputs: Inputs,
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
    return kernels.supports(model, inputs["X"], inputs["W"], reach)


def _dense_estimates(
    model: ElementwiseModel,
    inputs: Inputs,
    wrt: Wrt,
    steps: FloatArray,
    scheme: Scheme,
    progress: ProgressCallback | None,
) -> DerivativeEstimates:
    """All entries at once from kernels.central_brackets. Truncation: for central differences of
    the smooth activations, the Taylor bound (one difference per entry, at h); otherwise
    Richardson, as on the structured path. Round-off: that of summing the brackets, since the
    closed form subtracts nothing."""
    X, W = inputs["X"], inputs["W"]
    target = inputs[wrt]
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
    # Columns the dense path has no values for: read-only views of one number, not arrays as
    # large as the input (replaced() copies a column before writing into it).
    zeros = np.broadcast_to(0.0, (target.size,))
    nothing = np.broadcast_to(np.nan, (target.size,))
    false = np.broadcast_to(False, (target.size,))
    return DerivativeEstimates(
        numerical=at[1.0].ravel(),
        steps=steps,
        truncation=truncation.ravel(),
        roundoff=roundoff.ravel(),
        one_sided_gap=zeros,
        gap_growth=zeros,
        reach=steps * max(2.0, max(ratios)),
        balance=subtraction.ravel(),
        forward_slope=nothing,
        backward_slope=nothing,
        slope_error=nothing,
        settled=false,
        shrunk=false,
        terms=np.asarray(terms, dtype=np.float64).ravel(),
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
    A step is never shrunk below what the function's precision resolves (`eps`).
    """
    target = inputs[wrt]
    values = target.ravel()[flat_indices]
    builtin = structured and isinstance(model, ElementwiseModel) and wrt in ("X", "W")
    # The built-in paths sum only the terms an entry touches: no round-off of |f| to balance.
    steps = default_steps(scheme, values, eps, magnitude=1.0 if builtin else abs(f0), noise=noise)
    settings: dict[str, Any] = {"f0": f0, "structured": structured, "eps": eps, "noise": noise}
    estimates = estimate_derivatives(
        model, inputs, wrt, flat_indices, steps, scheme, progress=progress, known=known, **settings
    )
    if scheme.imaginary:
        return estimates  # the complex step has no round-off to balance
    # x + h must move x in the precision f is computed in, by a few of its units at least.
    resolution = 4 * (eps or machine_epsilon(target.dtype)) * np.maximum(1.0, np.abs(values))
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
    if wanted is None:
        return estimates
    ceiling = GROW_CEILING * np.maximum(1.0, np.abs(values.astype(np.float64)))
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


def _structured_differences(
    model: ElementwiseModel,
    inputs: Inputs,
    wrt: Wrt,
    flat_indices: NDArray[np.intp],
    shifts: Array,
    progress: ProgressCallback | None,
) -> tuple[Array, FloatArray, FloatArray]:
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


def black_box_differences(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat_indices: NDArray[np.intp],
    shifts: Array,
    f0: float,
    progress: ProgressCallback | None,
    *,
    known: Mapping[int, Array] | None = None,
) -> tuple[Array, FloatArray, FloatArray]:
    """Whole forward passes, one per entry and shift: the only path for user models.

    The entry is moved in place in the input itself (the check's own copy), or in one working
    copy when the input cannot be written or the shifts are complex, and put back exactly after
    each entry: a call costs the user's forward and nothing that grows with the inputs. Columns
    of `shifts` whose differences are `known` are not evaluated again. When worker processes
    run (workers.py), they evaluate the entries instead.

    Returns the differences, |f| at its largest, and zeros for the size of the derivative's
    terms: a black box does not show its terms.
    """
    known = known or {}
    diffs = np.empty(shifts.shape, dtype=np.result_type(np.asarray(f0), shifts))
    for k, column in known.items():
        diffs[:, k] = column
    todo = [k for k in range(shifts.shape[1]) if k not in known]
    magnitudes = np.full(flat_indices.shape, abs(f0), dtype=np.float64)
    if not todo or not flat_indices.size:
        return diffs, magnitudes, np.zeros(flat_indices.shape, dtype=np.float64)
    from gradcheck_cli.numerics.workers import active_pool

    pool = active_pool(model, inputs)
    if pool is not None:
        values, sizes = pool.differences(
            model, wrt, flat_indices, np.ascontiguousarray(shifts[:, todo]), f0, progress
        )
        diffs[:, todo] = values
        return diffs, np.maximum(magnitudes, sizes), np.zeros(flat_indices.shape, dtype=np.float64)

    original = np.asarray(inputs[wrt])
    working = np.result_type(original, shifts)
    in_place = (
        original.flags.writeable and original.flags.c_contiguous and working == original.dtype
    )
    # In place when we may; else one C-ordered copy, so that its flat view writes through.
    work = original if in_place else np.array(original, dtype=working, order="C", copy=True)
    flat_work = work.reshape(-1)
    moved = dict(inputs)
    moved[wrt] = work
    # The hot loop, a few microseconds around each forward call: in float64, plain Python
    # floats (the same IEEE arithmetic as numpy's float64 scalars, without their overhead);
    # other dtypes keep numpy scalars, so that x + h rounds in the input's own precision.
    plain = work.dtype == np.float64
    shift_rows: Any = shifts[:, todo].tolist() if plain else shifts[:, todo]
    values = np.empty((flat_indices.size, len(todo)), dtype=diffs.dtype)
    largest = [abs(float(f0))] * int(flat_indices.size)
    with np.errstate(all="ignore"):  # a user's forward may overflow at a shifted point
        for b, index in enumerate(flat_indices.tolist()):
            start = float(flat_work[index]) if plain else flat_work[index]
            row = shift_rows[b]
            try:
                for k in range(len(todo)):
                    flat_work[index] = start + row[k]
                    value = model.value(moved)
                    values[b, k] = value
                    size = abs(value.real)
                    if size > largest[b]:
                        largest[b] = size
            finally:
                flat_work[index] = start  # exactly as it was, whatever happened
            if progress is not None:
                progress(1)
    diffs[:, todo] = values - f0
    return diffs, np.asarray(largest, dtype=np.float64), np.zeros(flat_indices.shape)
