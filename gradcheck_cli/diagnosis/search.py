"""`diagnose`: the pattern behind one input's failed entries, trying the patterns in order.

The order is the one decision this module makes: most specific first, so that a zero gradient
is called `zero`, not `confined` to every row. A new pattern is a function
`(CheckedNumbers) -> Diagnosis | None` in the module of its family and one line in `PATTERNS`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from gradcheck_cli.diagnosis.factors import (
    factor_everywhere,
    factor_on_region,
    zero_or_sign_on_failing,
)
from gradcheck_cli.diagnosis.fitting import CheckedNumbers, checked_numbers
from gradcheck_cli.diagnosis.offsets import constant_offset, input_proportional
from gradcheck_cli.diagnosis.rearranged import transposed
from gradcheck_cli.diagnosis.regions import confined_without_factor
from gradcheck_cli.diagnosis.result import Diagnosis
from gradcheck_cli.diagnosis.unexplained import non_finite, unexplained

Pattern = Callable[[CheckedNumbers], Diagnosis | None]
"""A pattern: its diagnosis when it fits the numbers (`fitting.pattern_fit`), else None."""

PATTERNS: tuple[Pattern, ...] = (
    factor_everywhere,  # scale, sign, zero: one factor over every checked entry
    factor_on_region,  # sign, zero, confined: one factor on named slices, the rest right
    zero_or_sign_on_failing,  # zero, sign: on exactly the failing entries, wherever they are
    transposed,
    input_proportional,
    constant_offset,
    confined_without_factor,  # confined: the failures fill named slices, no common factor
)
"""The patterns in the order they are tried; when none fits, the failures are `unexplained`."""


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
    numbers = checked_numbers(wrt, analytic, numerical, tolerance, failed_mask, values)
    checked_count = int((numbers.comparable | failed_mask).sum())
    diagnoses: list[Diagnosis] = []
    if numbers.failing.any():
        diagnoses.append(_diagnose_comparable(numbers, checked_count))
    unfit = failed_mask & ~numbers.comparable
    if unfit.any():
        diagnoses.append(non_finite(numbers, unfit, checked_count))
    return diagnoses


def _diagnose_comparable(numbers: CheckedNumbers, checked_count: int) -> Diagnosis:
    for pattern in PATTERNS:
        found = pattern(numbers)
        if found is not None:
            return found
    return unexplained(numbers, checked_count)
