"""A loss of a layer's output, as one function returning (loss, gradients): the layer's
backward takes forward's output itself and the loss's other arguments (deeplearning.ai's
`L_model_backward(AL, Y, caches)`), and the file's loss takes the same (`compute_cost(AL, Y)`;
`pairs.loss_for` finds it). gradcheck checks

    f(X, parameters, Y) = compute_cost(L_model_forward(X, parameters)[0], Y)

against `L_model_backward(AL, Y, caches)`; the loss's other arguments (`Y`) are inputs of f.

Pure standard library: nothing here knows about numpy, click or rich.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from gradcheck_cli.errors import UserCodeError

UserFunction = Callable[..., object]


def loss_of_output(
    forward: UserFunction, backward: UserFunction, loss: UserFunction, *, label: str
) -> UserFunction:
    """f(forward's parameters..., *, the loss's others) -> (loss, backward's gradients)."""
    try:
        forward_parameters = list(inspect.signature(forward).parameters.values())
        backward_names = list(inspect.signature(backward).parameters)
        loss_names = list(inspect.signature(loss).parameters)
    except (TypeError, ValueError) as error:
        raise UserCodeError(f"{label}: cannot read the parameters ({error})") from None
    caches = [n for n in backward_names if "cache" in n.lower()]
    output = next(n for n in backward_names if n not in caches)
    own = {p.name for p in forward_parameters}
    extras = [n for n in loss_names if n != output and n not in own]

    def composed(*args: object, **kwargs: object) -> object:
        given = {n: kwargs.pop(n) for n in extras if n in kwargs}
        result = forward(*args, **kwargs)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError(f"{_name(forward)} must return (output, cache)")
        out, cache = result
        bound = {
            **kwargs,
            **dict(zip([p.name for p in forward_parameters], args, strict=False)),
            **given,
        }
        values = {output: out, **{n: bound[n] for n in loss_names if n in bound}}
        value = loss(**values)
        grads = backward(
            **{n: values[n] for n in backward_names if n not in caches} | {c: cache for c in caches}
        )
        return value, grads

    kept = [p for p in forward_parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in extras]
    composed.__signature__ = inspect.Signature([*kept, *added])  # type: ignore[attr-defined]
    composed.__name__ = _name(loss)
    return composed


def _name(function: object) -> str:
    return str(getattr(function, "__name__", "function"))
