"""What the user's code does besides its result, found before any verdict (issue 23).

Every verdict of a check comes from fresh copies (`calling`), so nothing the user's code writes
into its arguments ever reaches a number of the check. What it writes would reach the user's
own program, though: a backward that writes into `dout` corrupts the gradient its caller holds,
one that writes into the cache spoils a second backward, a forward that writes into `x` changes
the caller's data. Each is found here by handing the code copies of its arguments and comparing
them with a snapshot (fingerprints of their bytes) after the call, or by the read-only view a
write raised on, and named as the code names the argument (`dout`, `cache[2]`, `self.x`, `w`):

- input-modified: forward (or backward) wrote into an input;
- dout-modified: backward wrote into the gradient of forward's output it was given;
- cache-modified: backward wrote into an array of what forward saved for it;
- not-reentrant: two backward calls on the same dout and cache differ beyond --nondet-tol
  (a buffer kept between calls, a result added into instead of assigned);
- uninitialised-memory: with the memory np.empty and np.empty_like hand out filled with NaN,
  the result differs (an entry read before it is written: fine in one run, wrong in the next).

The checks cost one forward call and two backward calls at the inputs (more only where they
find something), and they replace the determinism probe's two backward calls.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.frameworks.effects import INPUT_HELD, Write
from gradcheck_cli.numerics.models import Array, Gradients, Inputs
from gradcheck_cli.report import SideEffect
from gradcheck_cli.subject.backward_calls import (
    CACHE,
    DOUT,
    INPUT,
    Argument,
    NamedCall,
    fresh_copy,
)
from gradcheck_cli.subject.calling import (
    WroteToInput,
    call_user_function,
    read_only,
    writable_copy,
)
from gradcheck_cli.subject.effect_words import (
    cache_effect,
    dout_effect,
    gradients_gap,
    input_effect,
    listed,
    outputs_gap,
    reentrant_effect,
    uninitialised_effect,
)
from gradcheck_cli.subject.functions import ModelFunctions, Outputs

DEPTH = 4
"""How deep into a cache (tuples in dicts in objects) its arrays are looked for."""


def side_effect_checks(
    functions: ModelFunctions,
    inputs: Inputs,
    first: Outputs,
    cotangents: Sequence[Array],
    tolerance: float,
) -> tuple[SideEffect, ...]:
    """Every side-effect check that applies to the model's conventions, each passed or not:
    `first` is what forward gave at `inputs` (its cache is the one backward gets), and
    `cotangents` the gradient of forward's outputs backward is called with (none for a
    scalar)."""
    found = list(_forward_checks(functions, inputs, first, tolerance))
    call = functions.backward_call(inputs, cotangents, first)
    if call is not None:
        found += _backward_checks(functions, call, inputs, cotangents, first, tolerance)
    return tuple(found)


# --- Calling with copies and snapshots -----------------------------------------------------------


@dataclass
class _Prepared:
    """One call's arguments, and a snapshot of every array the code may write into."""

    args: list[object]
    kwargs: dict[str, object]
    snapshot: list[tuple[Argument, str, Array, bytes]]
    """(argument, where in it, the array handed over, its fingerprint before the call)."""

    def written(self) -> list[tuple[Argument, str, Array, Array]]:
        """The arrays whose bytes changed in the call: (argument, where, now, before)."""
        changed = []
        for argument, where, array, before in self.snapshot:
            if _fingerprint(array) != before:
                changed.append((argument, where, array, np.asarray(_original(argument, where))))
        return changed


def _prepare(call: NamedCall, read_only_names: Sequence[str] = ()) -> _Prepared:
    """Fresh copies of `call`'s arguments (read-only views of fresh copies for those named in
    `read_only_names`: a write raises), and a snapshot of the arrays among them."""
    snapshot: list[tuple[Argument, str, Array, bytes]] = []

    def prepared(argument: Argument) -> object:
        if argument.kind == DOUT:
            value: object = np.array(argument.value, copy=True)
        elif argument.kind == INPUT:
            value = writable_copy(argument.value)
        else:  # the cache, a parameter: what this call does to them, no other call sees
            value = fresh_copy(argument.value)
        if argument.name in read_only_names and argument.kind in (DOUT, INPUT):
            value = read_only(value)
        if argument.kind in (DOUT, CACHE, INPUT):
            for where, array in arrays_in(value, argument.name):
                snapshot.append((argument, where, array, _fingerprint(array)))
        return value

    args = [prepared(a) for a in call.positional]
    kwargs = {name: prepared(a) for name, a in call.keywords}
    return _Prepared(args, kwargs, snapshot)


