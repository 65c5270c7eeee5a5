"""A PyTorch nn.Module instance as a model: its trainable parameters are inputs after its
forward's own, so that their gradients (what its backward computes for weight and bias) are
checked as a layer's are. torch is imported only by the user's file: nothing here imports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def with_module_parameters(
    torch: Any,
    module: Any,
    parameters: list[inspect.Parameter],
    example_inputs: Callable[[], object] | None,
) -> tuple[list[inspect.Parameter], Callable[..., object], Callable[[], object]]:
    """An nn.Module's trainable parameters as inputs after its forward's own (`weight`,
    `bias`; `layers_0_weight` for `layers.0.weight`): their gradients are checked too, as a
    layer's are. The module is called through torch.func.functional_call with the check's
    values of them; its example inputs get the module's current values (what the caller's
    example_inputs() gives for the same name wins)."""
    taken = {p.name for p in parameters}
    exposed: list[tuple[str, str]] = []
    for path, tensor in module.named_parameters():
        if not tensor.requires_grad:
            continue
        name = path.replace(".", "_")
        name = name if name.isidentifier() else f"p_{name}"
        while name in taken:
            name += "_"
        taken.add(name)
        exposed.append((name, path))
    # Keyword-only, with defaults: after forward's own (some of which may have defaults).
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name, _ in exposed
    ]
    own = len(parameters)

    def call(*arguments: object) -> object:
        values = {path: arguments[own + k] for k, (_, path) in enumerate(exposed)}
        return torch.func.functional_call(module, values, tuple(arguments[:own]))

    def with_parameters() -> object:
        given = example_inputs() if example_inputs is not None else {}
        if not isinstance(given, dict):
            return given  # subject/ says what example_inputs() must return
        current = {name: module.get_parameter(path).detach().clone() for name, path in exposed}
        return {**current, **given}

    with_parameters.__name__ = getattr(example_inputs, "__name__", "example_inputs")
    return [*parameters, *extra], call, with_parameters
