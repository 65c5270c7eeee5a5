"""Directional derivatives: how each element of a function g of named inputs changes along a
tangent v that moves many entries at once, with the error budget and one-sided slopes of an
entry's estimate (estimates.DerivativeEstimates), so that a check judges both alike.

One estimator, two checks:
- fast mode (checks/fast.py): g is f itself, along a random v over a block of entries, by
  five-point differences from f(x +- h v) and f(x +- 2h v), whose truncation is estimated
  against a second five-point difference that uses f(x +- 3h v); or by complex-step;
- tangent checks (checks/tangents.py): g is the gradient (hvp) or forward's outputs (jvp),
  along a random tangent, by central differences with Richardson from h/2 and 2h.

Shared: the moved inputs (x + s v in each input's own precision), the evaluations, the one-sided
slopes (at a kink the derivative lies between them), the estimates' type. Two step rules: fast
mode takes the step of its block's largest entry over v's largest component
(`largest_entry_step`), a tangent check the shortest over the moved entries of each one's own
step over its |v| (`shortest_entry_step`). The stencils (`STENCILS`) differ in more than their
offsets, and tests/test_directional.py pins each to the last bit: the order in which
differences are taken and summed; what sizes the round-off (five-point: the largest |g| seen, at
x included; central: the largest value of g's part at the moved points); and the kink evidence
(one-sided slopes at h and 2h, with their own truncation; or at h/2 and h).

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.numerics.estimates import DerivativeEstimates
from gradcheck_cli.numerics.models import Array, Inputs
from gradcheck_cli.numerics.schemes import SCHEMES, FloatArray, Scheme, default_steps

VectorFunction = Callable[[Inputs], Mapping[str, Array]]
"""g at the inputs, as named arrays (the gradient's components, forward's outputs, or f)."""

Values = dict[complex, Mapping[str, Array]]
"""g at x + o h v, by offset o."""

T = TypeVar("T")

CENTRAL = SCHEMES["central"]
FIVE_POINT = SCHEMES["five-point"]


def moved_inputs(inputs: Inputs, tangent: Mapping[str, Array], shift: complex) -> dict[str, Array]:
    """The inputs with each one the tangent names moved by shift * v, in the input's own
    precision (complex for a complex shift): a float32 check moves float32 entries."""
    moved = dict(inputs)
    for name, v in tangent.items():
        base = np.asarray(inputs[name])
        working = (
            np.result_type(base.dtype, np.complex64) if isinstance(shift, complex) else base.dtype
        )
        moved[name] = base.astype(working, copy=False) + (shift * v).astype(working, copy=False)
    return moved


def evaluate_along(
    function: Callable[[Inputs], T],
    inputs: Inputs,
    tangent: Mapping[str, Array],
    shifts: Sequence[complex],
) -> list[T]:
    """`function` at the inputs moved by each shift along the tangent, in order. A moved point
    may overflow the function: that shows in its values, not as a warning."""
    with np.errstate(all="ignore"):
        return [function(moved_inputs(inputs, tangent, shift)) for shift in shifts]


def largest_entry_step(
    scheme: Scheme,
    inputs: Inputs,
    tangent: Mapping[str, Array],
    entries: Mapping[str, NDArray[np.intp]],
    *,
    eps: float,
    magnitude: float,
    variation: float = 1.0,
) -> float:
    """fast mode's step along v over the block `entries`: the scheme's default step for the
    block's largest entry (balanced against f's size, `magnitude`, and the gradient's,
    `variation`), over v's largest component, so that no entry moves further than that step."""
    v_max = max(float(np.max(np.abs(v), initial=0.0)) for v in tangent.values())
    moved = [np.asarray(inputs[name]).reshape(-1)[flat] for name, flat in entries.items()]
    x_max = max(float(np.max(np.abs(m), initial=0.0)) for m in moved)
    step = float(
        default_steps(scheme, np.asarray([x_max]), eps, magnitude=magnitude, variation=variation)[0]
    )
    return step / max(v_max, 1e-300)


def shortest_entry_step(
    scheme: Scheme,
    inputs: Inputs,
    tangent: Mapping[str, Array],
    *,
    eps: float,
    magnitude: float,
) -> float:
    """A tangent check's step: every moved entry's own default step, balanced against g's size
    (`magnitude`), over its |v|, and the shortest of them, so that no entry moves further than
    its own step: an input of large entries must not stretch the step of another on whose small
    scale g varies."""
    step = np.inf
    for name, v in tangent.items():
        own = default_steps(
            scheme, np.abs(np.asarray(inputs[name], dtype=np.float64)).reshape(-1), eps, magnitude
        )
        with np.errstate(divide="ignore"):
            step = min(step, float(np.min(own / np.abs(np.asarray(v)).reshape(-1), initial=np.inf)))
    if not np.isfinite(step):  # a zero tangent: nothing moves, any step will do
        step = float(default_steps(scheme, np.zeros(1), eps, magnitude)[0])
    return step


