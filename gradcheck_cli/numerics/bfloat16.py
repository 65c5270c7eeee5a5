"""bfloat16 for numpy, which has no such type: values rounded to it, held as float64.

PyTorch and JAX have bfloat16 (8 significant bits, float32's range of exponents); numpy does
not. A check in bfloat16 holds its floating arrays as float64 numbers that bfloat16 holds
exactly: a framework's adapter makes bfloat16 tensors of them (exactly, no rounding left) and
gives its results back as float64. Rounding here is what PyTorch does to a float64 tensor: to
float32 first, then to the nearest bfloat16, ties to even.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

BFLOAT16 = "bfloat16"

EPS = 2.0**-7
"""The distance from 1 to the next bfloat16: 7 stored bits of fraction."""

LARGEST = float.fromhex("0x1.fep127")
"""The largest finite bfloat16 (3.39e38)."""


def round_to_bfloat16(array: object) -> NDArray[np.float64]:
    """Every entry rounded to the nearest bfloat16 (through float32, as PyTorch converts a
    float64 tensor), as float64; beyond LARGEST it becomes inf, NaN stays NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        single = np.asarray(array, dtype=np.float32)
    bits = np.ascontiguousarray(single).view(np.uint32).astype(np.uint64)
    # Round to nearest, ties to even: add 0x7FFF plus the lowest bit kept, cut 16 bits.
    kept = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) & np.uint64(
        0xFFFF0000
    )
    rounded = kept.astype(np.uint32).view(np.float32).reshape(single.shape)
    return np.asarray(np.where(np.isnan(single), single, rounded), dtype=np.float64)


def holds_bfloat16(array: object) -> bool:
    """Whether every entry is a bfloat16 number (or NaN)."""
    values = np.asarray(array, dtype=np.float64)
    return bool(np.all((round_to_bfloat16(values) == values) | np.isnan(values)))


def storage_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype a check's floating arrays are held in for `dtype`: itself, or float64
    for bfloat16."""
    return np.dtype(np.float64) if dtype == BFLOAT16 else np.dtype(dtype)


def in_dtype(array: object, dtype: str) -> NDArray[Any]:
    """A floating array in the check's `dtype` (bfloat16: rounded to it, held as float64)."""
    if dtype == BFLOAT16:
        return round_to_bfloat16(array)
    with np.errstate(over="ignore"):
        return np.asarray(array, dtype=np.dtype(dtype))
