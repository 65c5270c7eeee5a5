"""PyTorch and JAX at the edge: a framework's function with a hand-written backward (a
`torch.autograd.Function`, a custom operator, a `jax.custom_vjp`) as the plain convention's
functions over named numpy arrays, so that `subject/` binds it like any numpy model and nothing
below it imports a framework.

`adapt(module, path, entry)` is asked first by `subject.conventions` for every model file: it
answers None at once unless the file's code imported torch or jax, and otherwise looks at NAME
(or the file's `forward`) as `detection` says; `adapt_function` does the same for a function
handed over in Python (the API). A framework is imported only by the user's code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from gradcheck_cli.frameworks.adapted import Adapted, Param, Where
from gradcheck_cli.frameworks.detection import (
    framework_of,
    framework_of_examples,
    imported,
    own_framework,
)

__all__ = ["Adapted", "Param", "Where", "adapt", "adapt_function", "forward_is_a_framework_model"]


def adapt(
    module: ModuleType, path: Path, entry: str | None, *, device: str | None = None
) -> Adapted | None:
    """The framework function NAME (`entry`, else `forward`) of an imported model file, adapted;
    None for a numpy model file (a layer's NAME_forward/NAME_backward pair, a file's forward with
    its own numpy backward, or functions that use no framework)."""
    if not imported():
        return None
    namespace = vars(module)
    if entry is None:
        value = namespace.get("forward")
        partner = namespace.get("backward")
    else:
        value = namespace.get(entry)
        partner = namespace.get(f"{entry}_backward")
        if callable(namespace.get(f"{entry}_forward")) and callable(partner):
            return None  # the layer convention
    if value is None or not callable(value):
        return None
    if entry is None and callable(partner) and own_framework(value) is None:
        return None  # forward with a numpy backward of its own: the plain convention
    examples = namespace.get(f"{entry}_example_inputs") if entry else None
    examples = examples if callable(examples) else namespace.get("example_inputs")
    examples = examples if callable(examples) else None
    framework = framework_of(value) or framework_of_examples(examples)
    if framework is None:
        return None
    return adapt_function(
        value, Where(path), entry, example_inputs=examples, device=device, framework=framework
    )


def adapt_function(
    value: object,
    where: Where,
    entry: str | None,
    *,
    example_inputs: Callable[[], object] | None,
    device: str | None = None,
    framework: str | None = None,
) -> Adapted | None:
    """A PyTorch or JAX function (a Function class, a custom op, a custom_vjp function, any
    function of either), adapted; None when it is neither framework's. `where` names the file
    it comes from in messages; `example_inputs` gives its inputs (tensors or arrays by name);
    `framework` says whose it is where its code does not (a function of tensor methods alone)."""
    framework = framework or framework_of(value)
    if framework is None:
        return None
    if framework == "torch":
        from gradcheck_cli.frameworks.torch_model import adapt_torch

        return adapt_torch(
            value, where=where, entry=entry, example_inputs=example_inputs, device_spec=device
        )
    from gradcheck_cli.frameworks.jax_model import adapt_jax

    return adapt_jax(
        value, where=where, entry=entry, example_inputs=example_inputs, device_spec=device
    )


def forward_is_a_framework_model(module: ModuleType) -> bool:
    """Whether the file's `forward` is one framework model as it stands (a PyTorch or JAX
    function whose backward is the framework's), as `adapt(module, path, None)` would take it."""
    if not imported():
        return False
    value = vars(module).get("forward")
    partner = vars(module).get("backward")
    if not callable(value):
        return False
    if callable(partner) and own_framework(value) is None:
        return False
    return framework_of(value) is not None
