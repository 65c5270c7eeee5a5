"""What a framework's side-effect checks see of one call, over numpy arrays (issue 23).

The numpy checks (`subject.side_effects`) hand the user's code copies and compare bytes. A
PyTorch function is called by autograd, not by gradcheck: what its backward is given
(`grad_output`, `ctx.saved_tensors`) is autograd's, so the adapter watches the tensors
themselves, at the edge: their version counters (every in-place operation moves one) and their
values before and after the call. The adapter answers in numpy, as an `EffectProbe`:

- `forward(named, filled=...)`: forward once, recording what backward needs (`Forwarded`),
  with what it wrote into its inputs;
- `backward(graph, cotangents, filled=...)`: the user's backward once on that record, with
  the gradients and what it wrote into its upstream gradients and what forward saved
  (`Backwarded`); several calls on one record are what re-entrant means.

`filled`: with the memory the framework hands out uninitialised filled with NaN (PyTorch's
`torch.utils.deterministic.fill_uninitialized_memory`), else filled otherwise (zeros), so that
a result reading it differs between the two and neither depends on what an earlier call left.
`subject.framework_effects` decides the verdicts and words them as the numpy checks do. JAX
arrays cannot be written into and `jnp.empty` is zeros: its probe has re-entrancy alone.

Pure numpy: nothing here imports a framework.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]

EVERY_KIND = frozenset(
    {"dout-modified", "cache-modified", "input-modified", "not-reentrant", "uninitialised-memory"}
)

INPUT_HELD = "forward's input "
"""How a `Write.holds` names an input of forward the written array is (a view of): `x`."""

OUTPUT_HELD = "forward's output"


@dataclass(frozen=True)
class Write:
    """An array the user's code wrote into in one call: as its code names it, its values
    before and after (equal when it wrote the same values back)."""

    name: str
    """`grad_out`, `ctx.saved_tensors[0]`, `ctx.mask`, `x`."""
    before: Array
    now: Array
    holds: str = ""
    """What else the array is, for the message: `forward's input x`, `forward's output`."""


@dataclass
class Forwarded:
    """One forward call: its outputs (or the one-line error it raised), what it wrote into its
    inputs, the record backward calls use, and who backward is."""

    outputs: list[Array] | str
    writes: list[Write]
    graph: object
    """The framework's record of the call (None when the call failed)."""
    backward_role: str | None = None
    """How the user's backward is named (`SoftplusAffine.backward`); None when the record has
    no backward of the user's (autograd's own formulas): no backward check applies."""
    douts: tuple[str, ...] = ()
    """What the user's backward calls the gradients it is given (`grad_out`)."""
    cache: tuple[str, ...] = ()
    """What it calls what forward saved (`ctx`)."""


@dataclass
class Backwarded:
    """One backward call: the gradient of each floating input by name (or the one-line error
    it raised), and what it wrote into."""

    gradients: dict[str, Array] | str
    dout_writes: list[Write] = field(default_factory=list)
    cache_writes: list[Write] = field(default_factory=list)


@dataclass(frozen=True)
class Dialect:
    """What differs between numpy's checks and a framework's, in their messages."""

    memory: str = "the memory np.empty hands out"
    """What is filled with NaN to find a read of uninitialised memory."""
    filled: str = "filled with NaN"
    """How it was filled where a result moved."""
    either: str = "filled"
    """How it was filled, said of a result that did not move."""
    reader: str = "an entry of np.empty (or empty_like)"
    copy: str = ".copy()"
    """How the code makes the copy it should work on."""
    array: str = "array"
    whole: bool = False
    """Whether the copy hint names the written argument whole (`grads[1].clone()`, a tuple's
    item) rather than the array an index of it names (`dout.copy()`)."""


class EffectProbe(ABC):
    """A framework's side-effect checks' view of the adapted function (module docstring)."""

    kinds: frozenset[str] = EVERY_KIND
    """The checks that apply to this framework's code."""
    forward_role: str = "forward"
    dialect: Dialect = Dialect(
        memory="the memory the framework hands out uninitialised",
        reader="an entry of it",
        copy=".clone()",
        whole=True,
    )
    """How the messages name this framework's memory, copies and arrays."""

    @abstractmethod
    def forward(self, named: Mapping[str, object], *, filled: bool) -> Forwarded:
        """forward at these arguments (numpy), recording for backward."""

    @abstractmethod
    def backward(
        self, graph: object, cotangents: Sequence[Array] | None, *, filled: bool
    ) -> Backwarded:
        """The user's backward on the record `graph`, for these cotangents (None: the scalar
        output's gradient, 1)."""


def per_output(cotangents: Sequence[Array], outputs: Sequence[Any]) -> list[Array]:
    """The cotangent of each of the framework's outputs: the check sees several outputs as one
    flat array (`adapted.OutputLayout`), with one flat cotangent."""
    if len(cotangents) == len(outputs):
        return list(cotangents)
    flat = np.asarray(cotangents[0]).reshape(-1)
    parts, start = [], 0
    for output in outputs:
        shape = tuple(output.shape)
        size = math.prod(shape)
        parts.append(flat[start : start + size].reshape(shape))
        start += size
    return parts
