"""A subject handed over in Python (the API) rather than read from files: the user's functions
as a ModelFile, and the arrays given by name as the inputs a ModelFile is bound to.

numpy functions follow the conventions of `conventions` (any callable will do); a PyTorch or
JAX function (a `torch.autograd.Function`, a function built on one or on a custom operator, a
`jax.custom_vjp` function, any function of either) is adapted by `frameworks` as a model file's
NAME is, its inputs (tensors or arrays) made numpy at the adapter's edge. Messages name the
API's keyword arguments, not command-line options.

Nothing here knows about click or rich.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from gradcheck_cli.errors import InputError
from gradcheck_cli.frameworks import Where, adapt_function
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.conventions import ADAPTED_ROLES, ModelFile, UserFunction

InputsArgument = Mapping[str, ArrayLike | Mapping[str, ArrayLike]]
"""inputs={"x": x, "parameters": {"W1": ...}}: arrays by forward's parameter names."""


def _source_of(function: object) -> Path:
    """The file a function was defined in, for messages; `<api>` where Python cannot tell. A
    wrapper is looked through (functools.wraps' __wrapped__, jax.custom_vjp's fun)."""
    for candidate in (function, *(getattr(function, a, None) for a in ("__wrapped__", "fun"))):
        try:
            source = inspect.getsourcefile(candidate)  # type: ignore[arg-type]
        except TypeError:  # a functools.partial, a callable object, a builtin, None
            continue
        if source:
            return Path(source).resolve()
    return Path("<api>")


def _label_of(function: object, name: str | None) -> str:
    target = getattr(function, "func", function)  # functools.partial
    return name or str(getattr(target, "__qualname__", type(target).__name__))


def model_from_functions(
    forward: UserFunction,
    backward: UserFunction | None,
    *,
    name: str | None = None,
    formula: str | None = None,
    convention: str = "plain",
    complex_safe: bool = False,
    hvp: UserFunction | None = None,
    jvp: UserFunction | None = None,
) -> ModelFile:
    """A ModelFile for numpy functions handed over in Python: any callable will do."""
    label = _label_of(forward, name)
    return ModelFile(
        path=_source_of(forward),
        name=label,
        formula=formula or f"{label}(...)",
        forward=forward,
        backward=backward,
        convention=convention,
        complex_safe=complex_safe,
        hvp=hvp,
        jvp=jvp,
    )


def model_from_framework_function(
    function: object,
    inputs: Mapping[str, object],
    *,
    device: str | None = None,
) -> tuple[ModelFile, dict[str, Supplied], dict[str, object]]:
    """A PyTorch or JAX function handed over in Python, and its `inputs` (tensors, arrays or
    numbers by forward's parameter names) as a file's example_inputs() would give them, made
    numpy at the adapter's edge: floating tensors are inputs, integer and boolean ones
    constants (the supplied arrays), other values parameters."""
    if not callable(function):
        raise InputError(f"check_function takes a function; got {type(function).__name__}")
    if not isinstance(inputs, Mapping) or not all(isinstance(k, str) for k in inputs):
        raise InputError(
            "inputs must be a dict of tensors or arrays by the function's parameter names"
        )
    label = _label_of(function, None)
    given = dict(inputs)

    def example_inputs() -> dict[str, object]:
        return dict(given)

    source = _source_of(function)
    adapted = adapt_function(
        function, Where(source), label, example_inputs=example_inputs, device=device
    )
    if adapted is None and _is_module_class(function):
        raise InputError(
            f"{label} is a torch.nn.Module class: give check_function an instance of it "
            f"({label}(...)), whose forward and parameters it checks"
        )
    if adapted is None or adapted.example_inputs is None:
        raise InputError(
            f"{label} is neither a PyTorch nor a JAX function: check numpy code with "
            "check_gradients(forward, backward, inputs=...) or check_layer(forward, backward, "
            "inputs)"
        )
    converted = adapted.example_inputs()
    assert isinstance(converted, Mapping)  # the adapter converts the dict it was given
    supplied: dict[str, Supplied] = {}
    params: dict[str, object] = {}
    for name, value in converted.items():
        if isinstance(value, np.ndarray):
            supplied[name] = Supplied(value, "array")
        else:
            params[name] = value
    model_file = ModelFile(
        path=source,
        entry=label,
        adapted=adapted,
        **{role: getattr(adapted, role) for role in ADAPTED_ROLES},
    )
    return model_file, supplied, params


def _is_module_class(value: object) -> bool:
    """A torch.nn.Module subclass (torch only looked up, never imported: the user's code did)."""
    torch = sys.modules.get("torch")
    module = getattr(getattr(torch, "nn", None), "Module", None)
    return isinstance(value, type) and isinstance(module, type) and issubclass(value, module)


def supplied_in_python(
    forward: Callable[..., Any],
    X: ArrayLike | None,
    W: ArrayLike | None,
    inputs: InputsArgument | None,
) -> dict[str, Supplied]:
    """The arrays given to the API, by name: `inputs={...}` (a dict of arrays is a dict of
    inputs, `parameters.W1`), or the positional pair X, W for forward's first two parameters."""
    if inputs is not None and (X is not None or W is not None):
        raise InputError("give the inputs either as X, W or as inputs={...}, not both")
    if inputs is None:
        if X is None or W is None:
            raise InputError("give the inputs as inputs={name: array, ...} (or as X, W)")
        # The positional pair feeds forward's first two parameters, whatever their names.
        names = _positional_names(forward)[:2]
        if len(names) < 2:
            raise InputError("forward takes fewer than two parameters: give inputs={...}")
        inputs = {names[0]: X, names[1]: W}
    supplied = {}
    flat: dict[Any, Any] = {}
    given: Mapping[Any, Any] = inputs
    for key, value in given.items():
        if isinstance(value, Mapping):  # a dict of arrays: each array an input, parameters.W1
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    for key, value in flat.items():
        if not isinstance(key, str):
            raise InputError(f"inputs keys must be parameter names; got {key!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise InputError(f"input {key} is not an array of real numbers (dtype {array.dtype})")
        if array.size == 0:
            raise InputError(f"input {key} is empty (shape {array.shape})")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise InputError(f"input {key} holds NaN or Inf values")
        supplied[key] = Supplied(array, "array")
    return supplied


def _positional_names(function: Callable[..., Any]) -> list[str]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in kinds]
