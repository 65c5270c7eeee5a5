"""How noisy f's own values are: its rounding measured, not assumed.

A black box's round-off is usually taken to be eps |f|. Where f sums terms that cancel (a sum of
tanh over symmetric points is ~1e-14 while each term is ~1), the rounding of every value of f
is eps times the size of the terms, far above eps |f|, and a correct gradient would be judged
wrong. The terms are hidden inside the black box; their rounding is not: evaluated at a few
points along a direction, a step apart so small that f's smooth change vanishes from the
high-order differences, f leaves only its noise there (Moré and Wild, "Estimating
computational noise", SIAM J. Sci. Comput. 33(3), 2011). The estimate costs POINTS - 1 calls
of f, once per check.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from gradcheck_cli.numerics.models import Array, Inputs

POINTS = 7
"""f at x and 6 further points: differences up to order 6."""

ORDERS = range(3, 5)
"""The difference orders tried: from the third on, f's smooth change is far below its noise
at the steps used; each estimate must agree with those of the next two orders."""

AGREEMENT = 4.0
"""Estimates of consecutive orders within this factor of each other: noise, not smoothness."""

SIGN_CHANGES = 2
"""Noise flips the sign of high-order differences; a smooth remainder does not."""

STEP_POWER = 3 / 8
"""The step, relative to max(1, |x|): about eps^(3/8), 1e-6 in float64 and 3e-3 in float32, far
above the inputs' own spacing and far below where f's smooth change would reach the third
difference; rounded down to a power of two."""


def rounding_noise(
    value: Callable[[Inputs], float | complex],
    inputs: Inputs,
    names: Sequence[str],
    *,
    f0: float,
    seed: int = 0,
) -> float | None:
    """The standard deviation of f's rounding noise near `inputs`, from POINTS values of f
    along a seeded random direction over the inputs `names`; 0 when f does not move at all,
    None when the differences do not look like noise (too few points, a kink on the way)."""
    rng = np.random.default_rng(seed)
    moved = [name for name in names if np.size(inputs[name])]
    if not moved:
        return None
    direction: dict[str, Array] = {}
    for name in moved:
        base = np.asarray(inputs[name])
        eps = float(np.finfo(base.dtype).eps)
        relative = eps**STEP_POWER * np.maximum(1.0, np.abs(base.astype(np.float64)))
        # Powers of two: x + k h is then exact, and f's values differ by f's own noise alone.
        step = np.exp2(np.floor(np.log2(relative)))
        direction[name] = (rng.choice((-1.0, 1.0), size=base.shape) * step).astype(base.dtype)
    values = [f0]
    with np.errstate(all="ignore"):
        for k in range(1, POINTS):
            shifted = dict(inputs)
            for name, step in direction.items():
                base = np.asarray(inputs[name])
                shifted[name] = base + base.dtype.type(k) * step
            values.append(float(np.real(value(shifted))))
    return _noise_of(np.asarray(values, dtype=np.float64))


def _noise_of(values: Array) -> float | None:
    """Moré and Wild's estimate from equally spaced values: for each order k, the scaled root
    mean square of the k-th differences, gamma_k = (k!)^2 / (2k)!; the first order whose
    estimate agrees with the next two and whose differences change sign is the noise."""
    if not np.all(np.isfinite(values)):
        return None
    if np.all(values == values[0]):
        return 0.0
    # In units of the largest value: differences of values near 1e200 would overflow squared.
    unit = float(np.max(np.abs(values)))
    estimates: dict[int, float] = {}
    differences: dict[int, Array] = {}
    table = values / unit
    for order in range(1, len(values)):
        table = np.diff(table)
        gamma = math.factorial(order) ** 2 / math.factorial(2 * order)
        estimates[order] = math.sqrt(gamma * float(np.mean(table**2)))
        differences[order] = table
    for order in ORDERS:
        if order + 2 not in estimates:
            break
        group = [estimates[order + j] for j in range(3)]
        if min(group) <= 0:
            continue
        signs = np.sign(differences[order])
        changes = int(np.count_nonzero(signs[1:] * signs[:-1] < 0))
        if max(group) <= AGREEMENT * min(group) and changes >= SIGN_CHANGES:
            return estimates[order] * unit
    return None
