"""`shifted`: the analytic gradient is the numerical one moved by a constant index offset along
one or two axes, analytic[i] = numerical[i + s] (an off-by-one in a convolution's padding, a
stride or a slice: `dx_pad[:, :, 0:H]` where `1:H+1` was meant, an embedding's ids off by one).

Entries whose partner i + s falls outside the array (the edge band) hold what the bug put there
(a padding's gradient): they are free. The pattern must explain the rest, which must be most of
the input, with numbers that tell (a shift of a zero gradient proves nothing).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from gradcheck_cli.diagnosis.fitting import (
    FIT_SLACK,
    INFORMATIVE,
    CheckedNumbers,
    FloatArray,
    pattern_fit,
)
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import checked_entries, entry_name

SHIFTS = (1, -1, 2, -2)
"""Off by one or two: what padding, strides and slices get wrong."""

MIN_LENGTH = 3
"""An axis shorter than this has no interior to shift within."""

SAMPLE = 32
"""Candidates are screened on this many failing entries before the full fit."""


def shifted(numbers: CheckedNumbers) -> Diagnosis | None:
    """analytic[i] = numerical[i + s] on every checked entry whose partner is inside the array."""
    failing = numbers.failing
    if int(failing.sum()) < 2 or numbers.numerical.size < 4:
        return None
    numerical = np.where(numbers.comparable, numbers.numerical, np.nan)
    noise = np.where(numbers.comparable, numbers.noise, np.nan)
    sample = _screening_sample(numbers)
    for offsets in _candidates(numbers.shape):
        if not _screen(numbers, sample, offsets):
            continue
        moved, inside = _moved(numerical, offsets)
        moved_noise, _ = _moved(noise, offsets)
        partner = inside & np.isfinite(moved) & numbers.comparable
        edge = ~inside & numbers.comparable
        inner_failures = int((partner & failing).sum())
        if int(partner.sum()) < int(edge.sum()) or inner_failures < 2:
            continue
        if inner_failures < int((edge & failing).sum()):
            continue  # mostly the edge is wrong: a border bug, not a shift
        clear = np.abs(np.where(partner, moved, 0.0)) > INFORMATIVE * numbers.noise
        informative = partner & clear
        if int((informative & failing).sum()) < 2:
            continue
        # The edge band is free: predicted = analytic there.
        candidate = np.where(partner, moved, numbers.analytic)
        allowance = np.maximum(numbers.noise, np.where(partner, moved_noise, 0.0))
        fit = pattern_fit(numbers, candidate, allowance, partner | edge)
        if fit is None:
            continue
        return _diagnosis(numbers, offsets, partner, fit)
    return None


def _candidates(shape: tuple[int, ...]) -> Iterator[dict[int, int]]:
    """{axis: shift} for one axis, then for two (padding is off on both sides of an image)."""
    axes = [axis for axis, length in enumerate(shape) if length >= MIN_LENGTH]
    for axis in axes:
        for shift in SHIFTS:
            yield {axis: shift}
    for first, second in itertools.combinations(axes, 2):
        for one, two in itertools.product(SHIFTS, SHIFTS):
            yield {first: one, second: two}


def _moved(array: FloatArray, offsets: dict[int, int]) -> tuple[FloatArray, np.ndarray]:
    """moved[i] = array[i + s] where i + s is inside the array (NaN elsewhere), and where."""
    moved = np.full(array.shape, np.nan)
    inside = np.zeros(array.shape, dtype=bool)
    target = [slice(None)] * array.ndim
    source = [slice(None)] * array.ndim
    for axis, shift in offsets.items():
        length = array.shape[axis]
        if shift >= 0:
            target[axis], source[axis] = slice(0, length - shift), slice(shift, length)
        else:
            target[axis], source[axis] = slice(-shift, length), slice(0, length + shift)
    moved[tuple(target)] = array[tuple(source)]
    inside[tuple(target)] = True
    return moved, inside


def _screening_sample(numbers: CheckedNumbers) -> np.ndarray:
    """A few of the worst failing entries, as index tuples (rows of an (k, ndim) array)."""
    where = np.argwhere(numbers.failing)
    if len(where) <= SAMPLE:
        return where
    badness = np.abs(numbers.error[numbers.failing]) / numbers.noise[numbers.failing]
    return where[np.argsort(-badness, kind="stable")[:SAMPLE]]


def _screen(numbers: CheckedNumbers, sample: np.ndarray, offsets: dict[int, int]) -> bool:
    """Cheap test on the sample: every failing entry whose partner is inside must match it."""
    partners = sample.copy()
    for axis, shift in offsets.items():
        partners[:, axis] += shift
    shape = np.asarray(numbers.shape)
    inside = np.all((partners >= 0) & (partners < shape), axis=1)
    if int(inside.sum()) < min(2, len(sample)):
        return False
    mine = tuple(sample[inside].T)
    theirs = tuple(partners[inside].T)
    if not np.all(numbers.comparable[theirs]):
        return False
    residual = np.abs(numbers.analytic[mine] - numbers.numerical[theirs])
    allowance = np.maximum(numbers.noise[mine], numbers.noise[theirs])
    return bool(np.all(residual <= FIT_SLACK * allowance))


def _diagnosis(
    numbers: CheckedNumbers, offsets: dict[int, int], partner: np.ndarray, fit: float
) -> Diagnosis:
    wrt = numbers.wrt
    ratio = np.where(numbers.failing & partner, np.abs(numbers.error) / numbers.noise, -np.inf)
    example = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), numbers.shape))
    source = list(example)
    for axis, shift in offsets.items():
        source[axis] += shift
    moves = " and ".join(
        f"{'+' if shift > 0 else ''}{shift} along axis {axis}"
        for axis, shift in sorted(offsets.items())
    )
    description = checked_entries(numbers, int(partner.sum()))
    return Diagnosis(
        wrt=wrt,
        kind="shifted",
        message=(
            f"analytic is numerical moved by {moves} (analytic at {entry_name(wrt, example)} = "
            f"numerical at {entry_name(wrt, source)}) on {description} with a partner inside "
            f"{wrt} — an off-by-one in padding, a stride or a slice?"
        ),
        parameters={
            "axes": sorted(offsets),
            "shifts": [offsets[axis] for axis in sorted(offsets)],
        },
        entries=covered_entries(numbers.failing, partner, description),
        fit=fit,
    )
