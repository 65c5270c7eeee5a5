"""A model file's functions over named inputs: forward's outputs, backward's gradients, and the
hand-written hvp and jvp, each checked for type, shape and finiteness as it comes back.

`ModelFunctions` hides the calling convention (plain, layer, loss or derivative; see
`conventions`): every check, and every model made from the file, asks it for outputs and
gradients by input name.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.numerics.models import Array, Gradients, Inputs
from gradcheck_cli.subject.backward_calls import (
    CACHE,
    COTANGENT,
    DOUT,
    INPUT,
    PARAM,
    Argument,
    BackwardCall,
    NamedCall,
    Slot,
    plan_backward_call,
)
from gradcheck_cli.subject.calling import Arguments, Caller
from gradcheck_cli.subject.conventions import ModelFile, UserFunction
from gradcheck_cli.subject.gradients import Parsed, numeric, parse_gradients
from gradcheck_cli.subject.groups import assemble
from gradcheck_cli.subject.messages import describe
from gradcheck_cli.subject.pairs import backward_name_for

_LINEAR = 1e-7
"""How far backward(2 v) may stray from 2 backward(v), relative to their size, before v is
taken for something other than the gradient of forward's output (round-off is far below)."""


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
        self.reshaped: dict[str, tuple[int, ...]] = {}
        """The shape backward gives a gradient in, where it differs from its input's by axes of
        length 1 (dgamma (1, D) for gamma (D,))."""
        self._backward_call: BackwardCall | None = None

    def forward(self, inputs: Inputs, *, quiet: bool = False) -> Outputs:
        self.model_file.counter.forward += 1
        return self.outputs_of(self.caller.call_forward(inputs, quiet=quiet))

    def outputs_of(self, result: object) -> Outputs:
        """What a forward call returned, as its outputs (arrays) and a layer's cache."""
        convention = self.model_file.convention
        if convention in ("plain", "derivative"):
            return Outputs((self.numeric_output(result, "forward"),))
        role = "forward" if convention == "layer" else self.model_file.name
        if not isinstance(result, (tuple, list)) or len(result) < 2:
            shape = "(out, cache)" if convention == "layer" else "(loss, gradients)"
            raise UserCodeError(f"{self.label}: {role} must return {shape}; got {describe(result)}")
        if convention == "loss":
            loss = self.numeric_output(result[0], role)
            if loss.size != 1:
                raise UserCodeError(self._not_a_loss(result, loss))
            # A loss of shape (1, 1) (a cost left unsqueezed) is the number it holds.
            return Outputs((loss.reshape(()),), cache=result[1])
        return Outputs(tuple(self.numeric_output(r, role) for r in result[:-1]), cache=result[-1])

    def _not_a_loss(self, result: Sequence[object], first: NDArray[Any]) -> str:
        """A function taken for a loss returned (out, cache): a layer whose backward is missing."""
        name = self.model_file.name
        return (
            f"{self.label}: {name} returned ({describe(first)}, {describe(result[-1])}), a "
            f"layer's (out, cache), not (loss, gradients); but the file has no backward to pair "
            f"with it: define {backward_name_for(name)}(dout, cache)"
        )

    def numeric_output(self, value: object, role: str) -> NDArray[Any]:
        """An output of `role` as an array of numbers, or the error saying what it is instead."""
        out = numeric(value)
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
            scale = float(np.asarray(cotangents[0])) if cotangents else 1.0
            return self._gradients(outputs.cache, inputs, scale=scale)
        if convention == "layer":
            outputs = at or self.forward(inputs)
            return self._gradients(self._layer_backward(inputs, cotangents, outputs), inputs)
        if convention == "derivative":
            return self._derivative(inputs, cotangents)
        assert self.model_file.backward is not None
        backward = self.model_file.backward
        caller = self.caller

        def build() -> Arguments:
            extra = [np.array(c, copy=True) for c in cotangents]  # fresh for every call
            args, kwargs = caller.arguments(inputs, extra=extra)
            return [caller.protect(a) for a in args], {
                k: caller.protect(v) for k, v in kwargs.items()
            }

        result = caller.call_built("backward", backward, build)
        return self._gradients(result, inputs)

    def _layer_backward(
        self, inputs: Inputs, cotangents: Sequence[Array], outputs: Outputs
    ) -> object:
        """backward(douts..., cache, named values...): fresh douts and cache for every call."""
        backward = self.model_file.backward
        assert backward is not None
        douts: list[object] = list(cotangents) if cotangents else [np.float64(1.0)]
        douts = [np.array(d, copy=True) for d in douts]
        call = self._plan(inputs, outputs)
        caller = self.caller
        # What forward was given by name, its defaults where nothing was.
        values = {**caller.defaults, **caller.values(inputs)}

        def run(scale: float) -> object:
            scaled = douts if scale == 1.0 else [np.asarray(d) * scale for d in douts]
            fresh = lambda d: caller.protect(np.array(d, copy=True))  # noqa: E731

            def build() -> Arguments:
                return call.arguments(scaled, outputs.cache, values, fresh, caller.protect)

            return caller.call_built("backward", backward, build)

        result = run(1.0)
        suspicious = call.unlike_gradients()
        if suspicious:
            self._require_linear(result, run(2.0), inputs, suspicious)
            self._backward_call = BackwardCall(call.positional, call.keywords, ())
        return result

    def _plan(self, inputs: Inputs, outputs: Outputs) -> BackwardCall:
        if self._backward_call is None:
            assert self.model_file.backward is not None
            names = set(self.caller.defaults) | set(self.caller.values(inputs))
            self._backward_call = plan_backward_call(
                self.model_file.backward,
                label=self.label,
                role=_name_of(self.model_file.backward, "backward"),
                outputs=len(outputs.arrays),
                scalar=len(outputs.arrays) == 1 and outputs.arrays[0].ndim == 0,
                values=names,
            )
        return self._backward_call

    def _require_linear(
        self, once: object, twice: object, inputs: Inputs, names: Sequence[str]
    ) -> None:
        """A backward is linear in the gradient of forward's output: backward(2 v) is
        2 backward(v). One that is not takes something else there (AL, the output itself)."""
        first = self._gradients(once, inputs)
        second = self._gradients(twice, inputs)
        for name, gradient in first.items():
            other = second.get(name)
            if gradient is None or other is None:
                continue
            size = float(np.max(np.abs(other), initial=0.0)) + 2 * float(
                np.max(np.abs(gradient), initial=0.0)
            )
            if float(np.max(np.abs(other - 2 * gradient), initial=0.0)) > _LINEAR * size:
                role = _name_of(self.model_file.backward, "backward")
                taken = " and ".join(names)
                raise UserCodeError(
                    f"{self.label}: {role} is not linear in {taken} (twice {taken} does not give "
                    f"twice d{name}), so {taken} is not the gradient of forward's output: {role} "
                    "differentiates a loss of forward's output that gradcheck cannot see; check "
                    "a function returning (loss, gradients), or a backward taking dout"
                )

    def _derivative(self, inputs: Inputs, cotangents: Sequence[Array]) -> Gradients:
        """The derivative's result, chained with the cotangent for an array forward: v times
        the elementwise derivative, or v contracted with the Jacobian."""
        derivative = self.model_file.backward
        assert derivative is not None
        role = _name_of(derivative, "gradient")
        args, kwargs = self.caller.arguments(inputs)
        result = self.caller.call(role, derivative, args, kwargs)
        return self._chained(result, inputs, cotangents)

    def _chained(self, result: object, inputs: Inputs, cotangents: Sequence[Array]) -> Gradients:
        """A derivative's `result` as gradients by name, chained with the cotangent."""
        role = _name_of(self.model_file.backward, "gradient")
        if not cotangents:
            return self._gradients(result, inputs, role=role)
        (v,) = cotangents
        if isinstance(result, Mapping):
            chained: object = {k: self._chain(p, v, inputs, role) for k, p in result.items()}
        elif isinstance(result, (tuple, list)):
            chained = tuple(self._chain(p, v, inputs, role) for p in result)
        else:
            chained = self._chain(result, v, inputs, role)
        return self._gradients(chained, inputs, role=role)

    def _chain(self, part: object, v: Array, inputs: Inputs, role: str) -> object:
        derivative = numeric(part)
        if derivative is None:
            return part  # None, or what the gradient parser names as not numbers
        shapes = {tuple(np.shape(a)) for a in inputs.values()}
        if _broadcasts_to(derivative.shape, v.shape):  # elementwise (a scalar slope too)
            return v * derivative
        if any(derivative.shape == v.shape + s for s in shapes):
            return np.tensordot(v, derivative, axes=v.ndim)
        raise UserCodeError(
            f"{self.label}: {role} returned shape {derivative.shape}; for forward's output of "
            f"shape {v.shape} it must be the elementwise derivative (shape {v.shape}) or the "
            "Jacobian (the output's shape, then the input's)"
        )

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
            array = numeric(part)
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

    def gradients_of(
        self, result: object, inputs: Inputs, cotangents: Sequence[Array]
    ) -> Gradients:
        """What one call of `backward_call`'s function returned, as gradients by input name."""
        if self.model_file.convention == "derivative":
            return self._chained(result, inputs, cotangents)
        return self._gradients(result, inputs)

    def forward_call(self, inputs: Inputs) -> NamedCall:
        """forward's call at `inputs`, each argument named as forward's parameter is."""
        caller = self.caller
        args, kwargs = caller.arguments(inputs)
        own = set(assemble(inputs))

        def argument(name: str, value: object) -> Argument:
            return Argument(name, INPUT if name in own else PARAM, value)

        return NamedCall(
            _name_of(self.model_file.forward, "forward"),
            self.model_file.forward,
            tuple(argument(n, v) for n, v in zip(caller.positional, args, strict=False)),
            tuple((n, argument(n, v)) for n, v in kwargs.items()),
            raised_as="forward",
        )

    def backward_call(
        self, inputs: Inputs, cotangents: Sequence[Array], outputs: Outputs
    ) -> NamedCall | None:
        """backward's call at `inputs` for `cotangents` after the forward call that gave
        `outputs` (a layer's cache), each argument named as backward's parameter is; None for
        a loss, which has no backward of its own."""
        convention = self.model_file.convention
        backward = self.model_file.backward
        if convention == "loss" or backward is None or hasattr(backward, "gradcheck_stand_in"):
            return None
        caller = self.caller
        own = set(assemble(inputs))
        role = _name_of(backward, "backward" if convention != "derivative" else "gradient")
        raised_as = role if convention == "derivative" else "backward"
        if convention != "layer":
            extra = [] if convention == "derivative" else list(cotangents)
            args, kwargs = caller.arguments(inputs, extra=extra)
            names = [*caller.positional[: len(args) - len(extra)], *_extra_names(backward, extra)]
            given = len(args) - len(extra)
            positional = tuple(
                Argument(n, DOUT if i >= given else INPUT if n in own else PARAM, v)
                for i, (n, v) in enumerate(zip(names, args, strict=True))
            )
            keywords = tuple(
                (n, Argument(n, INPUT if n in own else PARAM, v)) for n, v in kwargs.items()
            )
            return NamedCall(role, backward, positional, keywords, raised_as)
        douts: list[object] = list(cotangents) if cotangents else [np.float64(1.0)]
        plan = self._plan(inputs, outputs)
        values = {**caller.defaults, **caller.values(inputs)}
        # A layer object's backward(dout) keeps its cache in the instance: `self.x`.
        cache_name = getattr(backward, "gradcheck_cache_name", None)

        def argument(slot: Slot) -> Argument:
            if slot.kind == COTANGENT:
                return Argument(slot.parameter or "dout", DOUT, douts[slot.index])
            if slot.kind == CACHE:
                return Argument(cache_name or slot.parameter or "cache", CACHE, outputs.cache)
            kind = INPUT if slot.name in own else PARAM
            return Argument(slot.parameter or slot.name, kind, values[slot.name])

        return NamedCall(
            role,
            backward,
            tuple(argument(slot) for slot in plan.positional),
            tuple((name, argument(slot)) for name, slot in plan.keywords),
            raised_as,
        )

    def _gradients(
        self, result: object, inputs: Inputs, scale: float = 1.0, role: str | None = None
    ) -> Gradients:
        if role is None:
            role = "backward" if self.model_file.convention != "loss" else self.model_file.name
        parsed: Parsed = parse_gradients(result, inputs, label=self.label, role=role, scale=scale)
        self.reshaped.update(parsed.reshaped)
        return parsed.gradients


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of `shape` broadcasts to `target` without growing it."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1], strict=False))


def _extra_names(backward: object, extra: Sequence[object]) -> list[str]:
    """The names backward's signature gives the arguments after forward's (grad_output)."""
    default = [
        "grad_output" if len(extra) == 1 else f"grad_output{i + 1}" for i in range(len(extra))
    ]
    try:
        parameters = list(inspect.signature(backward).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    positional = [
        p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < len(extra):
        return default
    return positional[len(positional) - len(extra) :]


def _name_of(function: object, default: str) -> str:
    name = getattr(function, "__name__", None)
    return name if isinstance(name, str) and name.isidentifier() else default
