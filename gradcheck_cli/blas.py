"""Hold the BLAS library numpy uses to one thread while our own threads are busy.

A check of a built-in model runs X and W side by side on a thread pool (checks.run_check holds
this around kernels.map_in_parallel), and its matrix products go to OpenBLAS, which starts
threads of its own that busy-wait between calls. On a machine with as many cores as pool
threads they then fight ours for the cores: at 256^3 on 2 cores a full check took 0.17-0.19 s
with OpenBLAS at 2 threads and 0.09-0.12 s at 1.

numpy has no API for this; threadpoolctl does it by calling OpenBLAS's own setter through
ctypes, as this module does for OpenBLAS alone. Where no OpenBLAS is found (Accelerate, MKL, a
platform without /proc) it does nothing: the check is as correct, only slower.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

import numpy

# Symbol names, with the prefixes and suffixes of the builds numpy ships (scipy-openblas,
# 64-bit integers) and of a system OpenBLAS.
_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GETTERS = (
    "scipy_openblas_get_num_threads64_",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)

SetThreads = Callable[[int], None]
GetThreads = Callable[[], int]

_LOCK = threading.Lock()
_holders = 0
_saved = 0


def _loaded_openblas_paths() -> list[str]:
    """Paths of OpenBLAS libraries mapped into this process (Linux), else numpy's bundled one."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    if not paths:
        here = os.path.dirname(numpy.__file__)
        for folder in (here + ".libs", os.path.join(here, ".dylibs")):
            paths += sorted(glob.glob(os.path.join(folder, "*openblas*")))
    return paths


@cache
def _controls() -> tuple[SetThreads, GetThreads] | None:
    """OpenBLAS's (set_num_threads, get_num_threads), or None."""
    for path in _loaded_openblas_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in zip(_SETTERS, _GETTERS, strict=True):
            set_threads = getattr(library, setter, None)
            get_threads = getattr(library, getter, None)
            if set_threads is not None and get_threads is not None:
                set_threads.restype = None
                set_threads.argtypes = [ctypes.c_int]
                get_threads.restype = ctypes.c_int
                get_threads.argtypes = []
                return set_threads, get_threads
    return None


@contextmanager
def single_threaded() -> Iterator[None]:
    """OpenBLAS at one thread inside the block (nested and concurrent uses share one hold);
    its previous setting is restored when the last holder leaves."""
    global _holders, _saved
    controls = _controls()
    if controls is None:
        yield
        return
    set_threads, get_threads = controls
    with _LOCK:
        if _holders == 0:
            _saved = int(get_threads())
            set_threads(1)
        _holders += 1
    try:
        yield
    finally:
        with _LOCK:
            _holders -= 1
            if _holders == 0:
                set_threads(_saved)
