"""How a layer's backward is called: which of its parameters takes the gradient of each of
forward's outputs (dout), which the cache, and which a value by name.

Read from backward's signature, parameter by parameter:

- a name holding `cache` (`cache`, `caches`, `linear_cache`) takes forward's cache;
- a name that is one of forward's parameters or a `--param` (`activation`, `X`, `Y`) takes
  that value: `linear_activation_backward(dA, cache, activation)`;
- a parameter with a default that nothing names keeps its default;
- the others, in order, take the gradients of forward's outputs (one per output; none or one
  for a scalar output), then, when no parameter is named like the cache, the cache.

A backward whose signature cannot be read (a builtin) is called as `backward(*douts, cache)`.
Every call gets fresh copies of the douts and of the cache (`arguments`): what one call writes
into them is never seen by the next.

Pure standard library: nothing here knows about numpy, click or rich.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.subject.pairs import reads_as_a_gradient

COTANGENT = "cotangent"
CACHE = "cache"
VALUE = "value"
DOUT = "dout"
INPUT = "input"
PARAM = "param"


@dataclass(frozen=True)
class Slot:
    """What one parameter of backward takes: a cotangent (by output), the cache, or a value."""

    kind: str
    index: int = 0
    """The output whose cotangent it takes (COTANGENT)."""
    name: str = ""
    """The value's name (VALUE)."""
    parameter: str = ""
    """The name of backward's parameter that takes it (`dout`, `dnext_h`, `cache`), as messages
    name it."""


@dataclass(frozen=True)
class BackwardCall:
    """backward's parameters: positional slots in order, then keyword ones."""

    positional: tuple[Slot, ...]
    keywords: tuple[tuple[str, Slot], ...]
    cotangent_names: tuple[str, ...]
    """The parameters that take the douts (empty for a legacy call of unknown signature)."""

    @property
    def cotangents(self) -> int:
        slots = [*self.positional, *(slot for _, slot in self.keywords)]
        return sum(1 for s in slots if s.kind == COTANGENT)

    def unlike_gradients(self) -> list[str]:
        """The douts whose names do not read as gradients (`AL`, `out`): whether backward is
        linear in them is checked before any verdict trusts them."""
        return [n for n in self.cotangent_names if not reads_as_a_gradient(n)]

    def arguments(
        self,
        douts: Sequence[object],
        cache: object,
        values: Mapping[str, object],
        fresh: Callable[[object], object],
        protect: Callable[[object], object],
    ) -> tuple[list[object], dict[str, object]]:
        """backward's arguments: `douts` each through `fresh` (a fresh copy for the call), a
        fresh deep copy of `cache`, `values` by name through `protect` (read-only views)."""
        fresh_douts = [fresh(d) for d in douts]
        fresh_cache = fresh_copy(cache)

        def value_of(slot: Slot) -> object:
            if slot.kind == COTANGENT:
                return fresh_douts[slot.index]
            if slot.kind == CACHE:
                return fresh_cache
            return protect(values[slot.name])

        args = [value_of(slot) for slot in self.positional]
        kwargs = {name: value_of(slot) for name, slot in self.keywords}
        return args, kwargs


def fresh_copy(value: object) -> object:
    """A deep copy (a cache of arrays, lists, dicts, an object), or `value` itself when it
    cannot be copied."""
    try:
        return copy.deepcopy(value)
    except Exception:  # an object holding a lock, a module, a C handle: passed as it is
        return value


def plan_backward_call(
    backward: Callable[..., object],
    *,
    label: str,
    role: str,
    outputs: int,
    scalar: bool,
    values: Collection[str],
) -> BackwardCall:
    """How to call `backward` (named `role` in messages) for a forward with `outputs` outputs
    (`scalar`: one 0-D output), given the names of the values it may take (`values`)."""
    legacy = BackwardCall(
        tuple(
            [
                *(
                    Slot(COTANGENT, i, parameter="dout" + (f"{i + 1}" if outputs > 1 else ""))
                    for i in range(outputs)
                ),
                Slot(CACHE, parameter="cache"),
            ]
        ),
        (),
        (),
    )
    try:
        signature = inspect.signature(backward)
    except (TypeError, ValueError):
        return legacy
    parameters = list(signature.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return legacy
    parameters = [p for p in parameters if p.kind != p.VAR_KEYWORD]
    slots: dict[str, Slot] = {}
    unnamed: list[inspect.Parameter] = []
    for parameter in parameters:
        if CACHE in parameter.name.lower():
            slots[parameter.name] = Slot(CACHE, parameter=parameter.name)
        elif parameter.name in values:
            slots[parameter.name] = Slot(VALUE, name=parameter.name, parameter=parameter.name)
        elif parameter.default is inspect.Parameter.empty:
            unnamed.append(parameter)
    cache_named = any(s.kind == CACHE for s in slots.values())
    needed = outputs
    if scalar:  # a loss: backward(dout, cache) gets dout = 1.0, backward(X, Y, cache) none
        needed = max(0, min(1, len(unnamed) - (0 if cache_named else 1)))
    written = f"{role}{signature}"
    if len(unnamed) < needed:
        raise UserCodeError(
            f"{label}: forward returns {outputs} output{'s' if outputs > 1 else ''}, so {role} "
            f"takes the gradient of each before the cache; but its signature is {written}"
        )
    for index, parameter in enumerate(unnamed[:needed]):
        slots[parameter.name] = Slot(COTANGENT, index, parameter=parameter.name)
    rest = unnamed[needed:]
    if rest and not cache_named:
        slots[rest[0].name] = Slot(CACHE, parameter=rest[0].name)
        rest = rest[1:]
    if rest:
        names = ", ".join(p.name for p in rest)
        raise UserCodeError(
            f"{label}: no value for {names} in {written}: give "
            f"{'it' if len(rest) == 1 else 'them'} with --param {rest[0].name}=JSON (the "
            "douts and the cache come first, other parameters by the names forward or --param "
            "give them)"
        )
    positional: list[Slot] = []
    keywords: list[tuple[str, Slot]] = []
    by_keyword = False
    for parameter in parameters:
        slot = slots.get(parameter.name)
        if slot is None:  # keeps its default; what follows goes by name
            by_keyword = True
            continue
        if parameter.kind == parameter.KEYWORD_ONLY or (
            by_keyword and parameter.kind != parameter.POSITIONAL_ONLY
        ):
            keywords.append((parameter.name, slot))
        else:
            positional.append(slot)
    cotangent_names = tuple(p.name for p in unnamed[:needed])
    return BackwardCall(tuple(positional), tuple(keywords), cotangent_names)


@dataclass(frozen=True)
class Argument:
    """One argument of a call to the user's code, named as its parameter is (`dout`, `cache`,
    `x`), with what it is: a dout, the cache, an input (or a dict of inputs), or a parameter."""

    name: str
    kind: str
    """DOUT, CACHE, INPUT or PARAM."""
    value: object
    """The value as the check holds it: never handed to the user's code itself."""


@dataclass(frozen=True)
class NamedCall:
    """A call of the user's function `role` with named arguments (the side-effect checks)."""

    role: str
    """The function's own name (`affine_backward`), as side-effect messages name it."""
    function: Callable[..., object]
    positional: tuple[Argument, ...]
    keywords: tuple[tuple[str, Argument], ...]
    raised_as: str = "backward"
    """How an error of the call names it, as every other call of the same function does."""

    @property
    def arguments(self) -> tuple[Argument, ...]:
        return (*self.positional, *(argument for _, argument in self.keywords))

    def of(self, *kinds: str) -> list[Argument]:
        return [a for a in self.arguments if a.kind in kinds]
