"""One input's numbers as every pattern reads them, and how a pattern is judged against them.

The numerical gradient is noisy: it differs from the true derivative by up to about its
tolerance. A pattern predicts the analytic gradient from the numerical one (`predicted`), and it
*fits* when

1. every checked entry's residual |analytic - predicted| is within `FIT_SLACK` times the noise
   that pattern lets through there (the entry's tolerance, scaled by |factor| for a factor >= 1,
   because analytic - c * numerical = c * (true - numerical));
2. it explains the disagreement rather than restating it: its relative residual (`fit`, below)
   is at most `MAX_FIT`, so "analytic = 1.0000001 x numerical" never passes for a pattern;
3. a fitted parameter is pinned down by the numbers: a factor needs two entries whose numerical
   value stands `INFORMATIVE` tolerances clear of zero (numerical ~ 0 cannot tell a scale), a
   fitted offset or multiple of the input needs two failing entries; unless the factor is a
   simple fraction (-1, 0, 5, 1/2, ...) that fits by itself, which a lone entry can show.

`fit` is the share of the disagreement a pattern leaves unexplained:
||analytic - predicted||_2 / ||analytic - numerical||_2 over the checked entries (0 = every
disagreement explained exactly, 1 = nothing explained). A genuine bug fits to the noise (fit of
order tolerance / error, ~1e-6 or less in float64); a random error misses by orders of magnitude,
so the thresholds below are not delicate.

Criteria 1 and 2 are `pattern_fit`; criterion 3 is each pattern's own (it knows its parameter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

FIT_SLACK = 2.0
"""A residual may reach twice the entry's noise allowance: the tolerance already bounds the noise
(by default 10 x the error estimate), and a fitted parameter adds a little of its own error."""

MAX_FIT = 0.5
"""A pattern must explain at least half the disagreement (in 2-norm); a correct gradient with a
borderline failure gives fit ~ 1 under any pattern and stays unexplained."""

INFORMATIVE = 10.0
"""|numerical| > 10 x tolerance pins a factor to about 10% from one entry; nearer zero an entry
says nothing about a scale (c * 0 = 0 for every c)."""

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

Scope = Literal["all", "selected", "one-by-one"]
"""Which entries of an input were checked, and so what a diagnosis may say of the rest: all of
them; a selection (`--entries`: the rest were not checked); or, in fast mode, only the entries
the bisection checked one by one (near the failures: nothing may be said of the rest)."""


@dataclass(frozen=True, eq=False)
class Observed:
    """Another input's numbers, through the same cotangent (NaN where not checked)."""

    analytic: FloatArray
    numerical: FloatArray
    tolerance: FloatArray


@dataclass(frozen=True, eq=False)
class Context:
    """What a diagnosis may know beyond one input's own numbers."""

    others: Mapping[str, Observed] = field(default_factory=dict)
    """The other checked inputs' numbers, for `swapped`."""
    values: Mapping[str, FloatArray] = field(default_factory=dict)
    """Every floating input's values, by name: sign patterns (`masked`) and products
    (`transposed` inside a product)."""
    dimensions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Every input's shape (and "output", the forward's), to name a factor: 4 = x.shape[0]."""
    scope: Scope = "all"
    at_least: bool = False
    """Fast mode stopped localising before every wrong entry was found: counts are lower
    bounds."""
    worst: tuple[int, ...] | None = None
    """The entry the report calls the input's worst, so that every part names the same one."""


NO_CONTEXT = Context()


@dataclass(frozen=True, eq=False)
class CheckedNumbers:
    """One input's check as float64 arrays; unchecked positions hold harmless fillers (0, 1)."""

    wrt: str
    shape: tuple[int, ...]
    analytic: FloatArray
    numerical: FloatArray
    error: FloatArray
    """analytic - numerical."""
    noise: FloatArray
    """The tolerance, floored at the analytic's own rounding so that nothing divides by zero."""
    comparable: BoolArray
    """Checked, with finite analytic, numerical and tolerance: what a pattern is fitted to."""
    failing: BoolArray
    """Failed and comparable."""
    values: FloatArray | None
    context: Context = NO_CONTEXT


