"""Difference schemes, their default steps, and how precisely f itself is known.

Every scheme is written as a weighted sum of differences f(x + o_k h e) - f(x); working with the
differences rather than the values lets the built-in models compute them from the touched row
or column alone (models.ElementwiseModel.entry_shift_differences) and lets any model skip f(x).

The textbook step eps^(1/(p+1)) * max(1, |x|) assumes f varies on the scale of |x|; f(X @ W) varies
on the scale of 1/|W| (or 1/|X|), so for large entries that step can be far too long.
`estimates.estimate_at_default_steps` starts from it and shrinks it, entry by entry, where the
estimate says truncation dominates round-off (the step-selection idea of Gill, Murray, Saunders &
Wright); the REFINE_ and GROW_ constants below bound how far and how often.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.floating]


@dataclass(frozen=True)
class Precision:
    """How precisely f itself is known, beyond the inputs' dtype."""

    eps: float | None = None
    """The precision f is computed in when coarser than the inputs' (a float32 forward on
    float64 inputs); None: the inputs' dtype."""
    noise: float = 0.0
    """How far two evaluations of f at the same point may differ (--nondet-tol)."""
    rounding: float = 0.0
    """f's own rounding noise where it was measured (numerics.noise): larger than eps |f| where
    f sums terms that cancel. 0: not measured."""

    @property
    def uncertainty(self) -> float:
        """The absolute error of one value of f beyond eps |f|: the larger of the allowed
        non-determinism and the measured rounding noise."""
        return max(self.noise, self.rounding)


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


def machine_epsilon(dtype: np.dtype[Any]) -> float:
    return float(np.finfo(dtype).eps)


def default_steps(
    scheme: Scheme,
    values: FloatArray,
    eps: float | None = None,
    magnitude: float = 1.0,
    noise: float = 0.0,
    variation: float = 1.0,
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
    (--nondet-tol): an absolute error of f, balanced the same way. `variation` is how much f
    changes per unit of x (the gradient's size): the truncation the round-off is balanced
    against grows with it, so an f of 1e200 that varies like 1e200 gets the textbook step,
    not one of 1e61.
    """
    if scheme.step_power is None:
        step = COMPLEX_STEPS.get(np.dtype(values.dtype).name, COMPLEX_STEP)
        return np.full(values.shape, step, dtype=np.float64)
    if eps is None:
        eps = machine_epsilon(values.dtype)
    rounding = eps * max(1.0, float(magnitude)) if np.isfinite(magnitude) else eps
    scale = max(1.0, float(variation)) if np.isfinite(variation) else 1.0
    floor = max(rounding, noise) / scale
    textbook = floor**scheme.step_power * np.maximum(1.0, np.abs(values).astype(np.float64))
    # Rounded down: never longer than the textbook step (truncation grows like h^p).
    return np.asarray(np.exp2(np.floor(np.log2(textbook))), dtype=np.float64)
