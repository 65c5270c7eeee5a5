"""What each parameter of forward is given: an input array, or a parameter passed through.

The arrays come from outside the file (the command line's --input, --inputs, --x and --w, or
the API's arrays), from the file's example_inputs() or, for files written for the two-matrix
tool, from the seed's X and W; `resolve_arguments` says which wins. Inputs are the check's own
arrays: floats in the check's dtype, integers and booleans kept as constants.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.numerics.bfloat16 import BFLOAT16, in_dtype
from gradcheck_cli.numerics.models import Array
from gradcheck_cli.settings import API, COMMAND_LINE
from gradcheck_cli.subject.calling import call_user_function
from gradcheck_cli.subject.conventions import ModelFile, signature_of
from gradcheck_cli.subject.groups import head_of, is_dict_of_arrays, member_name
from gradcheck_cli.subject.messages import describe, first_index, format_index


@dataclass(frozen=True)
class Supplied:
    """An array given for an input from outside the file (the command line, the API)."""

    array: NDArray[Any]
    source: str
    flatten_single_line: bool = False
    """A 1-row or 1-column CSV given with --input may feed a 1-D input."""
    given_by: str | None = None
    """How the user gave it, as messages name it (`--input b`, `--inputs all.npz`); None: by
    the input's own name (`--input b`)."""


def resolve_arguments(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    params: Mapping[str, object],
    *,
    dtype: str,
    fallback: Mapping[str, Supplied] | None = None,
    copy: bool = True,
) -> tuple[dict[str, Array], dict[str, str], dict[str, object]]:
    """(inputs, their sources, parameters) for forward, in its parameter order.

    Each parameter takes, first found: an array from `supplied` (--input, --inputs, --x, --w),
    a value from `params` (--param), from the file's example_inputs(), from `fallback` (the
    seed's X and W, for files written for the two-matrix tool; a class's attributes) or its
    default. Arrays and numbers are inputs; a dict of arrays (`parameters`) is an input per
    array (`parameters.W1`, given by `supplied` member by member or by example_inputs() as a
    dict); anything else is a parameter. A parameter without a default that nobody gives is an
    error naming it and the option that gives it.
    """
    signature = signature_of(model_file)
    label = model_file.label
    examples = _example_inputs(model_file)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (*positional, inspect.Parameter.KEYWORD_ONLY)
    ]
    # A layer's backward may take more by name (linear_activation_backward's activation).
    backward_only = [n for n in _backward_names(model_file) if n not in names]
    # Functions handed over in Python are the API's: its messages name its keyword arguments.
    naming = COMMAND_LINE if model_file.from_file else API
    for option, given_names in (("input", list(supplied)), ("param", list(params))):
        allowed = [*names, *backward_only] if option == "param" else names
        unknown = [n for n in given_names if head_of(n) not in allowed]
        if unknown:
            given_by = supplied[unknown[0]].given_by if option == "input" else None
            known = ", ".join(names) or "none"
            if given_by is not None:  # a key of an --inputs archive
                raise InputError(
                    f"{given_by}: its key {unknown[0]!r} names no parameter; the parameters of "
                    f"{label}'s forward are {known}"
                )
            said = (
                f"--{option} {unknown[0]}"
                if naming is COMMAND_LINE
                else f"{option}s={{{unknown[0]!r}: ...}}"
            )
            raise InputError(
                f"{said}: {label}'s forward has no parameter of that name; its parameters are "
                f"{known}"
            )
    inputs: dict[str, Array] = {}
    sources: dict[str, str] = {}
    passed: dict[str, object] = {}
    for parameter in signature.parameters.values():
        if parameter.kind not in (*positional, inspect.Parameter.KEYWORD_ONLY):
            continue  # *args, **kwargs: nothing to give
        name = parameter.name
        example = examples.get(name)
        members = _members(name, supplied, None if name in params else example, fallback)
        if members:
            for member, (array, source) in members.items():
                own = copy or member not in supplied  # the example's or a class's: copied
                inputs[member] = _as_input(np.asarray(array), dtype, like=None, copy=own)
                sources[member] = source
        elif name in supplied:
            given = supplied[name]
            inputs[name] = _as_input(
                given.array, dtype, like=example, flatten=given.flatten_single_line, copy=copy
            )
            sources[name] = given.source
        elif name in params:
            passed[name] = params[name]  # --param says: not an input, whatever its value
        elif name in examples:
            if _array_like(example):
                inputs[name] = _as_input(np.asarray(example), dtype, like=None)
                sources[name] = "example_inputs()"
            else:
                passed[name] = example
        elif fallback is not None and name in fallback:
            inputs[name] = _as_input(fallback[name].array, dtype, like=None)
            sources[name] = fallback[name].source
        elif parameter.default is inspect.Parameter.empty:
            in_file = (
                ", or define example_inputs() in the model file" if model_file.from_file else ""
            )
            raise InputError(
                f"{label}: no value for {name!r}, a parameter of forward without a default: "
                f"{naming.give_input(name)}, {naming.give_parameter(name)}{in_file}"
            )
    passed.update({n: params[n] for n in backward_only if n in params})
    if not inputs:
        raise InputError(f"{label}: forward takes no array inputs: nothing to check")
    for name, array in inputs.items():
        if array.size == 0:  # no entry to check: a verdict on it would rest on nothing
            raise InputError(
                f"{label}: input {name} from {sources[name]} is empty (shape "
                f"{'x'.join(map(str, array.shape))}); every input needs at least one entry"
            )
        bad = ~np.isfinite(array) if array.dtype.kind == "f" else None
        if bad is not None and bad.any():
            where = format_index(first_index(bad)) if array.ndim else ""
            raise InputError(
                f"{label}: input {name} from {sources[name]} holds {array[first_index(bad)]} at "
                f"[{where}]; the inputs must be finite"
            )
    return inputs, sources, passed


