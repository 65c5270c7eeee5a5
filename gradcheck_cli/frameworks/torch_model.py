"""PyTorch functions with a hand-written backward, as the plain convention's numpy functions.

What is adapted: a `torch.autograd.Function` subclass (called through `.apply`), a custom
operator (`torch.library.custom_op` with `register_autograd`, or `torch.ops.NS.NAME`), a
`torch.nn.Module`, or any Python function on tensors (one built on a Function or an operator).

- Values: floating numpy arrays become tensors on the chosen device, in their own dtype (the
  check's, float64 unless --dtype float32); integer and boolean arrays become tensors too (they
  are constants, never perturbed); anything else is passed as it is.
- The analytic side is `torch.autograd.grad` of the outputs, with the check's cotangents: for a
  Function or an operator, the user's backward. A Function's backward is checked as it returns
  (one gradient per input, a tensor or None; None is zero, as PyTorch takes it); PyTorch's own
  complaints about an operator's backward are said in one line naming the file and line.
- `--order 2` differentiates the backward again (double backward); `--mode jvp` is
  `torch.func.jvp`, refused where no forward-mode rule exists (a Function without a `jvp`
  staticmethod, a custom operator), which PyTorch would otherwise answer with zeros.
- Batched evaluation: `torch.func.vmap` over moved copies of one input. A Function's own
  `forward` is batched (it is the same code `.apply` runs, without the graph), a custom
  operator's Python implementation likewise; where vmap fails (no batching rule, control flow
  on values, `.item()`), the adapter stops trying and the points go one at a time.

torch is imported only here, and this module only once the user's file imported torch.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gradcheck_cli.errors import InputError
from gradcheck_cli.frameworks.adapted import (
    Adapted,
    Adapter,
    AdapterError,
    Array,
    Param,
    Where,
    describe,
    one_line,
    signature_parameters,
)
from gradcheck_cli.frameworks.detection import is_torch_op
from gradcheck_cli.frameworks.effects import EffectProbe
from gradcheck_cli.frameworks.torch_common import NOT_WRITABLE
from gradcheck_cli.frameworks.torch_common import quiet as _quiet
from gradcheck_cli.frameworks.torch_common import torch_module as _torch
from gradcheck_cli.frameworks.torch_effects import TorchProbe, user_namespaces, zeroed_empties
from gradcheck_cli.frameworks.torch_modules import with_module_parameters


@contextlib.contextmanager
def _no_vmap_fallback() -> Iterator[None]:
    """vmap without its slow fallback (one call per row, and a warning) for operators without
    a batching rule: those raise instead, and are evaluated one point at a time by gradcheck."""
    functorch = getattr(_torch()._C, "_functorch", None)
    switch = getattr(functorch, "_set_vmap_fallback_enabled", None)
    state = getattr(functorch, "_is_vmap_fallback_enabled", None)
    if switch is None or state is None:
        yield
        return
    before = state()
    switch(False)
    try:
        yield
    finally:
        switch(before)


class _NoGraphContext:
    """What a Function's `forward(ctx, ...)` may use when it runs outside `.apply` (batched):
    saving for backward and marking outputs do nothing, nothing is recorded."""

    def __init__(self, inputs: int) -> None:
        self.needs_input_grad = (False,) * inputs
        self.materialize_grads = True

    def save_for_backward(self, *tensors: object) -> None: ...

    def save_for_forward(self, *tensors: object) -> None: ...

    def mark_dirty(self, *tensors: object) -> None: ...

    def mark_non_differentiable(self, *tensors: object) -> None: ...

    def set_materialize_grads(self, value: bool) -> None: ...


def resolve_device(spec: str | None) -> Any:
    """The torch.device for --device, or InputError when this machine has no such device."""
    torch = _torch()
    if spec is None:
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise InputError(
            f"--device {spec}: not a PyTorch device (cpu, cuda, cuda:1, mps, ...)"
        ) from None
    absent = None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            absent = f"no CUDA device here (torch {torch.__version__}: {build})"
        elif device.index is not None and device.index >= torch.cuda.device_count():
            absent = f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    elif device.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            absent = "no Apple MPS device here"
    elif device.type == "meta":
        absent = "meta tensors hold no values to difference"
    elif device.type != "cpu":
        try:
            torch.empty(1, device=device)
        except Exception as error:  # any device torch cannot place a tensor on
            absent = f"PyTorch cannot place a tensor there ({one_line(str(error))})"
    if absent is not None:
        raise InputError(f"--device {spec}: {absent}; leave --device out to run on the CPU")
    return device


class TorchAdapter(Adapter):
    """A PyTorch callable as the plain convention's numpy functions (see the module docstring)."""

    framework = "torch"

    def __init__(
        self,
        *,
        where: Where,
        label: str,
        parameters: list[inspect.Parameter],
        defined_at: object,
        call: Callable[..., object],
        batch_forward: Callable[..., object] | None,
        backward_at: object | None,
        device: Any,
        forward_mode: bool = True,
    ) -> None:
        super().__init__(where=where, label=label, parameters=parameters, defined_at=defined_at)
        # torch.from_numpy warns about the read-only views the caller hands over (our doing,
        # not the user's), as subject.calling.Caller says too: silenced for that message alone.
        warnings.filterwarnings("ignore", message=NOT_WRITABLE, category=UserWarning)
        self.call = call
        self.batch_forward = batch_forward
        self.backward_at = backward_at
        """The user's backward, whose line messages about what it returned name."""
        self.namespaces = user_namespaces(defined_at, backward_at)
        """The globals of the user's forward and backward, where torch.empty may have a name."""
        self.device = device
        self.forward_mode = forward_mode
        self.forward_role = label
        """How the side-effect checks name forward: `SoftplusAffine.forward`, `scaled_tanh`."""

    def effect_probe(self) -> EffectProbe:
        return TorchProbe(self)

    # --- values ----------------------------------------------------------------------------------

    def tensor(self, value: object, *, grad: bool = False) -> object:
        """A numpy array as a tensor on the device: floating ones in the adapter's precision
        (bfloat16, from float64 arrays holding bfloat16 numbers: exact), else their own."""
        torch = _torch()
        if not isinstance(value, np.ndarray):
            return value
        array = np.ascontiguousarray(value)
        low = torch.bfloat16 if self.precision == "bfloat16" and array.dtype.kind == "f" else None
        if grad:
            tensor = torch.tensor(array, device=self.device)
            if low is not None:
                tensor = tensor.to(low)
            tensor.requires_grad_(True)
        else:
            tensor = torch.from_numpy(array)
            if self.device.type != "cpu":
                tensor = tensor.to(self.device)
            if low is not None:
                tensor = tensor.to(low)
        return tensor

    def tensors(self, values: list[object], grad: Sequence[int] = ()) -> list[object]:
        return [self.tensor(v, grad=i in grad) for i, v in enumerate(values)]

    def numpy(self, tensor: Any) -> Array:
        torch = _torch()
        tensor = tensor.detach()
        if tensor.dtype == torch.bfloat16:  # numpy has none: float64 holds every one exactly
            tensor = tensor.double()
        return np.asarray(tensor.cpu().numpy())

    def floating_outputs(self, result: object) -> list[Any]:
        """The output tensors that can be differentiated; a one-line error for anything that
        is not a tensor."""
        torch = _torch()
        parts: list[Any] = list(result) if isinstance(result, (tuple, list)) else [result]
        for part in parts:
            if not isinstance(part, torch.Tensor):
                shown = describe(result) if part is result else f"{describe(part)} among them"
                raise self.where.error(
                    self.defined_at,
                    f"{self.label} returned {shown}; it must return a tensor (or a tuple of "
                    "tensors)",
                )
        floating = [p for p in parts if p.is_floating_point()]
        if not floating:
            raise self.where.error(
                self.defined_at,
                f"{self.label} returned no floating-point tensor: nothing to differentiate",
            )
        return floating

    # --- the framework's part --------------------------------------------------------------------

    def evaluate(self, values: list[object]) -> list[Array]:
        """The hot path of one-at-a-time evaluation: the user's call and nothing around it but
        tensors made without copies (no warnings context: a few microseconds a call)."""
        torch = _torch()
        arguments = self.tensors(values)
        with torch.no_grad():
            result = self.call(*arguments)
        return [self.numpy(t) for t in self.floating_outputs(result)]

    def _graph(self, values: list[object]) -> tuple[list[int], list[Any], list[Any]]:
        """The inputs to differentiate (positions, leaf tensors) and the outputs, recorded."""
        torch = _torch()
        positions = self.floating(values)
        arguments = self.tensors(values, grad=positions)
        with torch.enable_grad(), _quiet():
            outputs = self.floating_outputs(self.call(*arguments))
        return positions, [arguments[i] for i in positions], outputs

    def vjp(self, values: list[object], cotangents: list[Array] | None) -> dict[int, Array]:
        torch = _torch()
        positions, leaves, outputs = self._graph(values)
        if cotangents is None:
            if len(outputs) != 1 or outputs[0].numel() != 1:
                shapes = ", ".join(str(tuple(o.shape)) for o in outputs)
                raise self.where.error(
                    self.defined_at, f"{self.label} returned shape {shapes}; expected a scalar"
                )
            seeds = [torch.ones_like(outputs[0])]
        else:
            with _quiet():
                seeds = [
                    torch.as_tensor(np.ascontiguousarray(c), device=self.device, dtype=o.dtype)
                    for c, o in zip(cotangents, outputs, strict=True)
                ]
        pairs = [(o, s) for o, s in zip(outputs, seeds, strict=True) if o.requires_grad]
        if not pairs:
            raise self.where.error(
                self.defined_at,
                f"{self.label}'s output does not require grad: autograd cannot reach a "
                "backward (code that leaves torch, through numpy or .detach(), needs a "
                "torch.autograd.Function with its own backward)",
            )
        try:
            # What a backward reads before it writes is zeros, not what an earlier call left:
            # the side-effect checks name such a read; the numbers stay the same every call.
            with _quiet(), zeroed_empties(self.namespaces):
                grads = torch.autograd.grad(
                    [o for o, _ in pairs], leaves, [s for _, s in pairs], allow_unused=True
                )
        except RuntimeError as error:
            raise self._backward_problem(error) from error
        return {
            i: self.numpy(g) if g is not None else np.zeros_like(values[i])
            for i, g in zip(positions, grads, strict=True)
        }

    def _backward_problem(self, error: RuntimeError) -> Exception:
        """PyTorch's complaint about what a backward returned, as one line naming the user's
        backward; any other error as it is (the user's own line is in its traceback)."""
        message = one_line(str(error))
        shape = re.search(
            r"invalid gradient at index (\d+) - got \[([^\]]*)\] but expected shape compatible "
            r"with \[([^\]]*)\]",
            message,
        )
        if shape is not None:
            index = int(shape.group(1))
            name = self.names[index] if index < len(self.names) else f"input {index + 1}"
            said = (
                f"returned a gradient of shape {_shape(shape.group(2))} for {name}, whose shape "
                f"is {_shape(shape.group(3))}"
            )
        elif "incorrect number of gradients" in message:
            said = f"returned the wrong number of gradients (PyTorch says: {message})"
        elif "different than None at position" in message:
            said = f"returned a gradient for an argument that takes none (PyTorch says: {message})"
        elif "expected Variable or None" in message:
            said = f"returned something that is neither a tensor nor None (PyTorch says: {message})"
        else:
            return error
        return self.where.error(self.backward_at, f"{self.label}'s backward {said}")

    def hessian_vector(self, values: list[object], tangents: dict[int, Array]) -> dict[int, Array]:
        torch = _torch()
        positions, leaves, outputs = self._graph(values)
        if len(outputs) != 1 or outputs[0].numel() != 1:
            raise self.where.error(
                self.defined_at,
                f"--order 2 checks the Hessian of a scalar; {self.label} returns an array",
            )
        try:
            with _quiet():
                grads = torch.autograd.grad(
                    outputs[0], leaves, create_graph=True, allow_unused=True
                )
        except RuntimeError as error:
            raise self._backward_problem(error) from error
        moved = [g for g in grads if g is not None and g.requires_grad]
        if not moved:
            raise self.where.error(
                self.backward_at,
                f"{self.label}'s gradient does not depend on its inputs through torch "
                "operations, so PyTorch cannot differentiate it again (a backward marked "
                "once_differentiable, one that leaves torch, or a linear function): --order 2 "
                "needs double backward",
            )
        with _quiet():
            total = sum(
                (g * torch.as_tensor(tangents[i], device=self.device)).sum()
                for i, g in zip(positions, grads, strict=True)
                if g is not None and g.requires_grad
            )
            second = torch.autograd.grad(total, leaves, allow_unused=True)
        return {
            i: self.numpy(h) if h is not None else np.zeros_like(values[i])
            for i, h in zip(positions, second, strict=True)
        }

    def jacobian_vector(self, values: list[object], tangents: dict[int, Array]) -> list[Array]:
        """Forward mode with dual tensors (torch.autograd.forward_ad, what torch.func.jvp runs
        on, and which also takes the Functions torch.func refuses: those without
        setup_context). Where an operation has no forward-mode formula PyTorch's jvp answers
        zeros; a dual tensor shows it as a tangent that is None, refused here."""
        torch = _torch()
        if not self.forward_mode:
            raise self._no_forward_mode("torch.library registers backward formulas only")
        forward_ad = torch.autograd.forward_ad
        arguments = self.tensors(values)
        try:
            with torch.no_grad(), _quiet(), forward_ad.dual_level():
                for i, tangent in tangents.items():
                    direction = torch.as_tensor(
                        tangent, device=self.device, dtype=getattr(arguments[i], "dtype", None)
                    )
                    arguments[i] = forward_ad.make_dual(arguments[i], direction)
                outputs = self.floating_outputs(self.call(*arguments))
                moved = [forward_ad.unpack_dual(o).tangent for o in outputs]
        except NotImplementedError as error:
            raise self._no_forward_mode(one_line(str(error))) from error
        if any(t is None for t in moved):
            raise self._no_forward_mode("an operation in it has no forward-mode formula")
        return [self.numpy(t) for t in moved]

    def _no_forward_mode(self, why: str) -> AdapterError:
        return self.where.error(
            self.defined_at,
            f"--mode jvp needs a forward-mode rule, and {self.label} has none ({why}; a "
            "torch.autograd.Function gets one from a jvp staticmethod)",
        )

    def batched(self, values: list[object], position: int, stacked: Array) -> list[Array] | None:
        torch = _torch()
        if self.batch_forward is None:
            return None
        arguments = self.tensors(values)
        arguments[position] = self.tensor(stacked)
        in_dims = tuple(0 if i == position else None for i in range(len(arguments)))
        try:
            with torch.no_grad(), _quiet(), _no_vmap_fallback():
                result = torch.func.vmap(self.batch_forward, in_dims=in_dims)(*arguments)
                outputs = self.floating_outputs(result)
        except Exception:  # no batching rule, control flow on values, .item(): one at a time
            self.batch_forward = None
            return None
        return [self.numpy(o) for o in outputs]

    def convert_example(self, value: object) -> object:
        torch = _torch()
        if isinstance(value, torch.Tensor):
            return self.numpy(value)
        if isinstance(value, (bool, int, float, np.generic)):
            return Param(value)
        return value


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _shape(dimensions: str) -> str:
    """PyTorch's `2, 3` as Python's (2, 3), `2` as (2,)."""
    sizes = [d.strip() for d in dimensions.split(",") if d.strip()]
    return f"({sizes[0]},)" if len(sizes) == 1 else f"({', '.join(sizes)})"


