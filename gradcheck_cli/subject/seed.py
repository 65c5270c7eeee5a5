"""The seed example: the matrices of the blog post the project grew from.

The same numbers stand in fixtures/seed_X.csv and fixtures/seed_W.csv; a test keeps them equal.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

SEED_SOURCE = "builtin:seed"

_SEED_X = ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), (0.7, 0.8, 0.9))
_SEED_W = ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0))


def seed_matrices() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fresh copies of the seed's X (3, 3) and W (3, 2), as float64."""
    return np.array(_SEED_X, dtype=np.float64), np.array(_SEED_W, dtype=np.float64)
