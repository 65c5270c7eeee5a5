"""Worker processes for black-box models (--jobs N): the same forward calls, on every core.

A check of a model file is forward calls, one entry at a time, each independent of the others.
The entries are cut into chunks and the chunks evaluated by N worker processes, each of which
imports the model file (or unpickles the API's functions) and binds it to the same inputs. The
inputs are shared, not copied: large arrays live in shared memory that every worker maps
read-only; a worker copies only the input whose entries it moves. Each worker holds BLAS at one
thread, as the parent does while it checks, so every evaluation rounds the same way wherever it
runs: the results are identical for every N.

A worker ignores SIGINT: on Ctrl-C (or SIGTERM) the parent stops them all at once and removes
the shared memory. A worker that dies (os._exit, a crash in C code) is reported as a one-line
error naming the model file.

Pure stdlib and numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.numerics.evaluation import (
    IN_PROCESS,
    ProgressCallback,
    batch_entries,
    registered,
)
from gradcheck_cli.numerics.models import Array, Inputs, Model

SHARED_BYTES = 1 << 16
"""Inputs at least this large go to shared memory; smaller ones travel with the task setup."""

CHUNKS_PER_WORKER = 8
"""Entries are cut into about this many chunks per worker: enough to even out uneven forward
costs, few enough that a chunk's round trip is small next to its forward calls."""

WORTH_SECONDS = 2.0
"""Workers start only when the forward calls would take about this long in one process:
starting and stopping two (a Python, numpy and model import each) took 0.55 s here, so below
twice that they cost more than they save."""


def default_jobs() -> int:
    """The number of cores this process may run on."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class SharedArray:
    """Where a worker finds an input in shared memory."""

    name: str
    shape: tuple[int, ...]
    dtype: str


Rebuild = Callable[[Mapping[str, Array]], tuple[list[Model], Any]]
"""Picklable: binds the model again in a worker, to the given inputs; returns the models and
the counter of the user's forward calls (with an int attribute `forward`)."""


