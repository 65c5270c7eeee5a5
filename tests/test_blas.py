"""blas.single_threaded holds OpenBLAS at one thread while the pool runs, and gives it back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gradcheck_cli import blas
from gradcheck_cli.checks import run_check
from gradcheck_cli.models import builtin_model


@pytest.fixture
def controls() -> tuple[blas.SetThreads, blas.GetThreads]:
    found = blas._controls()
    if found is None:
        pytest.skip("numpy here uses no OpenBLAS that exposes its thread setter")
    return found


def test_held_at_one_thread_inside_and_restored_after(
    controls: tuple[blas.SetThreads, blas.GetThreads],
) -> None:
    set_threads, get_threads = controls
    set_threads(2)
    try:
        with blas.single_threaded():
            assert get_threads() == 1
            with blas.single_threaded():  # nested: still held, not released early
                assert get_threads() == 1
            assert get_threads() == 1
        assert get_threads() == 2
    finally:
        set_threads(2)


def test_concurrent_holders_release_once_the_last_leaves(
    controls: tuple[blas.SetThreads, blas.GetThreads],
) -> None:
    set_threads, get_threads = controls
    set_threads(2)
    inside = threading.Barrier(2)
    seen: list[int] = []

    def hold() -> None:
        with blas.single_threaded():
            inside.wait()
            seen.append(get_threads())
            inside.wait()

    workers = [threading.Thread(target=hold) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert seen == [1, 1]
    assert get_threads() == 2


def test_run_check_leaves_the_blas_setting_as_it_found_it(
    controls: tuple[blas.SetThreads, blas.GetThreads],
) -> None:
    set_threads, get_threads = controls
    set_threads(2)
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    assert run_check(builtin_model("sigmoid-sum"), X, W).passed
    assert get_threads() == 2


def test_an_error_inside_still_restores(controls: tuple[blas.SetThreads, blas.GetThreads]) -> None:
    set_threads, get_threads = controls
    set_threads(2)
    with pytest.raises(RuntimeError), blas.single_threaded():
        raise RuntimeError("boom")
    assert get_threads() == 2