def one_sided_slopes(
    ahead: FloatArray, behind: FloatArray, base: FloatArray, step: float
) -> tuple[FloatArray, FloatArray]:
    """(g(x + h v) - g(x)) / h and (g(x) - g(x - h v)) / h: at a kink along v the derivative
    lies between them."""
    return (ahead - base) / step, (base - behind) / step


def directional_estimates(
    function: VectorFunction,
    inputs: Inputs,
    tangent: Mapping[str, Array],
    names: Sequence[str],
    *,
    eps: float,
    noise: float = 0.0,
    base: Mapping[str, Array] | None = None,
    scheme: Scheme = CENTRAL,
    step: float | None = None,
) -> tuple[dict[str, DerivativeEstimates], float]:
    """The derivative of g along the tangent, per element of each named part of g, with its
    error estimate and one-sided slopes; and the step h used.

    `base` is g at the inputs, if known; `scheme` the stencil (central, five-point or
    complex-step: `STENCILS`); `step` the step along v (default: `shortest_entry_step`, balanced
    against g's size); `noise` how far two evaluations of g at the same point may differ.
    """
    if scheme.name not in STENCILS:
        raise ValueError(f"no directional stencil for {scheme.name}; one of {sorted(STENCILS)}")
    offsets, estimate = STENCILS[scheme.name]
    if base is None:
        base = function(inputs)
    if step is None:
        scale = max(
            (float(np.max(np.abs(np.asarray(base[n])), initial=0.0)) for n in names), default=0.0
        )
        step = shortest_entry_step(scheme, inputs, tangent, eps=eps, magnitude=scale)
    shifted = evaluate_along(function, inputs, tangent, [o * step for o in offsets])
    values: Values = dict(zip(offsets, shifted, strict=True))
    return {name: estimate(values, base[name], name, step, eps, noise) for name in names}, step


def _central(
    values: Values, base: Array, name: str, step: float, eps: float, noise: float
) -> DerivativeEstimates:
    """Central differences at h, truncation by Richardson from h/2 and 2h; round-off of the size
    of the part's largest value; kink evidence from the one-sided slopes at h/2 and h."""
    at = {o: np.asarray(values[o][name], dtype=np.float64).reshape(-1) for o in TANGENT_OFFSETS}
    g0 = np.asarray(base, dtype=np.float64).reshape(-1)
    sizes = np.max(np.abs(np.stack(list(at.values()))), axis=0)
    # The elements of a part are computed together, from the same intermediate values (a
    # backward's D @ W.T, a layer's activations): an element's round-off is eps times the
    # size of those, which its part's largest value stands for, not eps times its own size
    # (a saturated sigmoid's 1 - s loses every digit its small derivative has).
    finite = sizes[np.isfinite(sizes)]
    size = np.where(np.isfinite(sizes), np.max(finite, initial=0.0), sizes)
    with np.errstate(all="ignore"):
        d_h = (at[1.0] - at[-1.0]) / (2 * step)
        d_half = (at[0.5] - at[-0.5]) / step
        d_double = (at[2.0] - at[-2.0]) / (4 * step)
        truncation = np.maximum(
            np.abs(d_half - d_h) / (1 - 2.0**-2), np.abs(d_double - d_h) / (2.0**2 - 1)
        )
        roundoff = 4 * eps * size / step + 4 * eps * np.abs(d_h) + noise / step
        forward_slope, backward_slope = one_sided_slopes(at[1.0], at[-1.0], g0, step)
        gap_h = forward_slope - backward_slope
        gap_half = (at[0.5] + at[-0.5] - 2 * g0) / (step / 2)
    steps = np.full(d_h.shape, step)
    return DerivativeEstimates(
        numerical=d_h,
        steps=steps,
        truncation=truncation,
        roundoff=roundoff,
        one_sided_gap=np.abs(gap_h),
        gap_growth=np.abs(gap_h - 2 * gap_half),
        reach=steps * 2,
        balance=roundoff,
        forward_slope=forward_slope,
        backward_slope=backward_slope,
        slope_error=4 * eps * size / step + noise / step,
        settled=np.zeros(d_h.shape, dtype=bool),
        shrunk=np.zeros(d_h.shape, dtype=bool),
        terms=np.zeros(d_h.shape),
    )


