"""Which framework a model file's function belongs to, without importing one.

A framework is looked for only when it is already imported (in `sys.modules`: the user's file
imported it); a numpy model file costs a dictionary lookup. Then, for the object NAME (or the
file's `forward`):

- a `torch.autograd.Function` subclass, a custom operator (`torch.library.custom_op`, or
  `torch.ops.NS.NAME` registered with `torch.library`), or a `torch.nn.Module`: PyTorch;
- a function decorated with `jax.custom_vjp` or `jax.custom_jvp`, or wrapped by `jax.jit`: JAX;
- any other Python function: the framework its code refers to by a global name (the module
  `torch` or `jax.numpy`, anything taken from them, or one of the objects above), directly or
  through the file's own functions it calls, three calls deep;
- a function that names neither but whose example inputs are tensors or JAX arrays
  (`framework_of_examples`: `x.exp().log1p()`). Any other function is a numpy function.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, Iterator, Mapping

FRAMEWORKS = ("torch", "jax")
DEPTH = 3


def imported() -> bool:
    """Whether any framework is imported at all (else nothing can be a framework's)."""
    return any(name in sys.modules for name in FRAMEWORKS)


def framework_of(value: object, depth: int = 0) -> str | None:
    """torch, jax or None (see the module docstring)."""
    own = own_framework(value)
    if own is not None:
        return own
    if depth >= DEPTH or not inspect.isfunction(value):
        return None
    for target in _globals_used(value):
        if isinstance(target, types.ModuleType):
            found = _module_framework(target.__name__)
        else:
            found = _module_framework(getattr(target, "__module__", None) or "")
            if found is None and target is not value:
                found = framework_of(target, depth + 1)
        if found is not None:
            return found
    return None


def framework_of_examples(example_inputs: Callable[[], object] | None) -> str | None:
    """torch or jax when a function's example inputs are that framework's arrays: a function of
    tensor methods alone (`x.exp().log1p()`) names neither in its code. None when there are
    none, they are numpy's, or example_inputs() raises (the check says so when it calls it)."""
    if example_inputs is None or not imported():
        return None
    try:
        given = example_inputs()
    except Exception:  # the user's error is reported where the inputs are read
        return None
    values = given.values() if isinstance(given, Mapping) else ()
    for value in values:
        root = type(value).__module__.split(".")[0]
        if root in FRAMEWORKS or root == "jaxlib":
            return "jax" if root.startswith("jax") else "torch"
    return None


def own_framework(value: object) -> str | None:
    """torch or jax when the object itself is a framework's (a Function, an operator, a Module,
    a custom_vjp/custom_jvp/jit function), whatever its code refers to."""
    torch = sys.modules.get("torch")
    if torch is not None:
        function = getattr(getattr(torch, "autograd", None), "Function", None)
        if isinstance(value, type) and function is not None and issubclass(value, function):
            return "torch"
        if is_torch_op(value):
            return "torch"
        module = getattr(getattr(torch, "nn", None), "Module", None)
        if module is not None and isinstance(value, module):
            return "torch"
    jax = sys.modules.get("jax")
    if jax is not None:
        custom = tuple(
            kind
            for kind in (getattr(jax, "custom_vjp", None), getattr(jax, "custom_jvp", None))
            if isinstance(kind, type)
        )
        if custom and isinstance(value, custom):
            return "jax"
        if type(value).__module__.startswith("jax") and callable(value):
            return "jax"  # jax.jit's wrapper (jaxlib's PjitFunction)
    return None


def is_torch_op(value: object) -> bool:
    """A custom operator: `torch.library.custom_op`'s CustomOpDef, or `torch.ops.NS.NAME`."""
    kind = type(value)
    return kind.__module__.startswith("torch") and kind.__name__ in {
        "CustomOpDef",
        "OpOverloadPacket",
        "OpOverload",
    }


def _module_framework(name: str) -> str | None:
    root = name.partition(".")[0]
    if root in FRAMEWORKS and root in sys.modules:
        return root
    if root == "jaxlib" and "jax" in sys.modules:
        return "jax"
    return None


def _globals_used(function: types.FunctionType) -> Iterator[object]:
    """The global values a function's code (and the code nested in it) names."""
    namespace = function.__globals__
    builtins = namespace.get("__builtins__")
    codes = [function.__code__]
    while codes:
        code = codes.pop()
        for name in code.co_names:
            if name in namespace:
                yield namespace[name]
            elif isinstance(builtins, dict) and name in builtins:
                continue
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