def arrays_in(value: object, where: str, depth: int = 0) -> Iterator[tuple[str, Array]]:
    """The arrays in `value` with where they are: `x`, `cache[2]`, `cache['x']`, `self.x`."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            yield where, value
        return
    if depth >= DEPTH:
        return
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from arrays_in(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from arrays_in(item, f"{where}[{key!r}]", depth + 1)
    elif not isinstance(value, type):
        try:  # an object's attributes (a layer object saving its cache in self)
            attributes = dict(vars(value))
        except Exception:  # no __dict__, or a __getattribute__ of its own that refuses
            return
        for key, item in attributes.items():
            if not key.startswith("__"):
                yield from arrays_in(item, f"{where}.{key}", depth + 1)


def _original(argument: Argument, where: str) -> object:
    """The array at `where` in the argument as the check holds it (before any call)."""
    return dict(arrays_in(argument.value, argument.name)).get(where, np.empty(0))


def _fingerprint(array: Array) -> bytes:
    data = np.ascontiguousarray(array)
    digest = hashlib.blake2b(data.view(np.uint8).reshape(-1).data, digest_size=16)
    digest.update(f"{data.dtype.str}{data.shape}".encode())
    return digest.digest()


def _call(functions: ModelFunctions, call: NamedCall, prepared: _Prepared) -> object:
    if call.function is functions.model_file.forward:
        functions.model_file.counter.forward += 1
    return call_user_function(
        functions.model_file, call.raised_as, call.function, prepared.args, prepared.kwargs
    )


def _writes_read_only(
    functions: ModelFunctions, call: NamedCall, kinds: Sequence[str]
) -> list[str]:
    """The arguments of `kinds` the code writes into without changing their values (a read-only
    view of each alone raises): one call per argument, only where a write was seen."""
    found = []
    for argument in call.arguments:
        if argument.kind not in kinds:
            continue
        try:
            _call(functions, call, _prepare(call, (argument.name,)))
        except WroteToInput:
            found.append(argument.name)
    return found


# --- Memory np.empty hands out, filled ------------------------------------------------------------


def _fill(array: Array) -> Array:
    kind = array.dtype.kind
    if kind in "fc":
        array.fill(np.nan)
    elif kind in "iu":
        array.fill(np.iinfo(array.dtype).max)
    elif kind == "b":
        array.fill(True)
    return array


@contextlib.contextmanager
def uninitialised_filled(*functions: Callable[..., object]) -> Iterator[None]:
    """While it lasts, np.empty and np.empty_like (also where the functions' modules imported
    them by name) hand out memory filled with NaN (the largest integer, True), so that a
    result reading an entry before writing it differs from one that does not."""
    real: dict[str, Callable[..., Array]] = {"empty": np.empty, "empty_like": np.empty_like}

    def empty(*args: Any, **kwargs: Any) -> Array:
        return _fill(real["empty"](*args, **kwargs))

    def empty_like(*args: Any, **kwargs: Any) -> Array:
        return _fill(real["empty_like"](*args, **kwargs))

    filled = {"empty": empty, "empty_like": empty_like}
    replaced: list[tuple[dict[str, Any], str, object]] = [
        (vars(np), key, original) for key, original in real.items()
    ]
    seen = [vars(np)]
    for function in functions:
        namespace = getattr(getattr(function, "__func__", function), "__globals__", None)
        if not isinstance(namespace, dict) or any(namespace is n for n in seen):
            continue
        seen.append(namespace)
        # `from numpy import empty` (under any name) in the module that defines the function.
        for name, value in namespace.items():
            if any(value is original for original in real.values()):
                replaced.append((namespace, name, value))
    try:
        for namespace, name, value in replaced:
            namespace[name] = filled[next(k for k, o in real.items() if o is value)]
        yield
    finally:
        for namespace, name, value in reversed(replaced):
            namespace[name] = value


# --- The checks ----------------------------------------------------------------------------------


def _forward_checks(
    functions: ModelFunctions, inputs: Inputs, first: Outputs, tolerance: float
) -> list[SideEffect]:
    """One forward call with copies of the inputs and np.empty filled: what it wrote into, and
    whether its outputs moved."""
    call = functions.forward_call(inputs)
    prepared = _prepare(call)
    role = call.role
    try:
        with uninitialised_filled(call.function):
            result: object = _call(functions, call, prepared)
        outputs: Outputs | str = functions.outputs_of(result)
    except UserCodeError as error:
        outputs = str(error)
    written = _writes([w for w in prepared.written() if w[0].kind == INPUT], inputs)
    if not written and "forward" in functions.caller.wrote:
        written = _unchanged(_writes_read_only(functions, call, (INPUT,)))
    effects = []
    if call.of(INPUT):
        effects.append(input_effect(role, written, "forward"))
    gap = outputs_gap(
        first.arrays, outputs if isinstance(outputs, str) else outputs.arrays, tolerance
    )
    effects.append(uninitialised_effect(role, gap, "the output"))
    return effects


def _backward_checks(
    functions: ModelFunctions,
    call: NamedCall,
    inputs: Inputs,
    cotangents: Sequence[Array],
    first: Outputs,
    tolerance: float,
) -> list[SideEffect]:
    """backward at the same dout and cache twice (its douts and inputs read-only the first
    time), and a third time only when the two differ."""
    role = call.role
    watched = [a.name for a in call.of(DOUT, INPUT)]
    prepared = _prepare(call, watched)
    raised = False
    try:
        once = _call(functions, call, prepared)
    except WroteToInput:
        raised = True
        prepared = _prepare(call)
        once = _call(functions, call, prepared)
    written = prepared.written()
    effects = []
    for kind, own in (
        ("dout-modified", DOUT),
        ("cache-modified", CACHE),
        ("input-modified", INPUT),
    ):
        arguments = call.of(own)
        if not arguments:
            continue
        mine = _writes([w for w in written if w[0].kind == own], inputs)
        if not mine and raised and own != CACHE:
            mine = _unchanged(_writes_read_only(functions, call, (own,)))
        if kind == "dout-modified":
            effects.append(dout_effect(role, mine, [a.name for a in arguments]))
        elif kind == "cache-modified":
            effects.append(cache_effect(role, mine, arguments[0].name))
        else:
            effects.append(input_effect(role, mine, "backward"))
    gradients = functions.gradients_of(once, inputs, cotangents)

    def again() -> Gradients | str:
        try:
            with uninitialised_filled(call.function, functions.model_file.forward):
                result = _call(functions, call, _prepare(call))
            return functions.gradients_of(result, inputs, cotangents)
        except UserCodeError as error:
            return str(error)

    filled = again()
    given = [a.name for a in call.of(DOUT, CACHE)]
    gap = gradients_gap(gradients, filled, tolerance)
    if gap is None:
        effects.append(reentrant_effect(role, None, tolerance, given))
        effects.append(uninitialised_effect(role, None, "the result"))
        return effects
    twice = again()
    repeat = gradients_gap(filled, twice, tolerance)
    if repeat is None:  # the same with memory filled, not without: it reads what it never wrote
        effects.append(reentrant_effect(role, None, tolerance, given))
        effects.append(uninitialised_effect(role, gap, "the result"))
    else:  # two calls under the same conditions differ
        effects.append(reentrant_effect(role, repeat, tolerance, given))
    return effects


def _writes(written: Sequence[tuple[Argument, str, Array, Array]], inputs: Inputs) -> list[Write]:
    """What the code wrote into, as the wording takes it: a cache's array that is forward's
    input itself (a view of it) says so."""
    found = []
    for argument, where, now, before in written:
        original = np.asarray(_original(argument, where))
        shared = [
            n for n, a in inputs.items() if original.size and np.may_share_memory(original, a)
        ]
        holds = f"{INPUT_HELD}{listed(shared)}" if shared and argument.kind == CACHE else ""
        found.append(Write(where, before, now, holds))
    return found


def _unchanged(names: Sequence[str]) -> list[Write]:
    """Arguments a read-only view of which raised: written into, no value changed."""
    return [Write(name, np.empty(0), np.empty(0)) for name in names]
