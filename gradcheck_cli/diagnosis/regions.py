"""Failures that lie in a few rows, columns or slices: finding that region, and `confined`, the
pattern for failures that fill it with no common factor (`factors.factor_on_region` tries a
factor there first), or that are a few scattered entries, named one by one (an embedding's
wrong rows, a bias's wrong entries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_cli.diagnosis.fitting import INFORMATIVE, BoolArray, CheckedNumbers, scaled_norm
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import (
    checked_entries,
    describe_region,
    disagree,
    first_entry_names,
    rest_agrees,
    runs,
)

DENSITY = 0.6
"""Failures are confined to named slices when they fill at least 60% of the checked entries of
those slices (some entries of a wrong slice pass where their true gradient is ~0)."""

MAX_RUNS = 3
"""At most three runs of consecutive indices per axis make a region worth naming..."""

MAX_NAMED = 8
"""... or at most eight indices, however scattered (an embedding's rows hit by repeated ids)."""

MAX_NAMED_ENTRIES = 6
"""Up to six failing entries that fill no slice are named one by one."""


@dataclass(frozen=True, eq=False)
class Region:
    """Failures confined to some indices along some axes (the others whole)."""

    slices: tuple[tuple[int, tuple[int, ...]], ...]
    mask: BoolArray


def find_region(numbers: CheckedNumbers) -> Region | None:
    """The few slices the failures fill, or None when they are spread out.

    Along each axis the failures' indices name a slice set when they cover at most half the axis
    in at most MAX_RUNS runs, or in at most MAX_NAMED indices; the other axes are taken whole.
    The failures must then fill at least DENSITY of the checked entries in that region (else
    they are scattered in a box, not a slice).
    """
    shape = numbers.shape
    where = np.argwhere(numbers.failing)
    slices: list[tuple[int, tuple[int, ...]]] = []
    for axis, length in enumerate(shape):
        present = [int(i) for i in np.unique(where[:, axis])]
        few = len(runs(present)) <= MAX_RUNS or len(present) <= MAX_NAMED
        if length > 1 and len(present) <= length / 2 and few:
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
    return Region(slices=tuple(slices), mask=mask)


def slice_parameters(region: Region) -> dict[str, Any]:
    """`Diagnosis.parameters` naming the slices: "slices", and "axis" and "indices" for one."""
    parameters: dict[str, Any] = {
        "slices": [{"axis": axis, "indices": list(indices)} for axis, indices in region.slices]
    }
    if len(region.slices) == 1:
        axis, indices = region.slices[0]
        parameters["axis"] = axis
        parameters["indices"] = list(indices)
    return parameters


def confined_without_factor(numbers: CheckedNumbers) -> Diagnosis | None:
    """Failures fill named slices, with no common factor there."""
    if numbers.context.scope == "one-by-one":
        return None  # fast mode checks entries near the failures only: no region to name
    region = find_region(numbers)
    if region is None:
        return None
    wrt = numbers.wrt
    covered = region.mask & numbers.comparable
    description = describe_region(wrt, numbers.shape, region.slices)
    failing = int(numbers.failing.sum())
    # Inside the slices anything goes, outside the gradient is right: what is left unexplained
    # is the (passing) disagreement outside.
    predicted = np.where(region.mask, numbers.analytic, numbers.numerical)
    disagreement = scaled_norm(numbers.error[numbers.comparable])
    left = numbers.analytic - predicted
    return Diagnosis(
        wrt=wrt,
        kind="confined",
        message=(
            f"only {description} {disagree(description)}: {failing} of "
            f"{int(covered.sum())} checked entries there fail, with no common factor; "
            f"{rest_agrees(numbers)}"
        ),
        parameters=slice_parameters(region),
        entries=covered_entries(
            numbers.failing, covered, description, slice_parameters(region)["slices"]
        ),
        fit=scaled_norm(left[numbers.comparable]) / disagreement,
    )


def few_entries(numbers: CheckedNumbers) -> Diagnosis | None:
    """A few failing entries that fill no slice, each clearly wrong: named one by one.

    Each must miss by INFORMATIVE times its noise: a borderline failure of a correct gradient
    (a coin flip at the tolerance) tells no story and stays unexplained."""
    failing = numbers.failing
    count = int(failing.sum())
    checked = int(numbers.comparable.sum())
    if count > MAX_NAMED_ENTRIES or count * 2 > checked:
        return None
    if not np.all(np.abs(numbers.error[failing]) > INFORMATIVE * numbers.noise[failing]):
        return None
    wrt = numbers.wrt
    names = first_entry_names(numbers, failing, most=MAX_NAMED_ENTRIES)
    verb = "disagrees" if count == 1 else "disagree"
    description = f"{count} of {checked_entries(numbers, checked)}"
    if numbers.context.scope == "one-by-one":
        message = f"the wrong entries found: {names} ({description}); {rest_agrees(numbers)}"
    else:
        message = f"only {names} {verb} ({description}); {rest_agrees(numbers)}"
    left = np.where(failing, 0.0, numbers.error)
    disagreement = scaled_norm(numbers.error[numbers.comparable])
    return Diagnosis(
        wrt=wrt,
        kind="confined",
        message=message,
        parameters={"indices": [[int(i) for i in index] for index in np.argwhere(failing)]},
        entries=covered_entries(failing, failing, description),
        fit=scaled_norm(left[numbers.comparable]) / disagreement,
    )
