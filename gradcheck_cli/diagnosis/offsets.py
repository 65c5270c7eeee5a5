"""Something added to every entry: analytic - numerical = a multiple of the input itself (a
regulariser's factor off), or = one constant."""

from __future__ import annotations

import numpy as np

from gradcheck_cli.diagnosis.fitting import (
    CheckedNumbers,
    noise_weights,
    pattern_fit,
    weighted_ratio,
)
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import format_number


def input_proportional(numbers: CheckedNumbers) -> Diagnosis | None:
    """analytic - numerical = c × the input's values, on every checked entry."""
    values = numbers.values
    if values is None or int(numbers.failing.sum()) < 2 or not np.all(np.isfinite(values)):
        return None
    everything = numbers.comparable
    weights = noise_weights(numbers, everything)
    factor = weighted_ratio(weights * numbers.error * values, weights * values * values)
    if factor is None:
        return None
    predicted = numbers.numerical + factor * values
    fit = pattern_fit(numbers, predicted, numbers.noise, everything)
    if fit is None:
        return None
    wrt = numbers.wrt
    description = f"all {int(everything.sum())} checked entries of {wrt}"
    return Diagnosis(
        wrt=wrt,
        kind="input-proportional",
        message=(
            f"analytic - numerical = {format_number(factor)} × {wrt} itself on {description}"
            f" — a regulariser's factor off (reg * {wrt} where 2 * reg * {wrt} was meant?)"
        ),
        parameters={"factor": factor},
        entries=covered_entries(numbers.failing, everything, description),
        fit=fit,
    )


def constant_offset(numbers: CheckedNumbers) -> Diagnosis | None:
    """analytic - numerical = one constant, on every checked entry."""
    if int(numbers.failing.sum()) < 2:
        return None
    everything = numbers.comparable
    weights = noise_weights(numbers, everything)
    offset = weighted_ratio(weights * numbers.error, weights)
    if offset is None:
        return None
    fit = pattern_fit(numbers, numbers.numerical + offset, numbers.noise, everything)
    if fit is None:
        return None
    wrt = numbers.wrt
    description = f"all {int(everything.sum())} checked entries of {wrt}"
    return Diagnosis(
        wrt=wrt,
        kind="offset",
        message=(
            f"analytic - numerical = {format_number(offset)} on {description}"
            " — a constant added to every entry?"
        ),
        parameters={"offset": offset},
        entries=covered_entries(numbers.failing, everything, description),
        fit=fit,
    )
