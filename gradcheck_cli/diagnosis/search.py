"""`diagnose`: the pattern behind one input's failed entries, trying the patterns in order.

The order is the one decision this module makes: most specific first, so that a zero gradient
is called `zero`, not `confined` to every row. A new pattern is a function
`(CheckedNumbers) -> Diagnosis | None` in the module of its family and one line in `PATTERNS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from gradcheck_cli.diagnosis.factors import (
    factor_everywhere,
    factor_on_region,
    zero_or_sign_on_failing,
)
from gradcheck_cli.diagnosis.fitting import NO_CONTEXT, CheckedNumbers, Context, checked_numbers
from gradcheck_cli.diagnosis.masks import factor_by_sign, masked
from gradcheck_cli.diagnosis.offsets import constant_offset, input_proportional, offset_per_slice
from gradcheck_cli.diagnosis.rearranged import swapped, transposed, transposed_in_product
from gradcheck_cli.diagnosis.regions import confined_without_factor, few_entries
from gradcheck_cli.diagnosis.result import Diagnosis
from gradcheck_cli.diagnosis.shifts import shifted
from gradcheck_cli.diagnosis.unexplained import non_finite, unexplained
from gradcheck_cli.diagnosis.wording import lower_bound_note

Pattern = Callable[[CheckedNumbers], Diagnosis | None]
"""A pattern: its diagnosis when it fits the numbers (`fitting.pattern_fit`), else None."""

PATTERNS: tuple[Pattern, ...] = (
    swapped,  # another input's numerical gradient, entry for entry (before `sign`: x - y)
    factor_everywhere,  # scale, sign, zero: one factor over every checked entry
    factor_on_region,  # sign, zero, confined: one factor on named slices, the rest right
    masked,  # analytic non-zero where numerical is 0, or the reverse: a mask
    zero_or_sign_on_failing,  # zero, sign: on exactly the failing entries, wherever they are
    factor_by_sign,  # masked: one factor where an input is positive, another where not
    transposed,
    transposed_in_product,  # transposed: Y where Y.T belongs inside a product
    shifted,  # numerical moved by an index offset: padding, stride, slice off by one
    input_proportional,
    constant_offset,
    offset_per_slice,  # offset: one constant per row, column or channel (plus c × x there)
    confined_without_factor,  # confined: the failures fill named slices, no common factor
    few_entries,  # confined: a few scattered wrong entries, named
)
"""The patterns in the order they are tried; when none fits, the failures are `unexplained`."""


def diagnose(
    wrt: str,
    analytic: ArrayLike,
    numerical: ArrayLike,
    tolerance: ArrayLike,
    failed: ArrayLike,
    values: ArrayLike | None = None,
    *,
    context: Context = NO_CONTEXT,
) -> list[Diagnosis]:
    """The pattern behind the failed entries of one input's gradient; [] when nothing failed.

    All arrays have the input's own shape (any ndim, 0-D included). analytic, numerical and
    tolerance hold NaN where an entry was not checked (failed is False there); `values` is the
    input itself, needed for `input-proportional`, per-slice offsets and masks. `context` holds
    what one input's numbers do not: the other inputs' numbers (`swapped`) and values (a mask's
    sign, a product's .T), the model's dimensions (a factor named as a batch size), which
    entries were checked (fast mode speaks only of those it checked one by one) and the entry
    the report calls worst. Patterns are tried in the order of `PATTERNS`; else unexplained.
    Failed entries with non-finite numbers cannot be fitted; they get their own `unexplained`
    diagnosis after the first.
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
    numbers = checked_numbers(wrt, analytic, numerical, tolerance, failed_mask, values, context)
    checked_count = int((numbers.comparable | failed_mask).sum())
    diagnoses: list[Diagnosis] = []
    if numbers.failing.any():
        diagnoses.append(_diagnose_comparable(numbers, checked_count))
    unfit = failed_mask & ~numbers.comparable
    if unfit.any():
        diagnoses.append(non_finite(numbers, unfit, checked_count))
    note = lower_bound_note(numbers)
    if note:
        diagnoses = [dataclasses.replace(d, message=d.message + note) for d in diagnoses]
    return diagnoses


def _diagnose_comparable(numbers: CheckedNumbers, checked_count: int) -> Diagnosis:
    for pattern in PATTERNS:
        found = pattern(numbers)
        if found is not None:
            return found
    return unexplained(numbers, checked_count)
