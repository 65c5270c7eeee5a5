"""The right numbers in the wrong places: analytic = numerical transposed, or read back in
another order (a reshape where a transpose was meant, C vs Fortran order)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from gradcheck_cli.diagnosis.fitting import CheckedNumbers, FloatArray, pattern_fit
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries

MAX_PERMUTED_NDIM = 4
"""Up to 4-D every axis order is tried for `transposed`; beyond, the reversal and the swap of
the last two axes (the mistakes people make) keep the number of candidates small."""


def transposed(numbers: CheckedNumbers) -> Diagnosis | None:
    """Analytic = numerical with its axes in another order (then reshaped, if need be)."""
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
        fit = pattern_fit(numbers, candidate, allowance, numbers.comparable & partner)
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
            entries=covered_entries(numbers.failing, numbers.comparable & partner, description),
            fit=fit,
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