def _backward_names(model_file: ModelFile) -> list[str]:
    """The parameter names of a layer's backward (none for the other conventions)."""
    if model_file.convention != "layer" or model_file.backward is None:
        return []
    try:
        return list(inspect.signature(model_file.backward).parameters)
    except (TypeError, ValueError):
        return []


def _members(
    name: str,
    supplied: Mapping[str, Supplied],
    example: object,
    fallback: Mapping[str, Supplied] | None,
) -> dict[str, tuple[NDArray[Any], str]]:
    """The arrays of `name` when it is a dict of inputs, by member name (`parameters.W1`):
    example_inputs()'s dict of arrays, each array overridden by `supplied` (--input
    parameters.W1=..., an --inputs key parameters.W1, or --input parameters=ARCHIVE.npz);
    without either, a `fallback`'s (a class's dict attribute). Empty when `name` is not one."""
    if name in supplied:
        return {}
    prefix = member_name(name, "")
    given: dict[str, tuple[NDArray[Any], str]] = {}
    if is_dict_of_arrays(example):
        assert isinstance(example, Mapping)
        for key, array in example.items():
            given[member_name(name, key)] = (array, "example_inputs()")
    given.update({k: (v.array, v.source) for k, v in supplied.items() if k.startswith(prefix)})
    if not given and fallback is not None:
        given = {k: (v.array, v.source) for k, v in fallback.items() if k.startswith(prefix)}
    return given


def _example_inputs(model_file: ModelFile) -> dict[str, object]:
    if model_file.example_inputs is None:
        return {}
    role = getattr(model_file.example_inputs, "__name__", "example_inputs")
    result = call_user_function(model_file, role, model_file.example_inputs, (), {})
    if not isinstance(result, Mapping) or not all(isinstance(k, str) for k in result):
        raise UserCodeError(
            f"{model_file.label}: example_inputs() must return a dict of arrays and parameters "
            f"by name; got {describe(result)}"
        )
    return dict(result)


def _array_like(value: object) -> bool:
    """Arrays and plain numbers are inputs; dicts, strings, None, lists are parameters."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biufc"
    return isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, complex)


def _as_input(
    array: NDArray[Any], dtype: str, *, like: object, flatten: bool = False, copy: bool = True
) -> Array:
    """Floating arrays in the check's dtype; integer and boolean ones kept (constants). An
    array shaped like a 2-D CSV line becomes 1-D where the example is 1-D (or there is none);
    integral floats become integers where the example is an integer array."""
    value = np.asarray(array)
    example = np.asarray(like) if isinstance(like, (np.ndarray, numbers.Number)) else None
    one_line = flatten and value.ndim == 2 and 1 in value.shape
    if one_line and (example is None or example.ndim == 1):
        value = value.reshape(-1)
    labels = example is not None and example.dtype.kind in "iu" and value.dtype.kind == "f"
    if labels and np.all(np.isfinite(value)) and np.all(value == np.round(value)):
        return value.astype(np.int64)
    if value.dtype.kind in "biu":
        return value
    if dtype == BFLOAT16:  # numpy has none: bfloat16 numbers, held as float64 (a new array)
        return np.ascontiguousarray(in_dtype(value, dtype))
    # The check's own C-ordered copy: it moves entries in place (and puts them back).
    if copy:
        return np.array(value, dtype=np.dtype(dtype), order="C", copy=True)
    return np.asarray(value, dtype=np.dtype(dtype), order="C")
