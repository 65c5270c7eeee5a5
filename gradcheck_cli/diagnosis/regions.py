"""Failures that lie in a few rows, columns or slices: finding that region, and `confined`, the
pattern for failures that fill it with no common factor (`factors.factor_on_region` tries a
factor there first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_cli.diagnosis.fitting import BoolArray, CheckedNumbers, scaled_norm
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import describe_region, runs

DENSITY = 0.6
"""Failures are confined to named slices when they fill at least 60% of the checked entries of
those slices (some entries of a wrong slice pass where their true gradient is ~0)."""

MAX_RUNS = 3
"""At most three runs of consecutive indices per axis make a region worth naming."""


@dataclass(frozen=True, eq=False)
class Region:
    """Failures confined to some indices along some axes (the others whole)."""

    slices: tuple[tuple[int, tuple[int, ...]], ...]
    mask: BoolArray


def find_region(numbers: CheckedNumbers) -> Region | None:
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
        if length > 1 and len(present) <= length / 2 and len(runs(present)) <= MAX_RUNS:
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
            f"only {description} disagrees: {failing} of {int(covered.sum())} checked entries "
            f"there fail, with no common factor; the rest of {wrt} agrees"
        ),
        parameters=slice_parameters(region),
        entries=covered_entries(
            numbers.failing, covered, description, slice_parameters(region)["slices"]
        ),
        fit=scaled_norm(left[numbers.comparable]) / disagreement,
    )
