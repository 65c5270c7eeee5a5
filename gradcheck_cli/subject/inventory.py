"""Every layer a model file defines: what `--model FILE.py` (no `:NAME`) checks when the file
is not one model (it defines no `forward` and `backward` of the plain convention).

Found by the same conventions `--model FILE.py:NAME` resolves, each listed by the name that
selects it, in the order the file defines them:

- a layer's pair (`affine_forward`/`affine_backward`, `conv_forward_naive`, `sigmoid` returning
  (out, cache) with `sigmoid_backward`, `batchnorm_backward_alt`; a backward of a loss of the
  output with its loss): `pairs.layer_pairs`;
- a function with its derivative (`sigmoid` with `sigmoid_prime`);
- a loss function returning (loss, gradients), by its name: a `loss` among its `_`-separated
  words (`softmax_loss`, `svm_loss_naive`), when no other convention claims it;
- a class whose methods `classes.class_plan` can read (a class it cannot read, a helper or an
  exception, is not a layer);
- a framework's layer object made of the file's own class (`layer = LinearTanh(4, 3)`, a
  PyTorch Module instance), which claims its class and the file's names its forward uses.

Only what the file itself defines counts (not what it imports: CS231n's layer_utils.py imports
every layer of layers.py); names starting with `_` are the file's own business. Helpers for a
layer (`NAME_example_inputs`, `NAME_sample_inputs`, `NAME_hvp`, `NAME_jvp`) are not layers.

Standard library and the frameworks' detection (which imports no framework); nothing here
knows about numpy, click or rich.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.frameworks import forward_is_a_framework_model
from gradcheck_cli.frameworks.detection import own_framework
from gradcheck_cli.subject.classes import class_plan
from gradcheck_cli.subject.conventions import ModelFile, parameter_names, signature_of
from gradcheck_cli.subject.pairs import (
    DERIVATIVE_SUFFIXES,
    derivative_of,
    layer_pairs,
    loss_for,
)

HELPER_ROLES = ("example_inputs", "sample_inputs", "hvp", "jvp")
"""What a file may define for a layer (`affine_example_inputs`) or for all of them."""


def is_plain_model(module: ModuleType) -> bool:
    """The file is one model of the plain convention: `forward` and `backward` both defined, or
    a PyTorch or JAX `forward` whose backward is its framework's."""
    if forward_is_a_framework_model(module):
        return True
    return callable(getattr(module, "forward", None)) and callable(
        getattr(module, "backward", None)
    )


def file_layers(module: ModuleType, path: Path) -> list[str]:
    """The name of every layer, derivative, loss and class the file defines (see the module
    docstring), in the order the file defines them; each resolves with
    `conventions.model_file_from_module(module, path, name)`."""
    namespace = vars(module)
    own = {name: value for name, value in namespace.items() if _defined_here(value, module)}
    position = {name: index for index, name in enumerate(namespace)}
    found: dict[str, int] = {}
    claimed: set[str] = set()
    required, every = parameter_names(own)
    for pair in layer_pairs(own):
        found.setdefault(pair.name, position[pair.forward])
        claimed.update((pair.forward, pair.backward))
        loss = loss_for(pair, required, every)
        if loss is not None:  # compute_cost is L_model's loss, not a layer of its own
            claimed.add(loss.loss)
    functions = {n: v for n, v in own.items() if inspect.isfunction(v) and n not in claimed}
    derivatives = {
        f"{name}_{suffix}" for name in functions for suffix in DERIVATIVE_SUFFIXES
    } & set(functions)
    for name in functions:
        if name in derivatives or _is_helper(name):
            continue
        derivative = derivative_of(own, name)
        if derivative is not None or _is_loss_name(name):
            found.setdefault(name, position[name])
    # A framework's layer object the file makes of its own class (a PyTorch Module instance,
    # `layer = LinearTanh(4, 3)`) is the layer; its class and what its forward calls of the
    # file's own (the Function with the backward) are parts of it, not layers of their own.
    for name, value in namespace.items():
        if name.startswith("_") or isinstance(value, type) or name in claimed:
            continue
        cls = type(value)
        if cls.__module__ != module.__name__ or own_framework(value) is None:
            continue
        found.setdefault(name, position[name])
        claimed.add(cls.__name__)
        forward = getattr(cls, "forward", None)
        claimed.update(getattr(getattr(forward, "__code__", None), "co_names", ()))
    for name, value in own.items():
        if isinstance(value, type) and name not in claimed and _readable_class(value, name, path):
            found.setdefault(name, position[name])
    return sorted(found, key=lambda name: found[name])


def _defined_here(value: object, module: ModuleType) -> bool:
    """A function or class the file itself defines (its `__module__` is the file's)."""
    if not (inspect.isfunction(value) or isinstance(value, type)):
        return False
    return getattr(value, "__module__", None) == module.__name__


def _is_helper(name: str) -> bool:
    return name.startswith("_") or any(
        name == role or name.endswith(f"_{role}") for role in HELPER_ROLES
    )


def _is_loss_name(name: str) -> bool:
    return "loss" in (word.lower() for word in name.split("_"))


def _readable_class(cls: type, name: str, path: Path) -> bool:
    if name.startswith("_") or issubclass(cls, BaseException):
        return False
    try:
        class_plan(cls, name, path)
    except UserCodeError:
        return False
    return True


def accepted_names(model_file: ModelFile) -> tuple[set[str], set[str] | None]:
    """The names a layer takes from the command line: (arrays by `--input`/`--inputs`: forward's
    parameters; values by `--param`: forward's, a layer's backward's and a class's
    constructor's, or None when a constructor takes any keyword)."""
    inputs = set(signature_of(model_file).parameters)
    params = set(inputs)
    if model_file.convention == "layer" and model_file.backward is not None:
        params |= set(_parameters_of(model_file.backward))
    plan = model_file.of_class
    if plan is not None:
        constructor, anything = plan.constructor_parameters()
        if anything:
            return inputs, None
        params |= set(constructor)
        if plan.backward is not None:
            params |= {p.name for p in plan.method_parameters(plan.backward)}
    return inputs, params


def _parameters_of(function: object) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(function).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return {}
