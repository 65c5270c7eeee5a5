"""A black-box model evaluated at shifted entries: f(x + shift e) - f(x), one forward pass per
entry and shift, the only way to difference a model whose terms we cannot see.

An `Evaluator` is whatever runs those forward passes. `InProcess` runs them here, one after
another; worker processes (workers.WorkerPool) are another, which registers itself while it
runs (`registered`) and is found by the model and inputs it serves (`evaluator_for`). Each
worker evaluates its share with `IN_PROCESS`: workers.py imports this module, never the other
way round.

A model that evaluates many points in one call (models.BatchedModel: a PyTorch or JAX function
under vmap) is evaluated batch by batch where the caller allows it (`batched`: the first pass
over every entry, whose unsettled entries are all evaluated again one at a time before any
verdict, so that no entry fails on a batch's numbers alone). A batched computation need not
round as one call at a time does (a matrix product over a stack is blocked differently), so a
batch gives differences from the unmoved point computed in the same batch, by the same
operations as the moved ones (as one call at a time takes them from f0); and every batch is
checked against one-at-a-time evaluation at one of its entries. Where the two differ by
more than rounding, the batch is evaluated one at a time; where they differ less, the gap seen
(times `PATH_SAFETY`) is counted into the round-off of every value of that batch, through the
size of f the error budget scales with. Where they agree bitwise, nothing changes.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.numerics.models import Array, BatchedModel, Inputs, Model, batching
from gradcheck_cli.numerics.schemes import FloatArray

ProgressCallback = Callable[[float], None]
"""Called with the number of entries just finished."""

BATCH_BYTES = 1 << 25
"""A batched call holds this many bytes of moved copies of the input at most (32 MiB)."""

MOST_POINTS = 2048
"""...and evaluates at most this many points: enough to bury the per-call overhead (tens of
microseconds in PyTorch and JAX), few enough that progress is reported as it goes."""

TRIAL_POINTS = 512
"""A batch this large shows what a point costs in batches (its fixed cost spread thin)."""

AGREEMENT_ULPS = 64.0
"""A batch is used when it agrees with one-at-a-time evaluation within this many units in the
last place of f (eps |f|; a contraction <forward, v> that cancels rounds in units of its terms,
tens of times larger): the rounding of another order of the same operations. More than that is
not rounding: the batch is set aside and evaluated one at a time."""

REFUSALS = 2
"""Batches set aside before the rest of a request goes one at a time without trying."""

PATH_SAFETY = 4.0
"""The gap seen at one entry of a batch, times this, is the round-off counted for every value
of the batch: the gaps of the other entries come from the same operations on the same sizes."""


class Evaluator(Protocol):
    """What evaluates f(x + shift e_k) - f0 for these entries and shifts."""

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
    ) -> tuple[Array, FloatArray]:
        """f at `inputs` with entry flat_indices[b] of inputs[wrt] moved by shifts[b, k], minus
        f0, for every entry b and shift k (the shape of `shifts`); and |f| at its largest over
        each entry's evaluations, at least |f0| (the size their round-off scales with).
        `batched`: the caller takes values from batches where the model offers them (a first
        pass whose every unsettled entry is evaluated again without)."""
        ...


class BoundEvaluator(Evaluator, Protocol):
    """An evaluator bound to some models at one set of inputs (worker processes that loaded
    them): it evaluates only what it `serves`."""

    def serves(self, model: Model, inputs: Inputs) -> bool: ...


class InProcess:
    """Forward passes in this process: in batches where the model evaluates many points in
    one call (`BatchedModel`), else one after another.

    The entry is moved in place in the input itself (the check's own copy), or in one working
    copy when the input cannot be written or the shifts are complex, and put back exactly after
    each entry: a call costs the user's forward and nothing that grows with the inputs.
    """

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
    ) -> tuple[Array, FloatArray]:
        batches = batching(model) if batched else None
        if batches is not None and flat_indices.size and not np.iscomplexobj(shifts):
            return self._in_batches(model, batches, inputs, wrt, flat_indices, shifts, f0, progress)
        return self.one_at_a_time(model, inputs, wrt, flat_indices, shifts, f0, progress)

    def _in_batches(
        self,
        model: Model,
        batched: BatchedModel,
        inputs: Inputs,
        wrt: str,
        flat_indices: NDArray[np.intp],
        shifts: Array,
        f0: float,
        progress: ProgressCallback | None,
    ) -> tuple[Array, FloatArray]:
        """Batch by batch (see the module docstring), each checked at its first entry against
        one-at-a-time evaluation. A batch the model cannot evaluate, or that disagrees, is
        evaluated one at a time; after `REFUSALS` of them, so is everything left."""
        count, per_entry = shifts.shape
        original = np.asarray(inputs[wrt])
        eps = float(np.finfo(original.dtype).eps)
        size = batch_entries(original, per_entry)
        diffs = np.empty(shifts.shape, dtype=np.result_type(np.asarray(f0), shifts))
        largest = np.empty(count, dtype=np.float64)
        one = self.one_at_a_time
        refused = 0
        for start in range(0, count, size):
            part = slice(start, min(count, start + size))
            got = None
            if refused < REFUSALS:
                with np.errstate(all="ignore"):
                    got = batched.differences_at_shifts(
                        inputs, wrt, flat_indices[part], shifts[part]
                    )
                if got is None or np.shape(got[0]) != shifts[part].shape:
                    got = None
                    refused = REFUSALS  # the model does not batch these: no more attempts
            if got is None:
                diffs[part], largest[part] = one(
                    model, inputs, wrt, flat_indices[part], shifts[part], f0, progress
                )
                continue
            moved = np.asarray(got[0], dtype=diffs.dtype)
            seen = np.fmax(np.asarray(got[1], dtype=np.float64), abs(f0))
            head = slice(start, start + 1)
            probe, probe_size = one(model, inputs, wrt, flat_indices[head], shifts[head], f0, None)
            with np.errstate(all="ignore"):
                gap = float(np.max(np.abs(moved[0] - probe[0])))
            if not gap <= AGREEMENT_ULPS * eps * max(float(probe_size[0]), float(seen[0])):
                refused += 1
                diffs[head], largest[head] = probe, probe_size
                rest = slice(start + 1, part.stop)
                diffs[rest], largest[rest] = one(
                    model, inputs, wrt, flat_indices[rest], shifts[rest], f0, None
                )
            else:
                diffs[part] = moved
                diffs[head] = probe  # the probed entry: exactly one-at-a-time
                largest[part] = np.maximum(seen, PATH_SAFETY * gap / eps)
                largest[head] = np.maximum(probe_size, largest[start])
            if progress is not None:
                progress(part.stop - part.start)
        return diffs, largest

    def one_at_a_time(
        self,
        model: Model,
        inputs: Inputs,
        wrt: str,
        flat_indices: NDArray[np.intp],
        shifts: Array,
        f0: float,
        progress: ProgressCallback | None,
    ) -> tuple[Array, FloatArray]:
        """One forward pass per entry and shift."""
        original = np.asarray(inputs[wrt])
        working = np.result_type(original, shifts)
        in_place = (
            original.flags.writeable and original.flags.c_contiguous and working == original.dtype
        )
        # In place when we may; else one C-ordered copy, so that its flat view writes through.
        work = original if in_place else np.array(original, dtype=working, order="C", copy=True)
        flat_work = work.reshape(-1)
        moved = dict(inputs)
        moved[wrt] = work
        # The hot loop, a few microseconds around each forward call: in float64, plain Python
        # floats (the same IEEE arithmetic as numpy's float64 scalars, without their overhead);
        # other dtypes keep numpy scalars, so that x + h rounds in the input's own precision.
        plain = work.dtype == np.float64
        shift_rows: Any = shifts.tolist() if plain else shifts
        values = np.empty(shifts.shape, dtype=np.result_type(np.asarray(f0), shifts))
        largest = [abs(float(f0))] * int(flat_indices.size)
        with np.errstate(all="ignore"):  # a user's forward may overflow at a shifted point
            for b, index in enumerate(flat_indices.tolist()):
                start = float(flat_work[index]) if plain else flat_work[index]
                row = shift_rows[b]
                try:
                    for k in range(shifts.shape[1]):
                        flat_work[index] = start + row[k]
                        value = model.value(moved)
                        values[b, k] = value
                        size = abs(value.real)
                        if size > largest[b]:
                            largest[b] = size
                finally:
                    flat_work[index] = start  # exactly as it was, whatever happened
                if progress is not None:
                    progress(1)
        return values - f0, np.asarray(largest, dtype=np.float64)


def batch_entries(original: Array, per_entry: int) -> int:
    """The entries of one batch: as many as MOST_POINTS and BATCH_BYTES allow, less one point
    for the unmoved one. Worker processes cut their shares at multiples of it, so that every
    batch holds the same entries whatever the number of processes."""
    points = max(1, min(MOST_POINTS, BATCH_BYTES // max(1, np.asarray(original).nbytes)))
    return max(1, points // per_entry - 1)


IN_PROCESS = InProcess()

_REGISTERED: list[BoundEvaluator] = []
"""The evaluators running now (worker pools), newest last."""


@contextlib.contextmanager
def registered(evaluator: BoundEvaluator) -> Iterator[None]:
    """Inside the block, the black-box evaluations of what `evaluator` serves go to it."""
    _REGISTERED.append(evaluator)
    try:
        yield
    finally:
        _REGISTERED.remove(evaluator)


def evaluator_for(model: Model, inputs: Inputs) -> Evaluator:
    """The registered evaluator that serves this model at these inputs, else this process."""
    for evaluator in _REGISTERED:
        if evaluator.serves(model, inputs):
            return evaluator
    return IN_PROCESS


def black_box_differences(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat_indices: NDArray[np.intp],
    shifts: Array,
    f0: float,
    progress: ProgressCallback | None,
    *,
    known: Mapping[int, Array] | None = None,
    batched: bool = False,
) -> tuple[Array, FloatArray, FloatArray]:
    """Whole forward passes, one per entry and shift: the only path for user models.

    Columns of `shifts` whose differences are `known` are not evaluated again; the others go to
    the evaluator for this model and inputs (`evaluator_for`: worker processes when they run),
    in batches where `batched` allows it (see the module docstring).

    Returns the differences, |f| at its largest, and zeros for the size of the derivative's
    terms: a black box does not show its terms.
    """
    known = known or {}
    diffs = np.empty(shifts.shape, dtype=np.result_type(np.asarray(f0), shifts))
    for k, column in known.items():
        diffs[:, k] = column
    todo = [k for k in range(shifts.shape[1]) if k not in known]
    magnitudes = np.full(flat_indices.shape, abs(f0), dtype=np.float64)
    no_terms = np.zeros(flat_indices.shape, dtype=np.float64)
    if not todo or not flat_indices.size:
        return diffs, magnitudes, no_terms
    evaluator = evaluator_for(model, inputs)
    values, sizes = evaluator.differences(
        model,
        inputs,
        wrt,
        flat_indices,
        np.ascontiguousarray(shifts[:, todo]),
        f0,
        progress,
        batched=batched,
    )
    diffs[:, todo] = values
    return diffs, np.maximum(magnitudes, sizes), no_terms


def seconds_per_batched_value(model: Model, inputs: Inputs, wrt: str) -> float | None:
    """What one evaluation of f costs in batches: the time per point of a batch as large as a
    check's (up to TRIAL_POINTS), the second of two, so that a compilation on the first does
    not count; None when the model does not evaluate batches. Whether worker processes would
    pay for their start depends on it."""
    batches = batching(model)
    if batches is None:
        return None
    original = np.asarray(inputs[wrt])
    points = max(2, min(TRIAL_POINTS, BATCH_BYTES // max(1, original.nbytes)))
    flat = np.arange(min(points // 2, original.size), dtype=np.intp)
    per_point = None
    for trial in range(2):
        # Steps no check takes, a new one each time: nothing a model keeps answers them.
        shifts = np.full((flat.size, 2), 2.0 ** (-40 - trial), dtype=original.dtype)
        started = time.perf_counter()
        with np.errstate(all="ignore"):
            got = batches.differences_at_shifts(inputs, wrt, flat, shifts)
        if got is None:
            return None
        per_point = (time.perf_counter() - started) / shifts.size
    return per_point
