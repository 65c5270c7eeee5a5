"""A black-box model evaluated at shifted entries: f(x + shift e) - f(x), one forward pass per
entry and shift, the only way to difference a model whose terms we cannot see.

An `Evaluator` is whatever runs those forward passes. `InProcess` runs them here, one after
another; worker processes (workers.WorkerPool) are another, which registers itself while it
runs (`registered`) and is found by the model and inputs it serves (`evaluator_for`). Each
worker evaluates its share with `IN_PROCESS`: workers.py imports this module, never the other
way round.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.numerics.models import Array, Inputs, Model
from gradcheck_cli.numerics.schemes import FloatArray

ProgressCallback = Callable[[float], None]
"""Called with the number of entries just finished."""


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
    ) -> tuple[Array, FloatArray]:
        """f at `inputs` with entry flat_indices[b] of inputs[wrt] moved by shifts[b, k], minus
        f0, for every entry b and shift k (the shape of `shifts`); and |f| at its largest over
        each entry's evaluations, at least |f0| (the size their round-off scales with)."""
        ...


class BoundEvaluator(Evaluator, Protocol):
    """An evaluator bound to some models at one set of inputs (worker processes that loaded
    them): it evaluates only what it `serves`."""

    def serves(self, model: Model, inputs: Inputs) -> bool: ...


class InProcess:
    """One forward pass after another, in this process.

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
    ) -> tuple[Array, FloatArray]:
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
) -> tuple[Array, FloatArray, FloatArray]:
    """Whole forward passes, one per entry and shift: the only path for user models.

    Columns of `shifts` whose differences are `known` are not evaluated again; the others go to
    the evaluator for this model and inputs (`evaluator_for`: worker processes when they run).

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
        model, inputs, wrt, flat_indices, np.ascontiguousarray(shifts[:, todo]), f0, progress
    )
    diffs[:, todo] = values
    return diffs, np.maximum(magnitudes, sizes), no_terms
