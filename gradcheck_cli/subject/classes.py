"""A class as a model (`--model layers.py:Linear`): which of its methods compute the forward
pass and its derivative, found from their names and signatures.

The forward method is the one with a forward marker in its name (`forward`, `forward_pass`,
`fprop`), else `__call__`, else `function`, else `loss`. What goes with it decides the kind:

- "layer": a `backward` (a backward marker in the name) that does not take forward's
  arguments, `backward(dout)`: a layer object holding what forward cached. Its array
  attributes are inputs when backward reports their gradients (`instances`).
- "pair": a backward with a parameter named like `cache`: forward returns `(out, cache)` and
  `backward(dout, cache)` is a layer's, on the class (static methods) or an instance.
- "vjp": a backward or `gradient` taking forward's arguments and one more, the gradient of the
  output: the plain convention's `backward(x, grad_output)`.
- "derivative": `gradient(x)` (or `grad`, `derivative`, `deriv`, `prime`) taking forward's
  arguments: the derivative, as ML-From-Scratch's activation functions define it.
- "loss": `loss(...)` alone, returning `(loss, gradients)` (CS231n's models).

Nothing is instantiated here: `instances` does that once the parameters are known.
Pure standard library; nothing here knows about numpy, click or rich.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.subject.pairs import BACKWARD_MARKERS, FORWARD_MARKERS, stem

DERIVATIVE_METHODS = ("gradient", "grad", "derivative", "deriv", "prime")
PLAIN_FORWARD_METHODS = ("__call__", "function", "loss")


@dataclass(frozen=True)
class ClassPlan:
    """A class and how it is called: its forward and backward methods and their kind."""

    cls: type
    name: str
    forward: str
    backward: str | None
    """None for the loss kind: forward returns the gradients too."""
    kind: str
    """layer, pair, vjp, derivative or loss (see the module docstring)."""
    path: Path
    static: bool = False
    """Both methods are static: no instance is needed."""

    @property
    def label(self) -> str:
        return f"{self.path.name}:{self.name}"

    def method_parameters(self, method: str) -> list[inspect.Parameter]:
        """The parameters of `method` as an instance's bound method takes them (no self)."""
        return _parameters(self.cls, method, self.label)

    def constructor_parameters(self) -> tuple[list[str], bool]:
        """The names __init__ takes by keyword, and whether it takes any (**kwargs)."""
        try:
            signature = inspect.signature(self.cls)
        except (TypeError, ValueError):
            return [], False
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names = [p.name for p in signature.parameters.values() if p.kind in kinds]
        anything = any(
            p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
        )
        return names, anything

    def placeholder(self) -> Callable[..., object]:
        """A stand-in forward with the forward method's signature (without self), naming the
        parameters before the class is instantiated; calling it is a bug."""

        def not_instantiated(*args: object, **kwargs: object) -> object:
            raise AssertionError(f"{self.label} is called before it is instantiated")

        parameters = self.method_parameters(self.forward)
        not_instantiated.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        not_instantiated.__name__ = self.forward
        return not_instantiated


def class_plan(cls: type, name: str, path: Path) -> ClassPlan:
    """How the class `cls` (`--model FILE.py:name`) is called, or a `UserCodeError` saying
    which methods it lacks."""
    label = f"{path.name}:{name}"
    methods = _method_names(cls)
    forward = _forward_method(methods)
    if forward is None:
        raise UserCodeError(
            f"{label}: a class is checked through its forward method (forward, __call__, "
            f"function or loss) and backward(dout) or gradient(x); {name} defines "
            f"{_listed(methods)}"
        )
    forward_names = [p.name for p in _parameters(cls, forward, label)]
    backward = _backward_method(methods, forward)
    static = False
    if backward is not None:
        backward_names = [p.name for p in _parameters(cls, backward, label)]
        static = all(
            isinstance(inspect.getattr_static(cls, m), staticmethod) for m in (forward, backward)
        )
        if any("cache" in n.lower() for n in backward_names):
            kind = "pair"
        elif _takes_forwards_and_one_more(forward_names, backward_names):
            kind = "vjp"
        else:
            kind = "layer"
        return ClassPlan(cls, name, forward, backward, kind, path, static)
    derivative = next((m for m in DERIVATIVE_METHODS if m in methods), None)
    if derivative is not None:
        derivative_names = [p.name for p in _parameters(cls, derivative, label)]
        if len(derivative_names) == len(forward_names):
            return ClassPlan(cls, name, forward, derivative, "derivative", path)
        if _takes_forwards_and_one_more(forward_names, derivative_names):
            return ClassPlan(cls, name, forward, derivative, "vjp", path)
        raise UserCodeError(
            f"{label}: {derivative}({', '.join(derivative_names)}) must take what "
            f"{forward}({', '.join(forward_names)}) takes (the derivative at those arguments), "
            "or that and the gradient of the output (a vector-Jacobian product)"
        )
    if forward == "loss":
        return ClassPlan(cls, name, forward, None, "loss", path)
    raise UserCodeError(
        f"{label}: {name}.{forward} has no backward(dout) or gradient(...) method to check it "
        f"against; {name} defines {_listed(methods)}"
    )


def _method_names(cls: type) -> list[str]:
    """The callable attributes the class defines itself or inherits (not object's)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object:
            continue
        for attribute, value in vars(klass).items():
            target = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if callable(target) and attribute not in names:
                names.append(attribute)
    return names


def _forward_method(methods: list[str]) -> str | None:
    marked = [m for m in methods if stem(m, FORWARD_MARKERS) is not None]
    marked = [m for m in marked if stem(m, BACKWARD_MARKERS) is None]
    if marked:
        return "forward" if "forward" in marked else marked[0]
    return next((m for m in PLAIN_FORWARD_METHODS if m in methods), None)


def _backward_method(methods: list[str], forward: str) -> str | None:
    marked = [
        m
        for m in methods
        if stem(m, BACKWARD_MARKERS) is not None and stem(m, FORWARD_MARKERS) is None
    ]
    if not marked:
        return None
    forward_stem = stem(forward, FORWARD_MARKERS)
    same = [m for m in marked if stem(m, BACKWARD_MARKERS) == forward_stem]
    return same[0] if same else marked[0]


def _takes_forwards_and_one_more(forward: list[str], other: list[str]) -> bool:
    return len(other) == len(forward) + 1 and set(forward) <= set(other)


def _parameters(cls: type, method: str, label: str) -> list[inspect.Parameter]:
    """`method`'s parameters without self (static and class methods have none to drop)."""
    raw = inspect.getattr_static(cls, method)
    function = getattr(cls, method)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as error:
        raise UserCodeError(f"{label}: cannot read the parameters of {method} ({error})") from None
    parameters = list(signature.parameters.values())
    if not isinstance(raw, (staticmethod, classmethod)) and parameters:
        parameters = parameters[1:]  # self
    return [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _listed(methods: list[str]) -> str:
    shown = [m for m in methods if not m.startswith("__") or m == "__call__"]
    return ", ".join(shown) if shown else "no methods"
