"""A loss of a layer's output, as one function returning (loss, gradients): the layer's
backward differentiates a loss of forward's output rather than taking its gradient, and the
file defines that loss (`pairs.loss_for` finds it):

- `L_model_backward(AL, Y, caches)` with `compute_cost(AL, Y)`: gradcheck checks
  f(X, parameters, Y) = compute_cost(L_model_forward(X, parameters)[0], Y);
- `backward_propagation(parameters, cache, X, Y)` with `compute_cost(A2, Y, parameters)`:
  f(X, parameters, Y) = compute_cost(forward_propagation(X, parameters)[0], Y, parameters).

The loss's other arguments (`Y`) are inputs of f, after forward's own; the backward gets
forward's output, the cache and every other value by name.

Pure standard library: nothing here knows about numpy, click or rich.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.subject.pairs import LossOfOutput

UserFunction = Callable[..., object]


def loss_of_output(
    forward: UserFunction,
    backward: UserFunction,
    loss: UserFunction,
    found: LossOfOutput,
    *,
    label: str,
) -> UserFunction:
    """f(forward's parameters..., *, the extras) -> (the loss, backward's gradients)."""
    try:
        forward_parameters = list(inspect.signature(forward).parameters.values())
        backward_names = list(inspect.signature(backward).parameters)
        loss_names = list(inspect.signature(loss).parameters)
    except (TypeError, ValueError) as error:
        raise UserCodeError(f"{label}: cannot read the parameters ({error})") from None
    own = [p.name for p in forward_parameters]
    caches = [n for n in backward_names if "cache" in n.lower()]

    def composed(*args: object, **kwargs: object) -> object:
        extras = {n: kwargs.pop(n) for n in found.extras if n in kwargs}
        result = forward(*args, **kwargs)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError(f"{_name(forward)} must return (output, cache)")
        out, cache = result
        values = {**dict(zip(own, args, strict=False)), **kwargs, **extras, found.output: out}
        value = loss(**{n: values[n] for n in loss_names if n in values})
        given = {n: values[n] for n in backward_names if n in values and n not in caches}
        grads = backward(**given, **dict.fromkeys(caches, cache))
        return value, grads

    kept = [p for p in forward_parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in found.extras]
    composed.__signature__ = inspect.Signature([*kept, *added])  # type: ignore[attr-defined]
    composed.__name__ = _name(loss)
    return composed


def _name(function: object) -> str:
    return str(getattr(function, "__name__", "function"))