def _checked_function(function: type, where: Where, names: list[str]) -> type:
    """A subclass of the user's Function whose backward says, in one line naming the line of
    the user's backward, what is wrong with what it returned: None (a missing return?), a count
    other than forward's inputs, or something that is neither a tensor nor None."""
    torch = _torch()
    user_backward = function.backward  # type: ignore[attr-defined]
    label = function.__name__

    def backward(ctx: Any, *grads: object) -> object:
        result = user_backward(ctx, *grads)
        expected = len(ctx.needs_input_grad)
        listed = ", ".join(names) if len(names) == expected else f"{expected} inputs"
        if result is None:
            raise where.error(
                user_backward,
                f"{label}.backward returned None (a missing return?); it returns one gradient "
                f"per input of forward ({listed}), None for an input without one",
            )
        parts = result if isinstance(result, tuple) else (result,)
        if len(parts) != expected:
            raise where.error(
                user_backward,
                f"{label}.backward returned {_count(len(parts), 'gradient')}, but forward takes "
                f"{_count(expected, 'input')} ({listed}): one gradient per input, None for an "
                "input without one",
            )
        for index, part in enumerate(parts):
            if part is not None and not isinstance(part, torch.Tensor):
                name = names[index] if len(names) == expected else f"input {index + 1}"
                raise where.error(
                    user_backward,
                    f"{label}.backward returned {describe(part)} for {name}; a gradient is a "
                    "tensor (or None)",
                )
        return result

    backward.gradcheck_user_backward = user_backward  # type: ignore[attr-defined]
    return type(
        function.__name__,
        (function,),
        {
            "backward": staticmethod(backward),
            "__module__": function.__module__,
            "__qualname__": function.__qualname__,
        },
    )