def _five_point(
    values: Values, base: Array, name: str, step: float, eps: float, noise: float
) -> DerivativeEstimates:
    """Five-point differences from h and 2h, truncation against a second five-point from h and
    3h; round-off of the largest |g| seen, at x included; kink evidence from the one-sided slopes
    at h and 2h, with first-order Richardson for their error."""
    g0 = np.real(np.asarray(base)).astype(np.float64).reshape(-1)
    at = {
        o: np.real(np.asarray(values[o][name])).astype(np.float64).reshape(-1)
        for o in BLOCK_OFFSETS
    }
    with np.errstate(all="ignore"):
        rise = {o: at[o] - g0 for o in BLOCK_OFFSETS}
        central = {k: (rise[k] - rise[-k]) / (2 * k * step) for k in (1, 2, 3)}
        five = (4 * central[1] - central[2]) / 3
        other = (9 * central[1] - central[3]) / 8
        # C(kh) = f' + c k^2 h^2 + d k^4 h^4: five = f' - 4 d h^4 and other = f' - 9 d h^4.
        truncation = 0.8 * np.abs(five - other)
        # The largest |g| seen, as Python's max finds it: a NaN after the first value is passed
        # over (at x, g is finite: the checks make sure).
        magnitude = np.abs(g0)
        for value in at.values():
            magnitude = np.where(np.abs(value) > magnitude, np.abs(value), magnitude)
        weights = 1.5  # (1 + 8 + 8 + 1) / 12
        roundoff = (
            4 * eps * magnitude * weights / step + noise * weights / step + 4 * eps * np.abs(five)
        )
        # One-sided slopes at h and 2h: across a kink their gap stays put as the step doubles,
        # where for a smooth g it would double with it.
        forward_slope, backward_slope = one_sided_slopes(at[1], at[-1], g0, step)
        gap = forward_slope - backward_slope
        growth = np.abs((rise[2] + rise[-2]) / (2 * step) - 2 * gap)
        # First-order Richardson for the one-sided slopes, from h and 2h.
        forward_double, backward_double = one_sided_slopes(at[2], at[-2], g0, 2 * step)
        slope_error = (
            2
            * np.maximum(
                np.abs(forward_double - forward_slope), np.abs(backward_double - backward_slope)
            )
            + 4 * eps * magnitude / step
        )
    steps = np.full(five.shape, step)
    return DerivativeEstimates(
        numerical=five,
        steps=steps,
        truncation=truncation,
        roundoff=roundoff,
        one_sided_gap=np.abs(gap),
        gap_growth=growth,
        reach=steps * 3,
        balance=roundoff,
        forward_slope=forward_slope,
        backward_slope=backward_slope,
        slope_error=slope_error,
        settled=np.zeros(five.shape, dtype=bool),
        shrunk=np.zeros(five.shape, dtype=bool),
        terms=np.zeros(five.shape),
    )


def _complex_step(
    values: Values, base: Array, name: str, step: float, eps: float, noise: float
) -> DerivativeEstimates:
    """Im g(x + i h v) / h: no subtraction, so no truncation to speak of at its tiny step and no
    round-off but that of g's own last digits; no one-sided slopes."""
    numerical = np.imag(np.asarray(values[1j][name])).astype(np.float64).reshape(-1) / step
    nothing = np.full(numerical.shape, np.nan)
    zeros = np.zeros(numerical.shape)
    steps = np.full(numerical.shape, step)
    return DerivativeEstimates(
        numerical=numerical,
        steps=steps,
        truncation=zeros,
        roundoff=4 * eps * np.abs(numerical),
        one_sided_gap=zeros,
        gap_growth=zeros,
        reach=steps,
        balance=4 * eps * np.abs(numerical),
        forward_slope=nothing,
        backward_slope=nothing,
        slope_error=nothing,
        settled=np.zeros(numerical.shape, dtype=bool),
        shrunk=np.zeros(numerical.shape, dtype=bool),
        terms=zeros,
    )


TANGENT_OFFSETS: tuple[complex, ...] = (1.0, -1.0, 0.5, -0.5, 2.0, -2.0)
BLOCK_OFFSETS: tuple[complex, ...] = (1, -1, 2, -2, 3, -3)

Stencil = Callable[[Values, Array, str, float, float, float], DerivativeEstimates]

STENCILS: dict[str, tuple[tuple[complex, ...], Stencil]] = {
    # tangent checks
    "central": (TANGENT_OFFSETS, _central),
    # fast mode
    "five-point": (BLOCK_OFFSETS, _five_point),
    "complex-step": ((1j,), _complex_step),
}
"""The offsets (multiples of h along v) each stencil evaluates g at, and its estimates."""