# --- the worker side ---------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _start_worker(rebuild: Rebuild, label: str, arrays: Mapping[str, Any]) -> None:
    """Runs once in each worker: quiet Ctrl-C, BLAS at one thread, user prints to stderr, the
    inputs mapped, the model bound."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent started us with SIGINT blocked (see WorkerPool): ignored now, unblock it.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    with contextlib.suppress(OSError):
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    inputs: dict[str, Array] = {}
    blocks = []
    for name, spec in arrays.items():
        if isinstance(spec, SharedArray):
            block = shared_memory.SharedMemory(name=spec.name)
            blocks.append(block)
            view: NDArray[Any] = np.ndarray(
                spec.shape, dtype=np.dtype(spec.dtype), buffer=block.buf
            )
            view.flags.writeable = False
            inputs[name] = view
        else:
            inputs[name] = spec
    _WORKER.update(inputs=inputs, blocks=blocks, label=label, private={})
    _WORKER["models"], _WORKER["counter"] = rebuild(inputs)


def _work(
    number: int,
    wrt: str,
    flat: NDArray[np.intp],
    shifts: Array,
    f0: float,
    tolerance: float,
    batched: bool,
) -> tuple[Array, NDArray[np.floating], int]:
    inputs: dict[str, Array] = dict(_WORKER["inputs"])
    private: dict[str, Array] = _WORKER["private"]
    if wrt not in private:
        private[wrt] = np.array(inputs[wrt], copy=True)  # the one input this worker moves
    inputs[wrt] = private[wrt]
    model = _WORKER["models"][number]
    counter = _WORKER["counter"]
    before = counter.forward
    probed: set[int] = _WORKER.setdefault("probed", set())
    if number not in probed:
        _same_as_in_the_parent(model, _WORKER["inputs"], f0, tolerance)
        probed.add(number)
    diffs, magnitudes = IN_PROCESS.differences(
        model, inputs, wrt, flat, shifts, f0, None, batched=batched
    )
    return diffs, magnitudes, counter.forward - before


class WorkersDisagree(UserCodeError):
    """A worker process computes f differently from gradcheck's own process at the same inputs:
    the check must not depend on where it ran, so it runs in one process instead."""


def _same_as_in_the_parent(model: Model, inputs: Inputs, f0: float, tolerance: float) -> None:
    """The determinism probe, in this worker: f at the given inputs, twice, as the parent
    computed it (within --nondet-tol; bitwise by default). A forward whose noise or state
    differs between processes (a generator seeded per process id, a cache filled only in the
    parent) would otherwise give verdicts that change with --jobs."""
    label = _WORKER["label"]
    for _ in range(2):
        with np.errstate(all="ignore"):
            value = float(np.real(model.value(inputs)))
        gap = abs(value - f0)
        if not gap <= tolerance:
            raise WorkersDisagree(
                f"{label}: forward is not deterministic across processes: a worker gives "
                f"{value:.10g} at the given inputs, where gradcheck's own process gives "
                f"{f0:.10g} (a difference of {gap:.3g}, more than --nondet-tol {tolerance:g}); "
                "a random number generator seeded per process, or state set up only in the "
                "first process? Seed it, or allow the difference with --nondet-tol"
            )


# --- the parent side ---------------------------------------------------------------------------


class WorkerPool:
    """N worker processes bound to one model and one set of inputs: an evaluation.Evaluator
    for what it `serves`."""

    def __init__(
        self,
        rebuild: Rebuild,
        label: str,
        inputs: Inputs,
        models: Sequence[Model],
        jobs: int,
        on_calls: Callable[[int], None],
        *,
        tolerance: float = 0.0,
    ) -> None:
        self.tolerance = tolerance
        self.label = label
        self.inputs = inputs
        self.numbers = {id(model): k for k, model in enumerate(models)}
        self.jobs = jobs
        self.on_calls = on_calls
        self.blocks: list[shared_memory.SharedMemory] = []
        arrays: dict[str, Any] = {}
        try:
            for name, array in inputs.items():
                array = np.ascontiguousarray(array)
                if array.nbytes >= SHARED_BYTES:
                    block = shared_memory.SharedMemory(create=True, size=array.nbytes)
                    self.blocks.append(block)
                    copy: NDArray[Any] = np.ndarray(
                        array.shape, dtype=array.dtype, buffer=block.buf
                    )
                    copy[...] = array
                    arrays[name] = SharedArray(block.name, array.shape, array.dtype.str)
                else:
                    arrays[name] = array
            # A Ctrl-C reaches the whole process group: the workers start with SIGINT blocked
            # (they inherit the mask) until they ignore it, so none prints a traceback while
            # it imports; the parent handles it and stops them.
            with _main_not_rerun(), _sigint_blocked():
                self.executor = ProcessPoolExecutor(
                    jobs,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(rebuild, label, arrays),
                )
                # Start every worker now, while the main module is hidden (and so that a model
                # that fails to load in a worker fails here, before any timing).
                for started in [self.executor.submit(os.getpid) for _ in range(jobs)]:
                    started.result()
        except BrokenProcessPool:
            self._stop_workers()
            self._release()
            raise UserCodeError(
                f"{label}: a worker process could not load the model; run with --jobs 1 to see "
                "why in this process"
            ) from None
        except BaseException:
            # Interrupted while starting: no worker may go on to map shared memory that is
            # about to be removed.
            self._stop_workers()
            self._release()
            raise

    def serves(self, model: Model, inputs: Inputs) -> bool:
        return inputs is self.inputs and id(model) in self.numbers

    def differences(
        self,
        model: Model,
        inputs: Inputs,
        wrt: str,
        flat_indices: NDArray[np.intp],
        shifts: Array,
        f0: float,
        progress: ProgressCallback | None,
        batched: bool = False,
    ) -> tuple[Array, NDArray[np.floating]]:
        """f(x + shift e) - f0 for every entry and shift, on the workers, in order; and |f| at
        its largest per entry. `inputs` are those the pool started with: the workers evaluate
        their own copy of them (in batches where `batched` allows)."""
        if not self.serves(model, inputs):
            raise ValueError("this worker pool evaluates other inputs or another model")
        number = self.numbers[id(model)]
        count = flat_indices.size
        size = max(1, -(-count // (self.jobs * CHUNKS_PER_WORKER)))
        if batched:  # whole batches, the same ones as in one process (results identical for any N)
            whole = batch_entries(inputs[wrt], shifts.shape[1])
            size = -(-size // whole) * whole
        starts = list(range(0, count, size))
        futures: list[Future[tuple[Array, NDArray[np.floating], int]]] = [
            self.executor.submit(
                _work,
                number,
                wrt,
                flat_indices[s : s + size],
                shifts[s : s + size],
                f0,
                self.tolerance,
                batched,
            )
            for s in starts
        ]
        diffs = np.empty(shifts.shape, dtype=np.result_type(np.asarray(f0), shifts))
        magnitudes = np.empty(count, dtype=np.float64)
        try:
            for start, future in zip(starts, futures, strict=True):
                part, sizes, calls = future.result()
                diffs[start : start + size] = part
                magnitudes[start : start + size] = sizes
                self.on_calls(calls)
                if progress is not None:
                    progress(part.shape[0])
        except BrokenProcessPool:
            raise UserCodeError(
                f"{self.label}: a worker process running the model died (a crash in C code, "
                "os._exit or a signal in the model's code); run with --jobs 1 to see it in "
                "this process"
            ) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return diffs, magnitudes

    def close(self, *, kill: bool = False) -> None:
        """Stop the workers (at once with kill: Ctrl-C) and free the shared memory."""
        if kill:
            self._stop_workers()
        else:
            self.executor.shutdown(wait=True, cancel_futures=True)
        self._release()

    def _stop_workers(self) -> None:
        executor = getattr(self, "executor", None)
        if executor is None:
            return
        # ProcessPoolExecutor has no way to stop running workers before Python 3.14. Its
        # manager thread marks pending work failed once they die; futures already cancelled
        # make it raise (a traceback on stderr): nothing pending is wanted any more.
        pending = getattr(executor, "_pending_work_items", None)
        if isinstance(pending, dict):
            pending.clear()
        for process in list(getattr(executor, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
        executor.shutdown(wait=True, cancel_futures=True)

    def _release(self) -> None:
        for block in self.blocks:
            with contextlib.suppress(Exception):
                block.close()
            with contextlib.suppress(Exception):
                block.unlink()
        self.blocks = []


@dataclass(frozen=True)
class Parallel:
    """What a check needs to run a black-box model on worker processes."""

    rebuild: Rebuild
    label: str
    """How messages name the model (its file)."""
    jobs: int
    counter: Any
    """The parent's forward-call counter, which the workers' calls are added to."""


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while workers are forked off (POSIX; else nothing)."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """A spawned worker runs the parent's main script again, unless it has no file: the
    gradcheck command guards its entry point, a user's script calling the API may not. The
    workers need nothing from it (functions defined there are not sent to workers)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def picklable(value: object) -> bool:
    """Whether a worker can receive it: it pickles, and without anything from __main__ (which
    a worker does not run)."""
    try:
        data = pickle.dumps(value)
    except Exception:
        return False
    return b"__main__" not in data


@contextlib.contextmanager
def running(
    parallel: Parallel | None,
    inputs: Inputs,
    models: Sequence[Model],
    *,
    estimated_seconds: float,
    tolerance: float = 0.0,
) -> Iterator[int]:
    """Workers for the black-box evaluations inside the block, when there are jobs to share
    and enough work to pay for starting them; yields how many processes evaluate."""
    if (
        parallel is None
        or parallel.jobs <= 1
        or estimated_seconds < WORTH_SECONDS
        or not picklable(parallel.rebuild)
    ):
        yield 1
        return

    def count(calls: int) -> None:
        parallel.counter.forward += calls

    pool = WorkerPool(
        parallel.rebuild, parallel.label, inputs, models, parallel.jobs, count, tolerance=tolerance
    )
    stopped = False
    try:
        # Every black-box evaluation of these models at these inputs goes to the pool.
        with registered(pool):
            yield parallel.jobs
    except BaseException:
        stopped = True
        raise
    finally:
        pool.close(kill=stopped)