def adapt_torch(
    value: object,
    *,
    where: Where,
    entry: str | None,
    example_inputs: Callable[[], object] | None,
    device_spec: str | None,
) -> Adapted:
    """The adapter for a PyTorch object of a model file (see the module docstring)."""
    torch = _torch()
    device = resolve_device(device_spec)
    function_base = torch.autograd.Function
    if isinstance(value, type) and issubclass(value, function_base):
        function: Any = value
        new_style = function.setup_context is not function_base.setup_context
        label = function.__name__
        raw = function.forward
        parameters = signature_parameters(
            where, raw, f"{label}.forward", skip=0 if new_style else 1
        )
        names = [p.name for p in parameters]
        checked = _checked_function(function, where, names)

        def direct(*arguments: object) -> object:
            # The user's forward itself, as .apply runs it, without recording a graph.
            return (
                raw(*arguments) if new_style else raw(_NoGraphContext(len(arguments)), *arguments)
            )

        adapter = TorchAdapter(
            where=where,
            label=label,
            parameters=parameters,
            defined_at=raw,
            call=checked.apply,  # type: ignore[attr-defined]
            batch_forward=direct,
            backward_at=value.backward,  # type: ignore[attr-defined]
            device=device,
        )
        adapter.forward_role = f"{label}.forward"
        kind, call_text = "a torch.autograd.Function", f"{label}.apply"
    elif is_torch_op(value):
        label, parameters, implementation, backward_at = _operator(value, where)
        adapter = TorchAdapter(
            where=where,
            label=label,
            parameters=parameters,
            defined_at=implementation or value,
            call=value,  # type: ignore[arg-type]
            batch_forward=implementation or value,  # type: ignore[arg-type]
            backward_at=backward_at,
            device=device,
            forward_mode=False,
        )
        kind, call_text = "a custom operator", label
    else:
        module_class = torch.nn.Module
        is_module = isinstance(value, module_class)
        label = (
            type(value).__name__ if is_module else getattr(value, "__name__", type(value).__name__)
        )
        callable_value: Any = value  # a Module's forward, or the function itself
        target = callable_value.forward if is_module else callable_value
        parameters = signature_parameters(where, target, f"{label}.forward" if is_module else label)
        call: Callable[..., object] = value  # type: ignore[assignment]
        if is_module:
            parameters, call, example_inputs = with_module_parameters(
                torch, value, parameters, example_inputs
            )
        adapter = TorchAdapter(
            where=where,
            label=label,
            parameters=parameters,
            defined_at=target,
            call=call,
            batch_forward=call,
            backward_at=target,
            device=device,
        )
        if is_module:
            adapter.forward_role = f"{label}.forward"
        kind = "a torch.nn.Module" if is_module else "a function on tensors"
        call_text = label
    arguments = ", ".join(adapter.names)
    formula = (
        f"{call_text}({arguments}) from {where.path.name} ({kind}; torch {torch.__version__}, "
        f"{device})"
    )
    return adapter.adapted(
        entry=entry,
        device=device_spec,
        name=entry or label,
        formula=formula,
        example_inputs=example_inputs,
    )


