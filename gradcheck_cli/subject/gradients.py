"""Reading the gradients a user's backward returns, by input name, each checked as it comes.

What backward may return, for forward's array arguments (an input `x`, or a dict of inputs
`parameters` whose arrays are the inputs `parameters.W1`, ...):

- a tuple in forward's order, one per argument or one per floating argument; a dict argument's
  part is a dict by key (`W1` or `dW1`);
- a dict by name: `x` or `dx` for an input; for a dict argument its part under `parameters`
  (or `dparameters`), or its arrays by key (`W1` or `dW1`), as deeplearning.ai's `grads` holds
  them; other keys starting with `d` (`dA1`, `dZ2`: gradients of intermediate values) are
  ignored, any other key is an error;
- one array, when one argument is floating.

`None` (or a missing key) for an input the backward gives no gradient for: it is not checked.
Each gradient must be numbers, finite, real for a real input, and shaped like its input, or
like it but for axes of length 1 (dgamma (1, D) for gamma (D,)): such a gradient is accepted,
compared as if reshaped, and its shape is reported (`Parsed.reshaped`).

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.numerics.models import Array, Gradients, Inputs
from gradcheck_cli.subject.groups import Slot, slots
from gradcheck_cli.subject.messages import describe, first_index, format_index


@dataclass
class Parsed:
    """The gradients by input name, and the shapes of those that came with axes of length 1
    more or fewer than their input."""

    gradients: Gradients
    reshaped: dict[str, tuple[int, ...]] = field(default_factory=dict)


def parse_gradients(
    result: object, inputs: Inputs, *, label: str, role: str, scale: float = 1.0
) -> Parsed:
    """`result`, backward's return value, as a gradient (or None) per input of `inputs`."""
    names = list(inputs)
    arguments = slots(names)
    floating = [s for s in arguments if any(_floating(inputs[n]) for n in s.members)]
    expected = expected_gradients(arguments)
    parts: dict[str, object]
    if isinstance(result, Mapping):
        parts = _from_mapping(result, arguments, label=label, role=role)
    elif isinstance(result, (tuple, list)):
        if len(result) == len(arguments):
            chosen = arguments
        elif len(result) == len(floating):
            chosen = floating
        else:
            raise UserCodeError(f"{label}: {role} must return {expected}; got {describe(result)}")
        parts = {}
        for argument, value in zip(chosen, result, strict=True):
            parts.update(_argument_part(argument, value, label=label, role=role))
    elif len(floating) == 1 and not floating[0].group and numeric(result) is not None:
        parts = {floating[0].name: result}
    else:
        raise UserCodeError(f"{label}: {role} must return {expected}; got {describe(result)}")
    parsed = Parsed({})
    for name in names:
        value = parts.get(name)
        like = inputs[name]
        if value is None or not _floating(like):
            parsed.gradients[name] = None
            continue
        part, shape = gradient_part(label, f"d{name}", value, like=like, like_name=name, role=role)
        if shape is not None:
            parsed.reshaped[name] = shape
        parsed.gradients[name] = part * scale if scale != 1.0 else part
    return parsed


def expected_gradients(arguments: Sequence[Slot]) -> str:
    listed = ", ".join(f"d{a.name}" for a in arguments)
    if len(arguments) == 2:
        return f"({listed}), a pair of arrays"
    return f"({listed}): one gradient per input in forward's order, or a dict by name"


def _from_mapping(
    result: Mapping[Any, object], arguments: Sequence[Slot], *, label: str, role: str
) -> dict[str, object]:
    parts: dict[str, object] = {}
    used: set[object] = set()
    for argument in arguments:
        if not argument.group:
            key = _first_key(result, (argument.name, f"d{argument.name}"))
            if key is not None:
                parts[argument.name] = result[key]
                used.add(key)
            continue
        nested = _first_key(result, (argument.name, f"d{argument.name}"))
        if nested is not None and isinstance(result[nested], Mapping):
            parts.update(_argument_part(argument, result[nested], label=label, role=role))
            used.add(nested)
            continue
        for member in argument.members:
            key = argument.key(member)
            found = _first_key(result, (member, key, f"d{key}"))
            if found is not None:
                parts[member] = result[found]
                used.add(found)
    unknown = [k for k in result if k not in used and not _intermediate(k)]
    if unknown:
        raise UserCodeError(
            f"{label}: {role} returned a gradient for {unknown[0]!r}, which is not an input; "
            f"the inputs are {', '.join(a.name for a in arguments)}"
        )
    return parts


def _argument_part(argument: Slot, value: object, *, label: str, role: str) -> dict[str, object]:
    """The gradients of one of forward's arguments: an input's, or a dict argument's by key."""
    if not argument.group:
        return {argument.name: value}
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        keys = ", ".join(argument.key(m) for m in argument.members)
        raise UserCodeError(
            f"{label}: {role} returned {describe(value)} for {argument.name}, a dict of arrays "
            f"({keys}): return a dict by key for it"
        )
    parts: dict[str, object] = {}
    for member in argument.members:
        key = argument.key(member)
        found = _first_key(value, (key, f"d{key}"))
        if found is not None:
            parts[member] = value[found]
    return parts


def _first_key(mapping: Mapping[Any, object], keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in mapping), None)


def _intermediate(key: object) -> bool:
    """`dA1`, `dZ2`: the gradient of an intermediate value, which a grads dict may hold."""
    return isinstance(key, str) and len(key) > 1 and key[0] == "d"


def gradient_part(
    file: str, label: str, value: object, *, like: Array, like_name: str, role: str = "backward"
) -> tuple[Array, tuple[int, ...] | None]:
    """One gradient as the user returned it, checked against its input: numbers, the input's
    shape (or it but for axes of length 1: then its own shape comes back too), real for a real
    input, finite; in the input's dtype."""
    part = numeric(value)
    if part is None:
        raise UserCodeError(f"{file}: {role} returned a {label} that is {describe(value)}")
    reshaped = None
    if part.shape != np.shape(like):
        if _without_unit_axes(part.shape) != _without_unit_axes(np.shape(like)):
            raise UserCodeError(
                f"{file}: {role} returned {label} of shape {part.shape}; "
                f"expected {np.shape(like)}, the shape of {like_name}"
            )
        reshaped = tuple(int(s) for s in part.shape)
        part = part.reshape(np.shape(like))
    if np.iscomplexobj(part) and not np.iscomplexobj(like):
        raise UserCodeError(f"{file}: {role} returned a complex {label} for a real {like_name}")
    bad = ~np.isfinite(part)
    if bad.any():
        index = first_index(bad)
        raise UserCodeError(
            f"{file}: {role} returned a non-finite "
            f"{label}[{format_index(index)}] = {part[index].item()}"
        )
    dtype: np.dtype[Any] = like.dtype if like.dtype.kind in "fc" else np.dtype(np.float64)
    return np.asarray(part, dtype=dtype), reshaped


def _without_unit_axes(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _floating(array: object) -> bool:
    return np.asarray(array).dtype.kind in "fc"


def numeric(value: object) -> NDArray[Any] | None:
    """`value` as an array of numbers, or None when it is not one (None, str, bool, object...)."""
    if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    try:
        array = np.asarray(value)
    except Exception:  # ragged lists, tensors that require grad, ...
        return None
    return array if array.dtype.kind in "iufc" else None
