"""What is said when no pattern fits (`unexplained`): how many entries disagree, the worst one,
and the spread of analytic / numerical when that is a clue; and of failures that have no finite
numbers to fit at all."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck_cli.diagnosis.fitting import INFORMATIVE, BoolArray, CheckedNumbers
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import (
    checked_entries,
    entry_name,
    first_entry_names,
    format_number,
)


def unexplained(numbers: CheckedNumbers, checked_count: int) -> Diagnosis:
    """The comparable failures, when no pattern explains them."""
    wrt = numbers.wrt
    failing = numbers.failing
    count = int(failing.sum())
    fraction = count / checked_count
    worst = worst_failing(numbers)
    description = f"{count} of {checked_entries(numbers, checked_count)}"
    parameters: dict[str, Any] = {"fraction": fraction, "failed": count, "checked": checked_count}
    message = (
        f"no simple pattern: {description} ({fraction:.1%}) disagree; worst "
        f"{entry_name(wrt, worst)}: analytic {numbers.analytic[worst]:.6g} vs numerical "
        f"{numbers.numerical[worst]:.6g}"
    )
    ratios = _ratio_range(numbers)
    if ratios is not None:
        low, high = ratios
        parameters["ratio_range"] = [low, high]
        message += (
            f"; analytic / numerical lies between {format_number(low)} and "
            f"{format_number(high)} on the failing entries: a factor that varies from entry to "
            "entry (a term of the derivative missing or written differently?)"
        )
    return Diagnosis(
        wrt=wrt,
        kind="unexplained",
        message=message,
        parameters=parameters,
        entries=covered_entries(numbers.failing, failing, description),
        fit=1.0,
    )


def non_finite(numbers: CheckedNumbers, unfit: BoolArray, checked_count: int) -> Diagnosis:
    """The failed entries whose analytic, numerical or tolerance is not finite (`unfit`)."""
    wrt = numbers.wrt
    count = int(unfit.sum())
    description = f"{count} of {checked_entries(numbers, checked_count)}"
    return Diagnosis(
        wrt=wrt,
        kind="unexplained",
        message=(
            f"{description} failed with no finite numbers to compare "
            f"({first_entry_names(numbers, unfit)})"
        ),
        parameters={"fraction": count / checked_count, "failed": count, "checked": checked_count},
        entries=covered_entries(unfit, unfit, description),
        fit=1.0,
    )


def worst_failing(numbers: CheckedNumbers) -> tuple[int, ...]:
    """The report's worst entry (`Context.worst`) when it is among the failures fitted here,
    so that the diagnosis, the summary and the map name the same one; else the failure
    furthest past its noise."""
    worst = numbers.context.worst
    if worst is not None and len(worst) == len(numbers.shape) and numbers.failing[worst]:
        return tuple(int(i) for i in worst)
    ratio = np.where(numbers.failing, np.abs(numbers.error) / numbers.noise, -np.inf)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), numbers.shape))


def _ratio_range(numbers: CheckedNumbers) -> tuple[float, float] | None:
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
