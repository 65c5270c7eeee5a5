"""BLAS held at one thread while a check runs (threadpoolctl), shared by every check in the
process and given back when the last of them leaves.

Pure stdlib and threadpoolctl: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS (OpenBLAS, MKL, BLIS, OpenMP) at one thread while a check runs, its setting restored
    after (threadpoolctl).

    The built-in models run X and W side by side on our own thread pool, and BLAS's own threads
    busy-wait between calls: on a machine with as many cores as pool threads they fight ours
    (256^3 on 2 cores: 0.17-0.19 s with OpenBLAS at 2 threads, 0.09-0.12 s at 1). A user's
    forward makes many small matrix products, where BLAS threads mostly wait on each other
    (128^3 with the second core busy: over 60 s against 28 s at one thread). And one thread
    makes every evaluation round the same way whatever the machine, so worker processes
    (--jobs) give the same numbers as one process.
    """
    from threadpoolctl import threadpool_limits

    global _blas_holders, _blas_limits
    # One hold for the process, counted: checks on several threads (the API) share it, and
    # the setting comes back when the last of them leaves, not when the first does.
    with _BLAS_LOCK:
        if _blas_holders == 0:
            _blas_limits = threadpool_limits(limits=1, user_api="blas")
        _blas_holders += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_holders -= 1
            if _blas_holders == 0 and _blas_limits is not None:
                _blas_limits.restore_original_limits()
                _blas_limits = None


_BLAS_LOCK = threading.Lock()
_blas_holders = 0
_blas_limits: Any = None