def checked_numbers(
    wrt: str,
    analytic: ArrayLike,
    numerical: ArrayLike,
    tolerance: ArrayLike,
    failed: BoolArray,
    values: ArrayLike | None,
    context: Context = NO_CONTEXT,
) -> CheckedNumbers:
    """What `diagnose` was given, as the arrays every pattern is fitted to."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    t = np.asarray(tolerance, dtype=np.float64)
    comparable = np.isfinite(a) & np.isfinite(n) & np.isfinite(t)
    a = np.where(comparable, a, 0.0)
    n = np.where(comparable, n, 0.0)
    # A zero tolerance (atol 0 at a zero numerical) would make every pattern infinitely strict;
    # the analytic gradient's own rounding is the least noise any comparison has.
    floor = 4.0 * np.finfo(np.float64).eps * (np.abs(a) + np.abs(n)) + np.finfo(np.float64).tiny
    noise = np.where(comparable, np.maximum(np.abs(t), floor), 1.0)
    input_values = None
    if values is not None:
        # Non-finite values rule out input-proportional only, not the entry's other patterns.
        input_values = np.where(comparable, np.asarray(values, dtype=np.float64), 0.0)
    return CheckedNumbers(
        wrt=wrt,
        shape=tuple(a.shape),
        analytic=a,
        numerical=n,
        error=a - n,
        noise=noise,
        comparable=comparable,
        failing=failed & comparable,
        values=input_values,
        context=context,
    )


def pattern_fit(
    numbers: CheckedNumbers, predicted: FloatArray, allowance: FloatArray, domain: BoolArray
) -> float | None:
    """The pattern's `fit` if it fits (criteria 1 and 2 of the module docstring), else None.

    `domain` is where the pattern makes a claim; elsewhere it predicts the numerical value (the
    gradient is right there), so a failure outside the domain rules the pattern out.
    """
    if np.any(numbers.failing & ~domain):
        return None
    comparable = numbers.comparable
    predicted = np.where(domain & comparable, predicted, numbers.numerical)
    allowance = np.where(domain, allowance, numbers.noise)
    residual = np.where(comparable, numbers.analytic - predicted, 0.0)
    if not np.all(np.abs(residual) <= FIT_SLACK * allowance):
        return None
    disagreement = scaled_norm(numbers.error[comparable])
    if disagreement == 0.0:
        return None
    fit = scaled_norm(residual[comparable]) / disagreement
    return fit if fit <= MAX_FIT else None


def scaled_norm(vector: FloatArray) -> float:
    """2-norm scaled by the largest entry, so that neither 1e200 nor 1e-200 leaves the range."""
    largest = float(np.max(np.abs(vector), initial=0.0))
    if largest == 0.0:
        return 0.0
    return largest * math.sqrt(float(np.sum((vector / largest) ** 2)))


def noise_weights(numbers: CheckedNumbers, domain: BoolArray) -> FloatArray:
    """1 / noise^2 relative to the least noisy entry (so it never overflows); 0 off the domain."""
    inside = domain & numbers.comparable
    least = float(np.min(numbers.noise, where=inside, initial=np.inf))
    weights = np.zeros(numbers.shape)
    if not math.isfinite(least):
        return weights
    noise = np.asarray(numbers.noise)[inside]
    if least == 0.0:  # exact entries outweigh every noisy one
        weights[inside] = (noise == 0.0).astype(np.float64)
        return weights
    # Only inside: an entry off the domain may have a noise whose ratio overflows.
    weights[inside] = (least / noise) ** 2
    return weights


def least_squares_factor(weights: FloatArray, y: FloatArray, x: FloatArray) -> float | None:
    """The c minimising sum(weights (y - c x)^2): sum(w y x) / sum(w x x), computed in units of
    the largest |x| and |y|, so that products of gradients near 1e200 never overflow."""
    x_unit = float(np.max(np.abs(x), initial=0.0)) or 1.0
    y_unit = float(np.max(np.abs(y), initial=0.0)) or 1.0
    if not (math.isfinite(x_unit) and math.isfinite(y_unit)):
        return None
    xs, ys = x / x_unit, y / y_unit
    ratio = weighted_ratio(weights * ys * xs, weights * xs * xs)
    if ratio is None:
        return None
    value = ratio * (y_unit / x_unit)
    return value if math.isfinite(value) else None


def weighted_ratio(top: FloatArray, bottom: FloatArray) -> float | None:
    """sum(top) / sum(bottom) for a least-squares parameter, None when it is undetermined."""
    denominator = float(np.sum(bottom))
    if denominator <= 0.0 or not math.isfinite(denominator):
        return None
    value = float(np.sum(top)) / denominator
    return value if math.isfinite(value) else None
