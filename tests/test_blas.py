"""blas.single_threaded_blas holds BLAS at one thread while a check runs, and gives it back."""

from __future__ import annotations

import ctypes
import importlib
import threading
from collections.abc import Callable

import numpy as np
import pytest
from helpers import xw

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.blas import single_threaded_blas
from gradcheck_cli.numerics.models import builtin_model

SetThreads = Callable[[int], None]
GetThreads = Callable[[], int]

# OpenBLAS's own thread setter and getter, as numpy's bundled build (scipy-openblas, 64-bit
# integers) and a system OpenBLAS name them.
OPENBLAS_CONTROLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


@pytest.fixture
def controls() -> tuple[SetThreads, GetThreads]:
    """OpenBLAS's own set_num_threads and get_num_threads, called directly through ctypes: what
    the tests set and read does not go through single_threaded_blas's machinery (threadpoolctl),
    which only finds the library numpy loaded."""
    # Imported by name: threadpoolctl ships no type information.
    threadpoolctl = importlib.import_module("threadpoolctl")
    for info in threadpoolctl.threadpool_info():
        if info["internal_api"] != "openblas":
            continue
        library = ctypes.CDLL(info["filepath"])
        for setter, getter in OPENBLAS_CONTROLS:
            set_threads = getattr(library, setter, None)
            get_threads = getattr(library, getter, None)
            if set_threads is not None and get_threads is not None:
                set_threads.restype = None
                set_threads.argtypes = [ctypes.c_int]
                get_threads.restype = ctypes.c_int
                get_threads.argtypes = []
                return set_threads, get_threads
    pytest.skip("numpy here uses no OpenBLAS that exposes its thread setter")


def test_held_at_one_thread_inside_and_restored_after(
    controls: tuple[SetThreads, GetThreads],
) -> None:
    set_threads, get_threads = controls
    set_threads(2)
    try:
        with single_threaded_blas():
            assert get_threads() == 1
            with single_threaded_blas():  # nested: still held, not released early
                assert get_threads() == 1
            assert get_threads() == 1
        assert get_threads() == 2
    finally:
        set_threads(2)


def test_concurrent_holders_release_once_the_last_leaves(
    controls: tuple[SetThreads, GetThreads],
) -> None:
    """Checks on several threads share one hold: the first holder (here the main thread, as
    the CLI is) sets one thread, a holder that leaves early does not give BLAS its threads
    back while another still checks, and the last to leave restores the setting."""
    set_threads, get_threads = controls
    set_threads(2)
    inside = threading.Barrier(2)
    seen: list[int] = []

    def hold() -> None:
        with single_threaded_blas():
            inside.wait()
            seen.append(get_threads())
        # The first thread out: the other still holds.
        seen.append(get_threads())

    with single_threaded_blas():
        workers = [threading.Thread(target=hold) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert get_threads() == 1
    assert seen == [1, 1, 1, 1]
    assert get_threads() == 2


def test_run_check_leaves_the_blas_setting_as_it_found_it(
    controls: tuple[SetThreads, GetThreads],
) -> None:
    set_threads, get_threads = controls
    set_threads(2)
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    assert run_check(Target.of(builtin_model("sigmoid-sum"), xw(X, W))).passed
    assert get_threads() == 2


def test_an_error_inside_still_restores(controls: tuple[SetThreads, GetThreads]) -> None:
    set_threads, get_threads = controls
    set_threads(2)
    with pytest.raises(RuntimeError), single_threaded_blas():
        raise RuntimeError("boom")
    assert get_threads() == 2
