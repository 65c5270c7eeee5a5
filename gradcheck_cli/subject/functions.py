"""A model file's functions over named inputs: forward's outputs, backward's gradients, and the
hand-written hvp and jvp, each checked for type, shape and finiteness as it comes back.

`ModelFunctions` hides the calling convention (plain, layer or loss; see `conventions`): every
check, and every model made from the file, asks it for outputs and gradients by input name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.numerics.models import Array, Gradients, Inputs
from gradcheck_cli.subject.calling import Caller
from gradcheck_cli.subject.conventions import ModelFile, UserFunction
from gradcheck_cli.subject.messages import describe, first_index, format_index


@dataclass(frozen=True)
class Outputs:
    """What one forward call gave: its outputs as arrays, and a layer's cache."""

    arrays: tuple[NDArray[Any], ...]
    cache: object = None


class ModelFunctions:
    """One model file's calling conventions over named inputs."""

    def __init__(self, model_file: ModelFile, caller: Caller, names: Sequence[str]) -> None:
        self.model_file = model_file
        self.caller = caller
        self.names = list(names)
        self.label = model_file.label

    def forward(self, inputs: Inputs, *, quiet: bool = False) -> Outputs:
        self.model_file.counter.forward += 1
        result = self.caller.call_forward(inputs, quiet=quiet)
        convention = self.model_file.convention
        if convention == "plain":
            return Outputs((self.numeric_output(result, "forward"),))
        role = "forward" if convention == "layer" else self.model_file.name
        if not isinstance(result, (tuple, list)) or len(result) < 2:
            shape = "(out, cache)" if convention == "layer" else "(loss, gradients)"
            raise UserCodeError(f"{self.label}: {role} must return {shape}; got {describe(result)}")
        if convention == "loss":
            return Outputs((self.numeric_output(result[0], role),), cache=result[1])
        return Outputs(tuple(self.numeric_output(r, role) for r in result[:-1]), cache=result[-1])

    def numeric_output(self, value: object, role: str) -> NDArray[Any]:
        """An output of `role` as an array of numbers, or the error saying what it is instead."""
        out = _numeric(value)
        if out is None:
            raise UserCodeError(
                f"{self.label}: {role} must return a number or an array; got {describe(value)}"
            )
        return out

    def backward(
        self, inputs: Inputs, cotangents: Sequence[Array], at: Outputs | None = None
    ) -> Gradients:
        """The user's gradient (a VJP for array outputs) at `inputs`, checked and by name."""
        convention = self.model_file.convention
        if convention == "loss":
            outputs = at or self.forward(inputs)
            result = outputs.cache
            scale = float(np.asarray(cotangents[0])) if cotangents else 1.0
            return self._gradients(result, inputs, scale=scale)
        if convention == "layer":
            outputs = at or self.forward(inputs)
            douts = list(cotangents) if cotangents else [np.float64(1.0)]
            assert self.model_file.backward is not None
            result = self.caller.call(
                "backward", self.model_file.backward, [*douts, outputs.cache], {}
            )
            return self._gradients(result, inputs)
        args, kwargs = self.caller.arguments(inputs, extra=cotangents)
        assert self.model_file.backward is not None
        result = self.caller.call("backward", self.model_file.backward, args, kwargs)
        return self._gradients(result, inputs)

    def outputs(self, inputs: Inputs) -> list[NDArray[Any]]:
        """forward's outputs at `inputs` (one array, or several for a layer)."""
        return list(self.forward(inputs).arrays)

    def hvp(self, inputs: Inputs, tangents: Mapping[str, Array]) -> Gradients:
        """The file's hvp(<inputs>, tangents): H v, in backward's structure."""
        function = self._second("hvp")
        args, kwargs = self.caller.arguments(inputs, extra=(dict(tangents),))
        result = self.caller.call("hvp", function, args, kwargs)
        return self._gradients(result, inputs, role="hvp")

    def jvp(self, inputs: Inputs, tangents: Mapping[str, Array]) -> list[NDArray[Any]]:
        """The file's jvp(<inputs>, tangents): J v, shaped like forward's output(s)."""
        function = self._second("jvp")
        args, kwargs = self.caller.arguments(inputs, extra=(dict(tangents),))
        result = self.caller.call("jvp", function, args, kwargs)
        parts = result if isinstance(result, (tuple, list)) else [result]
        arrays = []
        for part in parts:
            array = _numeric(part)
            if array is None:
                raise UserCodeError(
                    f"{self.label}: jvp must return an array shaped like forward's output (or a "
                    f"tuple, one per output); got {describe(result)}"
                )
            arrays.append(array)
        return arrays

    def _second(self, name: str) -> UserFunction:
        function = getattr(self.model_file, name)
        if function is None:
            example = f"{name}({', '.join(self.names)}, tangents)"
            raise InputError(
                f"{self.label}: no {name}; define {example} in the model file to check it"
            )
        return function  # type: ignore[no-any-return]

    def _gradients(
        self, result: object, inputs: Inputs, scale: float = 1.0, role: str | None = None
    ) -> Gradients:
        names = list(inputs)
        floating = [n for n in names if np.asarray(inputs[n]).dtype.kind in "fc"]
        if role is None:
            role = "backward" if self.model_file.convention != "loss" else self.model_file.name
        expected = _expected_gradients(names)
        parts: dict[str, object]
        if isinstance(result, Mapping):
            unknown = [k for k in result if k not in names]
            if unknown:
                raise UserCodeError(
                    f"{self.label}: {role} returned a gradient for {unknown[0]!r}, which is not "
                    f"an input; the inputs are {', '.join(names)}"
                )
            parts = dict(result)
        elif isinstance(result, (tuple, list)):
            if len(result) == len(names):
                parts = dict(zip(names, result, strict=True))
            elif len(result) == len(floating):
                parts = dict(zip(floating, result, strict=True))
            else:
                raise UserCodeError(
                    f"{self.label}: {role} must return {expected}; got {describe(result)}"
                )
        elif len(floating) == 1 and _numeric(result) is not None:
            parts = {floating[0]: result}
        else:
            raise UserCodeError(
                f"{self.label}: {role} must return {expected}; got {describe(result)}"
            )
        gradients: Gradients = {}
        for name in names:
            value = parts.get(name)
            like = inputs[name]
            if value is None or np.asarray(like).dtype.kind not in "fc":
                gradients[name] = None
                continue
            part = _gradient_part(
                self.label, f"d{name}", value, like=like, like_name=name, role=role
            )
            gradients[name] = part * scale if scale != 1.0 else part
        return gradients


def _expected_gradients(names: Sequence[str]) -> str:
    listed = ", ".join(f"d{n}" for n in names)
    if len(names) == 2:
        return f"({listed}), a pair of arrays"
    return f"({listed}): one gradient per input in forward's order, or a dict by name"


def _gradient_part(
    file: str, label: str, value: object, *, like: Array, like_name: str, role: str = "backward"
) -> Array:
    """One gradient as the user returned it, checked against its input: numbers, the input's
    shape, real for a real input, finite; in the input's dtype."""
    part = _numeric(value)
    if part is None:
        raise UserCodeError(f"{file}: {role} returned a {label} that is {describe(value)}")
    if part.shape != np.shape(like):
        raise UserCodeError(
            f"{file}: {role} returned {label} of shape {part.shape}; "
            f"expected {np.shape(like)}, the shape of {like_name}"
        )
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
    return np.asarray(part, dtype=dtype)


def _numeric(value: object) -> NDArray[Any] | None:
    """`value` as an array of numbers, or None when it is not one (None, str, bool, object...)."""
    if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    try:
        array = np.asarray(value)
    except Exception:  # ragged lists, tensors that require grad, ...
        return None
    return array if array.dtype.kind in "iufc" else None
