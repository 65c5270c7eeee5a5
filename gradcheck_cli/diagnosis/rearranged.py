"""The right numbers in the wrong places: analytic = numerical transposed, or read back in
another order (a reshape where a transpose was meant, C vs Fortran order); another input's
numerical gradient (two gradients returned swapped); or numerical moved by a constant index
offset along an axis (an off-by-one in padding, a stride or a slice: `shifted`, in
`shifts.py`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from gradcheck_cli.diagnosis.fitting import FIT_SLACK, CheckedNumbers, FloatArray, pattern_fit
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import checked_entries

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
        description = checked_entries(numbers, count, every=True)
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


def swapped(numbers: CheckedNumbers) -> Diagnosis | None:
    """Analytic = another input's numerical gradient (of the same shape): backward returned
    the two gradients in each other's places."""
    wrt = numbers.wrt
    for name, other in numbers.context.others.items():
        if name == wrt or np.shape(other.numerical) != numbers.shape:
            continue
        partner = np.isfinite(other.numerical) & np.isfinite(other.tolerance) & numbers.comparable
        candidate = np.where(partner, other.numerical, 0.0)
        allowance = np.maximum(numbers.noise, np.where(partner, np.abs(other.tolerance), 0.0))
        fit = pattern_fit(numbers, candidate, allowance, partner)
        if fit is None:
            continue
        description = checked_entries(numbers, int(partner.sum()), every=True)
        flipped = pattern_fit(numbers, -numbers.numerical, numbers.noise, numbers.comparable)
        also = "" if flipped is None else f" (it is also -1 × numerical of {wrt}: or two signs)"
        return Diagnosis(
            wrt=wrt,
            kind="swapped",
            message=(
                f"analytic of {wrt} = numerical of {name} on {description}{also} — the "
                f"gradients of {wrt} and {name} returned in each other's places?"
            ),
            parameters={"with": name},
            entries=covered_entries(numbers.failing, partner, description),
            fit=fit,
        )
    return None


def transposed_in_product(numbers: CheckedNumbers) -> Diagnosis | None:
    """Analytic = numerical with a square input Y in place of Y.T inside a product (or the
    reverse): G Y^-T Y, G Y^-1 Y^T, Y Y^-T G or Y^T Y^-1 G for a 2-D gradient G."""
    if len(numbers.shape) != 2 or not np.all(numbers.comparable):
        return None
    rows, columns = numbers.shape
    for name, values in numbers.context.values.items():
        matrix = np.asarray(values, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
            continue
        if matrix.shape[0] not in (rows, columns) or np.allclose(matrix, matrix.T):
            continue  # no product with the gradient, or Y = Y.T: the .T changes nothing
        for side, mixing in _product_mixings(matrix):
            size = mixing.shape[0]
            if (side == "right" and size != columns) or (side == "left" and size != rows):
                continue
            if not _screen_product(numbers, side, mixing):
                continue
            if side == "right":
                candidate = numbers.numerical @ mixing
                allowance = numbers.noise @ np.abs(mixing)
            else:
                candidate = mixing @ numbers.numerical
                allowance = np.abs(mixing) @ numbers.noise
            allowance = np.maximum(allowance, numbers.noise)
            fit = pattern_fit(numbers, candidate, allowance, numbers.comparable)
            if fit is None:
                continue
            wrt = numbers.wrt
            description = checked_entries(numbers, int(numbers.comparable.sum()), every=True)
            return Diagnosis(
                wrt=wrt,
                kind="transposed",
                message=(
                    f"analytic = numerical with {name} where {name}.T belongs (or the reverse) "
                    f"in a product, on {description} — a missing or extra .T on {name}?"
                ),
                parameters={"input": name, "side": side},
                entries=covered_entries(numbers.failing, numbers.comparable, description),
                fit=fit,
            )
    return None


SCREENED = 8
"""Rows (or columns) of the failures a product candidate is tried on before the full fit."""


def _screen_product(numbers: CheckedNumbers, side: str, mixing: FloatArray) -> bool:
    """The candidate on a few failing rows (columns): cheap, and most candidates stop here."""
    axis = 0 if side == "right" else 1
    lines = np.flatnonzero(numbers.failing.any(axis=1 - axis))[:SCREENED]
    if side == "right":
        candidate = numbers.numerical[lines] @ mixing
        allowance = numbers.noise[lines] @ np.abs(mixing)
        analytic = numbers.analytic[lines]
        noise = numbers.noise[lines]
    else:
        candidate = mixing @ numbers.numerical[:, lines]
        allowance = np.abs(mixing) @ numbers.noise[:, lines]
        analytic = numbers.analytic[:, lines]
        noise = numbers.noise[:, lines]
    return bool(np.all(np.abs(analytic - candidate) <= FIT_SLACK * np.maximum(allowance, noise)))


def _product_mixings(matrix: FloatArray) -> Iterator[tuple[str, FloatArray]]:
    """The maps that turn a product with Y.T into one with Y (and back), from either side."""
    try:
        inverse = np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return
    # The Frobenius condition number bounds the 2-norm one and costs no decomposition.
    if not np.linalg.norm(inverse) * np.linalg.norm(matrix) <= 1e8:
        return
    yield "right", inverse.T @ matrix  # G = A Y^T  ->  A Y = G Y^-T Y
    yield "right", inverse @ matrix.T  # G = A Y    ->  A Y^T = G Y^-1 Y^T
    yield "left", matrix @ inverse.T  # G = Y^T A  ->  Y A = Y Y^-T G
    yield "left", matrix.T @ inverse  # G = Y A    ->  Y^T A = Y^T Y^-1 G


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
