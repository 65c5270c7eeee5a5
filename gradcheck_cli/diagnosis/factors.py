"""One factor: analytic = c × numerical, over every checked entry, on named slices, or on exactly
the failing entries.

The factor names the kind: 0 is `zero` (a term never added), -1 is `sign`, any other is `scale`
over every entry (a missing 1/N) and `confined` on named slices. A simple fraction (p/q with a
small q, or 1/N) that fits wins over the least-squares factor, since that is what a bug gives.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from gradcheck_cli.diagnosis.fitting import (
    INFORMATIVE,
    BoolArray,
    CheckedNumbers,
    least_squares_factor,
    noise_weights,
    pattern_fit,
)
from gradcheck_cli.diagnosis.regions import Region, find_region, slice_parameters
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import (
    all_entries_phrase,
    checked_entries,
    describe_region,
    disagree,
    first_entry_names,
    format_number,
    rest_agrees,
)

MAX_DENOMINATOR = 16
"""Simple factors are p/q with q <= 16, or 1/N and N for any N (a batch size, a mean's count)."""


def factor_everywhere(numbers: CheckedNumbers) -> Diagnosis | None:
    """One factor over every checked entry: scale, sign or zero."""
    found = _factor_pattern(numbers, numbers.comparable)
    return None if found is None else _factor_diagnosis(numbers, found, None)


def factor_on_region(numbers: CheckedNumbers) -> Diagnosis | None:
    """One factor on the few slices the failures fill, the rest right: sign, zero or confined."""
    if numbers.context.scope == "one-by-one":
        return None  # fast mode checks entries near the failures only: no region to name
    region = find_region(numbers)
    if region is None:
        return None
    found = _factor_pattern(numbers, region.mask)
    return None if found is None else _factor_diagnosis(numbers, found, region)


def zero_or_sign_on_failing(numbers: CheckedNumbers) -> Diagnosis | None:
    """Analytic 0, or -numerical, on exactly the failing entries (wherever they are)."""
    failing = numbers.failing
    wrt = numbers.wrt
    count = int(failing.sum())
    description = f"{count} of {checked_entries(numbers, int(numbers.comparable.sum()))}"
    listing = first_entry_names(numbers, failing)
    zero = pattern_fit(numbers, np.zeros(numbers.shape), numbers.noise, failing)
    if zero is not None:
        return Diagnosis(
            wrt=wrt,
            kind="zero",
            message=(
                f"analytic is 0 where numerical is not, on {description} ({listing}); "
                f"{rest_agrees(numbers)} — a branch or term that is never added?"
            ),
            parameters={"factor": 0.0},
            entries=covered_entries(numbers.failing, failing, description),
            fit=zero,
        )
    flipped = pattern_fit(numbers, -numbers.numerical, numbers.noise, failing)
    if flipped is not None:
        return Diagnosis(
            wrt=wrt,
            kind="sign",
            message=(
                f"analytic = -1 × numerical on {description} ({listing}); "
                f"{rest_agrees(numbers)} — a sign error in one branch?"
            ),
            parameters={"factor": -1.0},
            entries=covered_entries(numbers.failing, failing, description),
            fit=flipped,
        )
    return None


@dataclass(frozen=True, eq=False)
class _FactorFit:
    factor: float
    """The weighted least-squares factor (0 when every numerical value is 0)."""
    simple: Fraction | None
    """A simple fraction that fits by itself, if any (then it is the pattern's factor)."""
    domain: BoolArray
    fit: float


def _factor_pattern(numbers: CheckedNumbers, domain: BoolArray) -> _FactorFit | None:
    inside = domain & numbers.comparable
    n, a = numbers.numerical, numbers.analytic
    weights = noise_weights(numbers, domain)
    factor = least_squares_factor(weights, a, n)
    if factor is None:
        # Every numerical value is 0: only "the analytic one is zero too" could fit, which the
        # zero pattern needs no factor for.
        factor = 0.0
    for simple in _simple_fractions(factor):
        value = float(simple)
        fit = pattern_fit(numbers, value * n, max(abs(value), 1.0) * numbers.noise, domain)
        if fit is not None:
            return _FactorFit(factor=factor, simple=simple, domain=domain, fit=fit)
    informative = inside & (np.abs(n) > INFORMATIVE * numbers.noise)
    if int(informative.sum()) < 2:
        return None
    fit = pattern_fit(numbers, factor * n, max(abs(factor), 1.0) * numbers.noise, domain)
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


def _factor_hint(simple: Fraction, numbers: CheckedNumbers) -> tuple[str, dict[str, Any] | None]:
    """What a simple factor usually means, as a question, and the model's dimension it equals
    (None when none does): a mean where forward sums divides by the batch size, a sum where
    forward takes a mean multiplies by it."""
    p, q = simple.numerator, simple.denominator
    sign = "a sign error and " if simple < 0 else ""
    size = abs(p) if q == 1 else q if abs(p) == 1 else None
    dimension = None if size is None or size < 2 else _dimension_of(size, numbers)
    if dimension is not None:
        named = f"{size} = {dimension['name']}"
        if q == 1:
            return f"{sign}{named}: a missing 1/{size} (a mean in forward, a sum in backward)?", (
                dimension
            )
        return f"{sign}1/{size}, {named}: a mean in backward where forward sums?", dimension
    if size == 2 and q == 1:
        return f"{sign}doubled: a term added twice (or a 1/2 left out)?", None
    if q == 1:
        return f"{sign}a missing 1/N with N = {abs(p)}?", None
    if abs(p) == 1:
        return f"{sign}a factor of {q} lost?", None
    return f"exactly {p}/{q} of the true gradient?", None


MAX_PRODUCT_AXES = 3
"""A factor may be a product of up to three axes of one input (N·H·W of a batch of images)."""


def _dimension_of(size: int, numbers: CheckedNumbers) -> dict[str, Any] | None:
    """The first of the model's dimensions equal to `size`, with one more that equals it too:
    a batch size first (axis 0 of an input that the output or another input shares), then any
    other axis of an input, of the output, then a product of an input's axes."""
    dimensions = numbers.context.dimensions
    ranked: list[tuple[int, str, tuple[int, ...]]] = []
    for name, shape in dimensions.items():
        batch = name != "output" and _is_batch(name, dimensions)
        for axis in range(len(shape)):
            rank = 2 if name == "output" else 0 if axis == 0 and batch else 1
            ranked.append((rank, name, (axis,)))
        for count in range(2, min(len(shape), MAX_PRODUCT_AXES) + 1):
            for axes in itertools.combinations(range(len(shape)), count):
                if all(shape[axis] > 1 for axis in axes):
                    ranked.append((3, name, axes))
    found = [
        {"input": name, "axes": list(axes), "size": size}
        for _, name, axes in sorted(ranked, key=lambda item: item[0])
        if math.prod(dimensions[name][axis] for axis in axes) == size
    ]
    if not found:
        return None
    first = found[0]
    words, spelled = _dimension_name(first, dimensions)
    shown = [spelled] if words != spelled else []
    shown += [f"also {_dimension_name(other, dimensions)[1]}" for other in found[1:2]]
    first["name"] = f"{words} ({', '.join(shown)})" if shown else words
    return first


def _is_batch(name: str, dimensions: Any) -> bool:
    """Axis 0 of a 2-D or larger input is a batch when the output, or another input, has as
    many rows (x and its labels y; x and the layer's output)."""
    shape = dimensions[name]
    if len(shape) < 2:
        return False
    return any(
        other != name and len(theirs) >= 1 and theirs[0] == shape[0]
        for other, theirs in dimensions.items()
    )


def _dimension_name(item: dict[str, Any], dimensions: Any) -> tuple[str, str]:
    """In words ("the batch size of x", "x.size") and as code ("x.shape[0]")."""
    name, axes = item["input"], item["axes"]
    shape = dimensions[name]
    owner = "output" if name == "output" else name
    spelled = "·".join(f"{owner}.shape[{axis}]" for axis in axes)
    if name != "output" and axes == [0] and _is_batch(name, dimensions):
        return f"the batch size of {name}", spelled
    if len(axes) > 1 and len(axes) == len(shape):
        return f"{owner}.size", spelled
    return spelled, spelled


def _factor_diagnosis(
    numbers: CheckedNumbers, found: _FactorFit, region: Region | None
) -> Diagnosis:
    wrt = numbers.wrt
    covered = found.domain & numbers.comparable
    parameters: dict[str, Any] = {"factor": found.factor}
    if found.simple is not None:
        parameters["simple_factor"] = str(found.simple)
    if region is None:
        description = all_entries_phrase(numbers)
        entries = covered_entries(numbers.failing, covered, description)
    else:
        parameters.update(slice_parameters(region))
        description = describe_region(wrt, numbers.shape, region.slices)
        entries = covered_entries(
            numbers.failing, covered, description, slice_parameters(region)["slices"]
        )
    rest = f"; {rest_agrees(numbers)}"
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
        hint = ""
        if found.simple is not None:
            text, dimension = _factor_hint(found.simple, numbers)
            hint = f" — {text}"
            if dimension is not None:
                parameters["dimension"] = {k: dimension[k] for k in ("input", "axes", "size")}
        factor = format_number(found.factor)
        if region is None:
            kind = "scale"
            message = f"analytic = {factor} × numerical {description}{hint}"
        else:
            kind = "confined"
            message = (
                f"only {description} {disagree(description)}: analytic = {factor} × "
                f"numerical there, {rest_agrees(numbers)}{hint}"
            )
    return Diagnosis(
        wrt=wrt,
        kind=kind,
        message=message,
        parameters=parameters,
        entries=entries,
        fit=found.fit,
    )
