"""What a loaded array may hold, and how a message names the entry that breaks the rule.

Numbers only (bool, integers, floats; complex, strings and objects are refused), finite, and
within the dtype they are loaded as: float64 for floats, int64 for integers, bool for booleans.
A message names the first bad entry by its full index (`entry [1, 0, 2]`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.subject.arrays.files import LoadError, expects

_INT64_MAX = int(np.iinfo(np.int64).max)


def check_dtype(dtype: np.dtype[Any], source: str, option: str) -> None:
    """Refuse, by its dtype alone, an array that does not hold real numbers."""
    if dtype.hasobject:
        raise object_array_refused(source, option)
    if dtype.kind == "c":
        raise LoadError(
            f"{source}: holds complex numbers ({dtype}) ({option} expects real numbers)"
        )
    if dtype.kind not in "biuf":  # bool, signed and unsigned integers, floats
        raise LoadError(f"{source}: holds {dtype} data, not numbers ({expects(option)})")


def object_array_refused(source: str, option: str) -> LoadError:
    return LoadError(
        f"{source}: holds an object array (pickled Python objects); refused, pickles are never "
        f"loaded ({expects(option)})"
    )


def loaded_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """What an array of `dtype` is loaded as: float64, int64 or bool."""
    if dtype.kind == "b":
        return np.dtype(np.bool_)
    if dtype.kind in "iu":
        return np.dtype(np.int64)
    return np.dtype(np.float64)


def in_loaded_dtype(raw: NDArray[Any], source: str, option: str) -> NDArray[Any]:
    """`raw` (of a checked dtype) as `loaded_dtype` gives it, refusing a value that would not
    survive: a non-finite float, a uint64 beyond int64, a long double beyond float64."""
    kind = raw.dtype.kind
    if kind == "b":
        return raw.astype(np.bool_, copy=False)
    if kind in "iu":
        if kind == "u" and raw.dtype.itemsize >= 8:
            position = first_true(raw > _INT64_MAX)
            if position is not None:
                raise LoadError(
                    f"{source}: {_entry_with_value(position, raw[position])} is too large for "
                    f"int64 (largest {_INT64_MAX}) (given to {option})"
                )
        return raw.astype(np.int64, copy=False)
    position = first_true(~np.isfinite(raw))
    if position is not None:
        raise LoadError(
            f"{source}: {_entry(position)} is {non_finite_kind(raw[position])} "
            f"({option} expects finite numbers)"
        )
    if raw.dtype == np.float64:
        return raw
    with np.errstate(over="ignore"):  # only long double can overflow; reported just below
        array = raw.astype(np.float64)
    refuse_overflow(raw, array, source, f"given to {option}")
    return array


def refuse_overflow(
    original: NDArray[Any],
    cast: NDArray[Any],
    source: str,
    context: str,
    *,
    largest: tuple[str, float] | None = None,
) -> None:
    """Raise `LoadError` at the first value that is finite in `original` but inf in `cast`
    (`largest`: the name and largest value of a dtype `cast` only holds the values of)."""
    position = first_true(np.isinf(cast) & np.isfinite(original))
    if position is not None:
        name, top = largest or (str(cast.dtype), np.finfo(cast.dtype).max)
        raise LoadError(
            f"{source}: {_entry_with_value(position, original[position])} overflows "
            f"{name} (largest {top!s}) and would become inf ({context})"
        )


def first_true(mask: NDArray[np.bool_]) -> tuple[int, ...] | None:
    """The index of the first True of `mask` in row-major order, or None when there is none."""
    if not mask.any():
        return None
    flat = int(np.argmax(mask))  # argmax of booleans: the first True
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def non_finite_kind(value: Any) -> str:
    """`NaN`, `inf` or `-inf`, as a message names a non-finite value."""
    if np.isnan(value):
        return "NaN"
    return "inf" if value > 0 else "-inf"


def _entry(index: tuple[int, ...]) -> str:
    """`entry [1, 0, 2]`, or `the value` for the one entry of a 0-D array."""
    return f"entry [{', '.join(str(i) for i in index)}]" if index else "the value"


def _entry_with_value(index: tuple[int, ...], value: Any) -> str:
    # str(), not format(): formatting a long double goes through float and prints inf.
    shown = str(value)
    return f"{_entry(index)} = {shown}" if index else f"the value {shown}"