def _operator(
    value: object, where: Where
) -> tuple[str, list[inspect.Parameter], Callable[..., object] | None, object | None]:
    """A custom operator's label, parameters, Python implementation (batched with vmap where no
    device-specific kernel replaces it) and registered backward."""
    init = getattr(value, "_init_fn", None)
    if init is not None:  # torch.library.custom_op
        label = str(getattr(init, "__name__", None) or getattr(value, "_name", "op"))
        parameters = signature_parameters(where, init, label)
        # A kernel for a device type replaces the Python implementation there (None: for all).
        kernels = [k for k in getattr(value, "_backend_fns", None) or {} if k is not None]
        implementation = None if kernels else init
        return label, parameters, implementation, getattr(value, "_backward_fn", None)
    overload = getattr(value, "default", value)
    schema = getattr(overload, "_schema", None)
    if schema is None:
        raise where.error(None, f"cannot read the schema of the operator {value!r}")
    label = str(schema.name).replace("::", ".")
    parameters = []
    for argument in schema.arguments:
        default = (
            argument.default_value if argument.has_default_value() else inspect.Parameter.empty
        )
        kind = (
            inspect.Parameter.KEYWORD_ONLY
            if getattr(argument, "kwarg_only", False)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        parameters.append(inspect.Parameter(argument.name, kind, default=default))
    return label, parameters, None, None
