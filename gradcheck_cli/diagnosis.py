"""Why a gradient is wrong: the pattern in the numbers of a failed check (issue 14).

A check says which entries of an input's gradient disagree with the finite differences; this
module says what the disagreement looks like, from those numbers alone (no further evaluations of
f): the analytic gradient is a constant times the true one (a missing 1/N), has the wrong sign,
is zero, is wrong only on some rows/columns/slices, is the true one transposed, is off by a
multiple of the input itself (a regulariser's factor) or by a constant.

Pure numpy and stdlib: no click, no rich. Renderers read `Diagnosis.message` or `to_document()`.

How a pattern is judged. The numerical gradient is noisy: it differs from the true derivative
by up to about its tolerance. A pattern predicts the analytic gradient from the numerical one
(`predicted`), and it *fits* when

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
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

KINDS = (
    "scale",
    "sign",
    "zero",
    "confined",
    "transposed",
    "input-proportional",
    "offset",
    "unexplained",
)

FIT_SLACK = 2.0
"""A residual may reach twice the entry's noise allowance: the tolerance already bounds the noise
(by default 10 x the error estimate), and a fitted parameter adds a little of its own error."""

MAX_FIT = 0.5
"""A pattern must explain at least half the disagreement (in 2-norm); a correct gradient with a
borderline failure gives fit ~ 1 under any pattern and stays unexplained."""

INFORMATIVE = 10.0
"""|numerical| > 10 x tolerance pins a factor to about 10% from one entry; nearer zero an entry
says nothing about a scale (c * 0 = 0 for every c)."""

DENSITY = 0.6
"""Failures are confined to named slices when they fill at least 60% of the checked entries of
those slices (some entries of a wrong slice pass where their true gradient is ~0)."""

MAX_RUNS = 3
"""At most three runs of consecutive indices per axis make a region worth naming."""

MAX_DENOMINATOR = 16
"""Simple factors are p/q with q <= 16, or 1/N and N for any N (a batch size, a mean's count)."""

MAX_LISTED = 20
"""`entries["indices"]` lists at most this many failing entries (in C order)."""

MAX_PERMUTED_NDIM = 4
"""Up to 4-D every axis order is tried for `transposed`; beyond, the reversal and the swap of
the last two axes (the mistakes people make) keep the number of candidates small."""

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Diagnosis:
    """One pattern found in the failures of one input's gradient."""

    wrt: str
    """The input's name, e.g. "W", "b", "kernel"."""
    kind: str
    """Exactly one of KINDS."""
    message: str
    """One line for a person, naming the input and its entries in its own index notation."""
    parameters: dict[str, Any]
    """The fitted parameters, e.g. {"factor": 5.0, "simple_factor": "5"} or {"offset": 0.3}."""
    entries: dict[str, Any]
    """Which entries the pattern covers: "count" (checked entries covered), "failed", a
    "description", "indices" (failing entries, at most MAX_LISTED, C order), "truncated", and
    "slices" ([{"axis": k, "indices": [...]}]) for a pattern on named slices."""
    fit: float
    """||analytic - predicted|| / ||analytic - numerical|| over the checked entries; 0 = perfect,
    1 = explains nothing (`unexplained`)."""

    def to_document(self) -> dict[str, Any]:
        """A plain JSON-able dict (no numpy types, no NaN)."""
        return {
            "wrt": self.wrt,
            "kind": self.kind,
            "message": self.message,
            "parameters": copy.deepcopy(self.parameters),
            "entries": copy.deepcopy(self.entries),
            "fit": self.fit,
        }


@dataclass(frozen=True, eq=False)
class _Numbers:
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


@dataclass(frozen=True, eq=False)
class _Region:
    """Failures confined to some indices along some axes (the others whole)."""

    slices: tuple[tuple[int, tuple[int, ...]], ...]
    mask: BoolArray


def diagnose(
    wrt: str,
    analytic: ArrayLike,
    numerical: ArrayLike,
    tolerance: ArrayLike,
    failed: ArrayLike,
    values: ArrayLike | None = None,
) -> list[Diagnosis]:
    """The pattern behind the failed entries of one input's gradient; [] when nothing failed.

    All arrays have the input's own shape (any ndim, 0-D included). analytic, numerical and
    tolerance hold NaN where an entry was not checked (failed is False there); `values` is the
    input itself, needed for `input-proportional`. Patterns are tried most specific first: one
    factor over all entries (scale, sign, zero), one factor on named slices (sign, zero,
    confined), zeros or a flipped sign on exactly the failing entries, transposed,
    input-proportional, offset, failures confined to named slices without a common factor, and
    else unexplained. Failed entries with non-finite numbers cannot be fitted; they get their own
    `unexplained` diagnosis after the first.
    """
    shape = np.shape(analytic)
    arrays = {"numerical": numerical, "tolerance": tolerance, "failed": failed}
    if values is not None:
        arrays["values"] = values
    for name, array in arrays.items():
        if np.shape(array) != shape:
            raise ValueError(
                f"diagnose({wrt!r}): {name} has shape {np.shape(array)}, analytic {shape}"
            )
    failed_mask = np.asarray(failed, dtype=bool)
    if not failed_mask.any():
        return []
    numbers = _prepare(wrt, analytic, numerical, tolerance, failed_mask, values)
    checked_count = int((numbers.comparable | failed_mask).sum())
    diagnoses: list[Diagnosis] = []
    if numbers.failing.any():
        diagnoses.append(_diagnose_comparable(numbers, checked_count))
    unfit = failed_mask & ~numbers.comparable
    if unfit.any():
        diagnoses.append(_non_finite(numbers, unfit, checked_count))
    return diagnoses


def _prepare(
    wrt: str,
    analytic: ArrayLike,
    numerical: ArrayLike,
    tolerance: ArrayLike,
    failed: BoolArray,
    values: ArrayLike | None,
) -> _Numbers:
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
    return _Numbers(
        wrt=wrt,
        shape=tuple(a.shape),
        analytic=a,
        numerical=n,
        error=a - n,
        noise=noise,
        comparable=comparable,
        failing=failed & comparable,
        values=input_values,
    )


def _diagnose_comparable(numbers: _Numbers, checked_count: int) -> Diagnosis:
    everything = numbers.comparable
    found = _factor_pattern(numbers, everything)
    if found is not None:
        return _factor_diagnosis(numbers, found, None)
    region = _find_region(numbers)
    if region is not None:
        found = _factor_pattern(numbers, region.mask)
        if found is not None:
            return _factor_diagnosis(numbers, found, region)
    for diagnosis in (
        _failing_zero_or_sign(numbers),
        _transposed(numbers),
        _input_proportional(numbers),
        _offset(numbers),
    ):
        if diagnosis is not None:
            return diagnosis
    if region is not None:
        return _confined_plain(numbers, region)
    return _unexplained(numbers, checked_count)


# ---------------------------------------------------------------------------------------------
# Judging a pattern


def _accept(
    numbers: _Numbers, predicted: FloatArray, allowance: FloatArray, domain: BoolArray
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
    disagreement = _norm(numbers.error[comparable])
    if disagreement == 0.0:
        return None
    fit = _norm(residual[comparable]) / disagreement
    return fit if fit <= MAX_FIT else None


def _norm(vector: FloatArray) -> float:
    """2-norm scaled by the largest entry, so that neither 1e200 nor 1e-200 leaves the range."""
    largest = float(np.max(np.abs(vector), initial=0.0))
    if largest == 0.0:
        return 0.0
    return largest * math.sqrt(float(np.sum((vector / largest) ** 2)))


def _weights(numbers: _Numbers, domain: BoolArray) -> FloatArray:
    """1 / noise^2 relative to the least noisy entry (so it never overflows); 0 off the domain."""
    inside = domain & numbers.comparable
    least = float(np.min(numbers.noise, where=inside, initial=np.inf))
    if not math.isfinite(least):
        return np.zeros(numbers.shape)
    return np.where(inside, (least / numbers.noise) ** 2, 0.0)


def _weighted_ratio(top: FloatArray, bottom: FloatArray) -> float | None:
    """sum(top) / sum(bottom) for a least-squares parameter, None when it is undetermined."""
    denominator = float(np.sum(bottom))
    if denominator <= 0.0 or not math.isfinite(denominator):
        return None
    value = float(np.sum(top)) / denominator
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# One factor: analytic = c * numerical (scale, sign, zero), on a domain


@dataclass(frozen=True, eq=False)
class _FactorFit:
    factor: float
    """The weighted least-squares factor (0 when every numerical value is 0)."""
    simple: Fraction | None
    """A simple fraction that fits by itself, if any (then it is the pattern's factor)."""
    domain: BoolArray
    fit: float


def _factor_pattern(numbers: _Numbers, domain: BoolArray) -> _FactorFit | None:
    inside = domain & numbers.comparable
    n, a = numbers.numerical, numbers.analytic
    weights = _weights(numbers, domain)
    factor = _weighted_ratio(weights * a * n, weights * n * n)
    if factor is None:
        # Every numerical value is 0: only "the analytic one is zero too" could fit, which the
        # zero pattern needs no factor for.
        factor = 0.0
    for simple in _simple_fractions(factor):
        value = float(simple)
        fit = _accept(numbers, value * n, max(abs(value), 1.0) * numbers.noise, domain)
        if fit is not None:
            return _FactorFit(factor=factor, simple=simple, domain=domain, fit=fit)
    informative = inside & (np.abs(n) > INFORMATIVE * numbers.noise)
    if int(informative.sum()) < 2:
        return None
    fit = _accept(numbers, factor * n, max(abs(factor), 1.0) * numbers.noise, domain)
    if fit is None:
        return None
    return _FactorFit(factor=factor, simple=None, domain=domain, fit=fit)


def _simple_fractions(factor: float) -> Iterator[Fraction]:
    """The simple fractions near `factor`: p/q with q <= MAX_DENOMINATOR, and 1/N."""
    seen: set[Fraction] = set()
    candidates = [Fraction(factor).limit_denominator(MAX_DENOMINATOR)]
    if factor != 0.0 and math.isfinite(1.0 / factor):
        reciprocal = Fraction(1.0 / factor).limit_denominator(MAX_DENOMINATOR)
        if reciprocal != 0:
            candidates.append(1 / reciprocal)
    for candidate in candidates:
        if candidate not in seen and candidate != 1:
            seen.add(candidate)
            yield candidate


def _factor_hint(simple: Fraction) -> str:
    """What a simple factor usually means, as a question."""
    p, q = simple.numerator, simple.denominator
    sign = "a sign error and " if simple < 0 else ""
    if q == 1:
        return f"{sign}a missing 1/N with N = {abs(p)}?"
    if abs(p) == 1:
        return f"{sign}a factor of {q} lost?"
    return f"exactly {p}/{q} of the true gradient?"


def _factor_diagnosis(numbers: _Numbers, found: _FactorFit, region: _Region | None) -> Diagnosis:
    wrt = numbers.wrt
    covered = found.domain & numbers.comparable
    parameters: dict[str, Any] = {"factor": found.factor}
    if found.simple is not None:
        parameters["simple_factor"] = str(found.simple)
    if region is None:
        description = _all_entries_phrase(numbers)
    else:
        parameters.update(_slice_parameters(region))
        description = _describe_region(wrt, numbers.shape, region.slices)
    entries = _entries(numbers, covered, description, region)
    rest = f"; the rest of {wrt} agrees"
    if found.simple == 0:
        kind = "zero"
        if region is None:
            message = (
                f"analytic is 0 {description}, numerical is not"
                f" — does backward return zeros for {wrt}?"
            )
        else:
            message = (
                f"analytic is 0 on {description} where numerical is not{rest}"
                " — a term never added there?"
            )
    elif found.simple == -1:
        kind = "sign"
        if region is None:
            message = f"analytic = -1 × numerical {description} — a sign error?"
        else:
            message = f"analytic = -1 × numerical on {description}{rest} — a sign error there?"
    else:
        hint = "" if found.simple is None else f" — {_factor_hint(found.simple)}"
        factor = _format_number(found.factor)
        if region is None:
            kind = "scale"
            message = f"analytic = {factor} × numerical {description}{hint}"
        else:
            kind = "confined"
            message = (
                f"only {description} disagrees: analytic = {factor} × numerical there, "
                f"the rest of {wrt} agrees{hint}"
            )
    return Diagnosis(
        wrt=wrt,
        kind=kind,
        message=message,
        parameters=parameters,
        entries=entries,
        fit=found.fit,
    )


# ---------------------------------------------------------------------------------------------
# Named slices: the failures lie in a few rows, columns or slices


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices as runs of consecutive ones, (first, last) inclusive."""
    runs: list[tuple[int, int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def _find_region(numbers: _Numbers) -> _Region | None:
    """The few slices the failures fill, or None when they are spread out.

    Along each axis the failures' indices name a slice set when they cover at most half the axis
    in at most MAX_RUNS runs; the other axes are taken whole. The failures must then fill at least
    DENSITY of the checked entries in that region (else they are scattered in a box, not a slice).
    """
    shape = numbers.shape
    where = np.argwhere(numbers.failing)
    slices: list[tuple[int, tuple[int, ...]]] = []
    for axis, length in enumerate(shape):
        present = [int(i) for i in np.unique(where[:, axis])]
        if length > 1 and len(present) <= length / 2 and len(_runs(present)) <= MAX_RUNS:
            slices.append((axis, tuple(present)))
    if not slices:
        return None
    mask = np.ones(shape, dtype=bool)
    for axis, indices in slices:
        along = np.zeros(shape[axis], dtype=bool)
        along[list(indices)] = True
        mask &= along.reshape([-1 if k == axis else 1 for k in range(len(shape))])
    checked_inside = int((mask & numbers.comparable).sum())
    if int(numbers.failing.sum()) < DENSITY * checked_inside:
        return None
    return _Region(slices=tuple(slices), mask=mask)


def _slice_parameters(region: _Region) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "slices": [{"axis": axis, "indices": list(indices)} for axis, indices in region.slices]
    }
    if len(region.slices) == 1:
        axis, indices = region.slices[0]
        parameters["axis"] = axis
        parameters["indices"] = list(indices)
    return parameters


def _runs_words(indices: Sequence[int]) -> str:
    """[3, 4] -> "3–4", [0, 1, 2, 7] -> "0–2, 7"."""
    return ", ".join(
        str(first) if first == last else f"{first}–{last}" for first, last in _runs(indices)
    )


def _runs_index(indices: Sequence[int]) -> str:
    """Index notation for one axis: "3", "3:5", or a list such as "[0:3, 7]"."""
    runs = _runs(indices)
    parts = [str(first) if first == last else f"{first}:{last + 1}" for first, last in runs]
    return parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"


def _describe_region(
    wrt: str, shape: tuple[int, ...], slices: Sequence[tuple[int, tuple[int, ...]]]
) -> str:
    """ "column 2 of W", "rows 3–4 of x", "entries 0, 5 of b", "x[:, :, 3:5, :]"."""
    named = dict(slices)

    def noun(singular: str, plural: str, indices: Sequence[int]) -> str:
        return f"{singular if len(indices) == 1 else plural} {_runs_words(indices)}"

    if len(shape) == 1:
        return f"{noun('entry', 'entries', named[0])} of {wrt}"
    if len(shape) == 2:
        rows, columns = named.get(0), named.get(1)
        if rows is not None and columns is not None:
            if len(rows) == 1 and len(columns) == 1:
                return _entry_name(wrt, (rows[0], columns[0]))
            return f"{noun('row', 'rows', rows)}, {noun('column', 'columns', columns)} of {wrt}"
        if rows is not None:
            return f"{noun('row', 'rows', rows)} of {wrt}"
        assert columns is not None
        return f"{noun('column', 'columns', columns)} of {wrt}"
    parts = [_runs_index(named[axis]) if axis in named else ":" for axis in range(len(shape))]
    return f"{wrt}[{', '.join(parts)}]"


# ---------------------------------------------------------------------------------------------
# The other patterns


def _failing_zero_or_sign(numbers: _Numbers) -> Diagnosis | None:
    """Analytic 0, or -numerical, on exactly the failing entries (wherever they are)."""
    failing = numbers.failing
    wrt = numbers.wrt
    count = int(failing.sum())
    description = f"{count} of {int(numbers.comparable.sum())} checked entries of {wrt}"
    listing = _listing(numbers, failing)
    zero = _accept(numbers, np.zeros(numbers.shape), numbers.noise, failing)
    if zero is not None:
        return Diagnosis(
            wrt=wrt,
            kind="zero",
            message=(
                f"analytic is 0 where numerical is not, on {description} ({listing}); "
                "the rest agrees — a branch or term that is never added?"
            ),
            parameters={"factor": 0.0},
            entries=_entries(numbers, failing, description, None),
            fit=zero,
        )
    flipped = _accept(numbers, -numbers.numerical, numbers.noise, failing)
    if flipped is not None:
        return Diagnosis(
            wrt=wrt,
            kind="sign",
            message=(
                f"analytic = -1 × numerical on {description} ({listing}); "
                "the rest agrees — a sign error in one branch?"
            ),
            parameters={"factor": -1.0},
            entries=_entries(numbers, failing, description, None),
            fit=flipped,
        )
    return None


def _axis_orders(ndim: int) -> Iterator[tuple[int, ...]]:
    """Axis permutations other than the identity worth trying for a transpose."""
    identity = tuple(range(ndim))
    if ndim <= MAX_PERMUTED_NDIM:
        orders: Iterator[tuple[int, ...]] = itertools.permutations(identity)
    else:
        swapped = (*identity[:-2], ndim - 1, ndim - 2)
        orders = iter([identity[::-1], swapped])
    for order in orders:
        if order != identity:
            yield order


def _rearrangements(
    array: FloatArray, shape: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], bool, FloatArray]]:
    """The same numbers in another order, in `shape`: (axes, reshaped, rearranged).

    transposed: array.transpose(axes) where that keeps the shape; reshaped: a transpose read
    back in C order (also what a C/Fortran order mix-up gives), or a C-order reshape to the
    transposed shape then transposed back.
    """
    for axes in _axis_orders(len(shape)):
        moved = array.transpose(axes)
        if moved.shape == shape:
            yield axes, False, moved
        else:
            yield axes, True, moved.reshape(shape)
            inverse = tuple(int(k) for k in np.argsort(axes))
            yield axes, True, array.reshape(moved.shape).transpose(inverse)


def _transposed(numbers: _Numbers) -> Diagnosis | None:
    shape = numbers.shape
    if len(shape) < 2 or numbers.numerical.size < 2:
        return None
    numerical = np.where(numbers.comparable, numbers.numerical, np.nan)
    noise = np.where(numbers.comparable, numbers.noise, np.nan)
    for (axes, reshaped, moved), (_, _, moved_noise) in zip(
        _rearrangements(numerical, shape), _rearrangements(noise, shape), strict=True
    ):
        partner = np.isfinite(moved) & np.isfinite(moved_noise)
        candidate = np.where(partner, moved, 0.0)
        allowance = np.maximum(numbers.noise, np.where(partner, moved_noise, 0.0))
        fit = _accept(numbers, candidate, allowance, numbers.comparable & partner)
        if fit is None:
            continue
        wrt = numbers.wrt
        count = int((numbers.comparable & partner).sum())
        description = f"all {count} checked entries of {wrt}"
        axes_text = ", ".join(str(k) for k in axes)
        if reshaped:
            what = f"numerical's numbers in another order (axes {axes_text}, then reshaped)"
            hint = "a reshape where a transpose was meant, or C vs Fortran order?"
        else:
            what = f"numerical transposed (axes {axes_text})"
            hint = "a forgotten transpose?"
        return Diagnosis(
            wrt=wrt,
            kind="transposed",
            message=f"analytic = {what} on {description} — {hint}",
            parameters={"axes": list(axes), "reshaped": reshaped},
            entries=_entries(numbers, numbers.comparable & partner, description, None),
            fit=fit,
        )
    return None


def _input_proportional(numbers: _Numbers) -> Diagnosis | None:
    values = numbers.values
    if values is None or int(numbers.failing.sum()) < 2 or not np.all(np.isfinite(values)):
        return None
    everything = numbers.comparable
    weights = _weights(numbers, everything)
    factor = _weighted_ratio(weights * numbers.error * values, weights * values * values)
    if factor is None:
        return None
    predicted = numbers.numerical + factor * values
    fit = _accept(numbers, predicted, numbers.noise, everything)
    if fit is None:
        return None
    wrt = numbers.wrt
    description = f"all {int(everything.sum())} checked entries of {wrt}"
    return Diagnosis(
        wrt=wrt,
        kind="input-proportional",
        message=(
            f"analytic - numerical = {_format_number(factor)} × {wrt} itself on {description}"
            f" — a regulariser's factor off (reg * {wrt} where 2 * reg * {wrt} was meant?)"
        ),
        parameters={"factor": factor},
        entries=_entries(numbers, everything, description, None),
        fit=fit,
    )


def _offset(numbers: _Numbers) -> Diagnosis | None:
    if int(numbers.failing.sum()) < 2:
        return None
    everything = numbers.comparable
    weights = _weights(numbers, everything)
    offset = _weighted_ratio(weights * numbers.error, weights)
    if offset is None:
        return None
    fit = _accept(numbers, numbers.numerical + offset, numbers.noise, everything)
    if fit is None:
        return None
    wrt = numbers.wrt
    description = f"all {int(everything.sum())} checked entries of {wrt}"
    return Diagnosis(
        wrt=wrt,
        kind="offset",
        message=(
            f"analytic - numerical = {_format_number(offset)} on {description}"
            " — a constant added to every entry?"
        ),
        parameters={"offset": offset},
        entries=_entries(numbers, everything, description, None),
        fit=fit,
    )


def _confined_plain(numbers: _Numbers, region: _Region) -> Diagnosis:
    """Failures fill named slices, with no common factor there."""
    wrt = numbers.wrt
    covered = region.mask & numbers.comparable
    description = _describe_region(wrt, numbers.shape, region.slices)
    failing = int(numbers.failing.sum())
    # Inside the slices anything goes, outside the gradient is right: what is left unexplained
    # is the (passing) disagreement outside.
    predicted = np.where(region.mask, numbers.analytic, numbers.numerical)
    disagreement = _norm(numbers.error[numbers.comparable])
    left = numbers.analytic - predicted
    return Diagnosis(
        wrt=wrt,
        kind="confined",
        message=(
            f"only {description} disagrees: {failing} of {int(covered.sum())} checked entries "
            f"there fail, with no common factor; the rest of {wrt} agrees"
        ),
        parameters=_slice_parameters(region),
        entries=_entries(numbers, covered, description, region),
        fit=_norm(left[numbers.comparable]) / disagreement,
    )


def _unexplained(numbers: _Numbers, checked_count: int) -> Diagnosis:
    wrt = numbers.wrt
    failing = numbers.failing
    count = int(failing.sum())
    fraction = count / checked_count
    ratio = np.where(failing, np.abs(numbers.error) / numbers.noise, -np.inf)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), numbers.shape))
    description = f"{count} of {checked_count} checked entries of {wrt}"
    parameters: dict[str, Any] = {"fraction": fraction, "failed": count, "checked": checked_count}
    message = (
        f"no simple pattern: {description} ({fraction:.1%}) disagree; worst "
        f"{_entry_name(wrt, worst)}: analytic {numbers.analytic[worst]:.6g} vs numerical "
        f"{numbers.numerical[worst]:.6g}"
    )
    ratios = _ratio_range(numbers)
    if ratios is not None:
        low, high = ratios
        parameters["ratio_range"] = [low, high]
        message += (
            f"; analytic / numerical lies between {_format_number(low)} and "
            f"{_format_number(high)} on the failing entries: a factor that varies from entry to "
            "entry (a term of the derivative missing or written differently?)"
        )
    return Diagnosis(
        wrt=wrt,
        kind="unexplained",
        message=message,
        parameters=parameters,
        entries=_entries(numbers, failing, description, None),
        fit=1.0,
    )


def _ratio_range(numbers: _Numbers) -> tuple[float, float] | None:
    """The spread of analytic / numerical over the failing entries, when it says something.

    A bug that multiplies the derivative by an entry-dependent factor (1 - tanh instead of
    1 - tanh**2) fails every `scale` fit yet keeps one sign and a narrow ratio band; that band is
    the next clue. Only entries whose numerical value stands clear of its noise count, and the
    band is reported only when it keeps one sign and spans less than a factor of 4."""
    informative = numbers.failing & (np.abs(numbers.numerical) > INFORMATIVE * numbers.noise)
    if int(informative.sum()) < 2:
        return None
    ratio = numbers.analytic[informative] / numbers.numerical[informative]
    low, high = float(ratio.min()), float(ratio.max())
    if low * high <= 0.0 or max(abs(low), abs(high)) > 4.0 * min(abs(low), abs(high)):
        return None
    return low, high


def _non_finite(numbers: _Numbers, unfit: BoolArray, checked_count: int) -> Diagnosis:
    wrt = numbers.wrt
    count = int(unfit.sum())
    description = f"{count} of {checked_count} checked entries of {wrt}"
    return Diagnosis(
        wrt=wrt,
        kind="unexplained",
        message=(
            f"{description} failed with no finite numbers to compare ({_listing(numbers, unfit)})"
        ),
        parameters={"fraction": count / checked_count, "failed": count, "checked": checked_count},
        entries=_entries(numbers, unfit, description, None, unfit),
        fit=1.0,
    )


# ---------------------------------------------------------------------------------------------
# Names and numbers for people


def _entry_name(wrt: str, index: Sequence[int]) -> str:
    """W[2, 1], b[3], scale[] (0-D)."""
    return f"{wrt}[{', '.join(str(i) for i in index)}]"


def _all_entries_phrase(numbers: _Numbers) -> str:
    count = int(numbers.comparable.sum())
    if count == 1:
        only = tuple(int(i) for i in np.argwhere(numbers.comparable)[0])
        return f"at {_entry_name(numbers.wrt, only)}"
    return f"on all {count} checked entries of {numbers.wrt}"


def _listing(numbers: _Numbers, mask: BoolArray, most: int = 3) -> str:
    """The first few entries of `mask` by name: "W[0, 1], W[3, 4], …"."""
    where = np.argwhere(mask)
    names = [_entry_name(numbers.wrt, [int(i) for i in index]) for index in where[:most]]
    return ", ".join(names) + (", …" if len(where) > most else "")


def _entries(
    numbers: _Numbers,
    covered: BoolArray,
    description: str,
    region: _Region | None,
    failing_mask: BoolArray | None = None,
) -> dict[str, Any]:
    """The entries dict; `failing_mask` defaults to the comparable failing entries."""
    failing = np.argwhere((numbers.failing if failing_mask is None else failing_mask) & covered)
    entries: dict[str, Any] = {
        "count": int(covered.sum()),
        "failed": len(failing),
        "description": description,
        "indices": [[int(i) for i in index] for index in failing[:MAX_LISTED]],
        "truncated": len(failing) > MAX_LISTED,
    }
    if region is not None:
        entries["slices"] = _slice_parameters(region)["slices"]
    return entries


def _format_number(value: float) -> str:
    """Four significant digits, trailing zeros kept (5.000, 0.5000, 0.01562), else 1.234e-07."""
    if value == 0.0 or 1e-4 <= abs(value) < 1e4:
        return f"{value:#.4g}"
    return f"{value:.3e}"
