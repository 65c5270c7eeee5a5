"""Something added to the gradient: analytic - numerical = a multiple of the input itself (a
regulariser's factor off), one constant, or one constant per row, column or channel, possibly
plus a multiple of the input there (a batch statistic's term dropped: the gradient through a
mean or a variance over the batch is one number per column, times (x - mean) for a variance)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck_cli.diagnosis.fitting import (
    BoolArray,
    CheckedNumbers,
    FloatArray,
    least_squares_factor,
    noise_weights,
    pattern_fit,
    weighted_ratio,
)
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import checked_entries, format_number

MIN_GROUP = 3
"""Entries per row (column, channel) for a constant fitted to each: with fewer, a constant per
group would explain any error at all."""


def input_proportional(numbers: CheckedNumbers) -> Diagnosis | None:
    """analytic - numerical = c × the input's values, on every checked entry."""
    values = numbers.values
    if values is None or int(numbers.failing.sum()) < 2 or not np.all(np.isfinite(values)):
        return None
    everything = numbers.comparable
    weights = noise_weights(numbers, everything)
    factor = least_squares_factor(weights, numbers.error, values)
    if factor is None:
        return None
    predicted = numbers.numerical + factor * values
    fit = pattern_fit(numbers, predicted, numbers.noise, everything)
    if fit is None:
        return None
    wrt = numbers.wrt
    description = checked_entries(numbers, int(everything.sum()), every=True)
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
    description = checked_entries(numbers, int(everything.sum()), every=True)
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


def offset_per_slice(numbers: CheckedNumbers) -> Diagnosis | None:
    """analytic - numerical = one constant per index along one axis (per column of a batch,
    per channel of an image batch), or that plus a multiple of the input per index."""
    shape = numbers.shape
    if len(shape) < 2 or int(numbers.failing.sum()) < 2:
        return None
    for with_input in (False, True):
        if with_input and (numbers.values is None or not np.all(np.isfinite(numbers.values))):
            continue
        for axis in _axes_by_preference(shape):
            found = _fit_per_slice(numbers, axis, with_input=with_input)
            if found is not None:
                return found
    return None


def _axes_by_preference(shape: tuple[int, ...]) -> list[int]:
    """The axis the offsets vary along: columns (the last) and channels (1) first, the batch's
    own axis (0, one constant per example) last."""
    order = [len(shape) - 1, 1, *range(2, len(shape) - 1), 0]
    return [axis for axis in dict.fromkeys(order) if shape[axis] > 1 or len(shape) == 2]


def _fit_per_slice(numbers: CheckedNumbers, axis: int, *, with_input: bool) -> Diagnosis | None:
    comparable = numbers.comparable
    moved_comparable = np.moveaxis(comparable, axis, 0).reshape(numbers.shape[axis], -1)
    per_group = moved_comparable.sum(axis=1)
    needed = MIN_GROUP + (1 if with_input else 0)
    if np.any((per_group > 0) & (per_group < needed)):
        return None
    weights = np.moveaxis(noise_weights(numbers, comparable), axis, 0).reshape(per_group.size, -1)
    error = np.moveaxis(numbers.error, axis, 0).reshape(per_group.size, -1)
    if with_input:
        assert numbers.values is not None
        x = np.moveaxis(numbers.values, axis, 0).reshape(per_group.size, -1)
        fitted = _affine_per_row(weights, x, error)
        if fitted is None:
            return None
        offsets, slopes = fitted
        shift = offsets[:, None] + slopes[:, None] * x
    else:
        total = weights.sum(axis=1)
        offsets = np.where(total > 0, (weights * error).sum(axis=1) / np.maximum(total, 1e-300), 0)
        slopes = None
        shift = np.broadcast_to(offsets[:, None], error.shape)
    predicted = numbers.numerical + _back(shift, numbers.shape, axis)
    fit = pattern_fit(numbers, predicted, numbers.noise, comparable)
    if fit is None:
        return None
    return _slice_offset_diagnosis(numbers, axis, offsets, slopes, fit)


def _affine_per_row(
    weights: FloatArray, x: FloatArray, error: FloatArray
) -> tuple[FloatArray, FloatArray] | None:
    """Weighted least squares error ≈ c + d x on each row; None when a row cannot tell d."""
    total = weights.sum(axis=1)
    if np.any(total <= 0):
        return None
    mean_x = (weights * x).sum(axis=1) / total
    mean_e = (weights * error).sum(axis=1) / total
    centred = x - mean_x[:, None]
    spread = (weights * centred**2).sum(axis=1)
    if np.any(spread <= 1e-12 * np.maximum((weights * x**2).sum(axis=1), 1e-300)):
        return None
    slopes = (weights * centred * (error - mean_e[:, None])).sum(axis=1) / spread
    return mean_e - slopes * mean_x, slopes


def _back(grouped: Any, shape: tuple[int, ...], axis: int) -> FloatArray:
    """A (groups, rest) array back in the input's shape."""
    moved = tuple([shape[axis], *(n for k, n in enumerate(shape) if k != axis)])
    return np.moveaxis(np.asarray(grouped).reshape(moved), 0, axis)


def _group_name(shape: tuple[int, ...], axis: int) -> tuple[str, str]:
    """ "column", "row" for a matrix; "channel" for axis 1 of an image batch; else the axis."""
    if len(shape) == 2:
        return ("column", "columns") if axis == 1 else ("row", "rows")
    if axis == 1 and len(shape) >= 3:
        return ("channel (axis 1)", "channels")
    return (f"index of axis {axis}", f"indices of axis {axis}")


def _slice_offset_diagnosis(
    numbers: CheckedNumbers,
    axis: int,
    offsets: FloatArray,
    slopes: FloatArray | None,
    fit: float,
) -> Diagnosis:
    wrt = numbers.wrt
    everything: BoolArray = numbers.comparable
    description = checked_entries(numbers, int(everything.sum()), every=True)
    one, many = _group_name(numbers.shape, axis)
    low, high = float(offsets.min()), float(offsets.max())
    spread = f"from {format_number(low)} to {format_number(high)}"
    parameters: dict[str, Any] = {
        "axis": axis,
        "per": one.split(" ")[0],
        "offsets": [float(v) for v in offsets],
    }
    if slopes is None:
        message = (
            f"analytic - numerical is one constant per {one} of {wrt} ({numbers.shape[axis]} "
            f"{many}, {spread}) on {description} — a dropped mean term (the gradient through "
            "a mean over the batch)?"
        )
    else:
        parameters["slopes"] = [float(v) for v in slopes]
        message = (
            f"analytic - numerical = c + d × {wrt} with one c and d per {one} of {wrt} "
            f"(c {spread}) on {description} — a dropped mean or variance term (the gradient "
            "through a batch statistic)?"
        )
    return Diagnosis(
        wrt=wrt,
        kind="offset",
        message=message,
        parameters=parameters,
        entries=covered_entries(numbers.failing, everything, description),
        fit=fit,
    )
