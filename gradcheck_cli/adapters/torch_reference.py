"""PyTorch autograd as an independent reference (the seed's last step): for the built-in models,
and for model files whose forward works on torch tensors (autograd of the user's own forward).

PyTorch is an optional extra: nothing else imports this module, and without torch installed
the user is told how to get it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import Array, ElementwiseModel

if TYPE_CHECKING:
    from gradcheck_cli.subject.options import Subject

INSTALL_HINT = "pip install 'gradcheck[torch]' (or any PyTorch build: pip install torch)"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InputError(
            f"--reference torch needs PyTorch, which is not installed: {INSTALL_HINT}"
        ) from None
    return torch


def _activation(torch: Any, name: str) -> Any:
    functional = torch.nn.functional
    return {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softplus": functional.softplus,
        "relu": torch.relu,
        "identity": lambda z: z,
    }[name]


def torch_gradients(model: ElementwiseModel, X: Array, W: Array) -> dict[str, Array]:
    """dF/dX and dF/dW of the built-in model by PyTorch autograd, in X's dtype."""
    torch = _torch()
    x = torch.tensor(np.asarray(X), requires_grad=True)
    w = torch.tensor(np.asarray(W), requires_grad=True)
    activated = _activation(torch, model.activation.name)(x @ w)
    total = activated.sum() if model.reduction.name == "sum" else activated.mean()
    total.backward()
    return {
        "X": x.grad.detach().numpy().astype(X.dtype),
        "W": w.grad.detach().numpy().astype(W.dtype),
    }


def reference_gradients(subject: Subject) -> list[dict[str, Array]]:
    """The gradient by PyTorch autograd, per input, once per cotangent: of the built-in model, or
    of the model file's own forward run on torch tensors. For an array forward, item k is the
    gradient of <forward, v_(k+1)>, the contraction the check's cotangent k+1 judges, so that
    each cotangent's analytic values are compared with their own reference; for a scalar
    forward the list holds one item."""
    builtin = subject.builtin
    if builtin is not None:
        return [torch_gradients(builtin, subject.inputs["X"], subject.inputs["W"])]
    model_file = subject.model_file
    assert model_file is not None
    torch = _torch()
    from gradcheck_cli.subject.binding import cotangent_vectors
    from gradcheck_cli.subject.calling import Caller

    tensors = {}
    for name, array in subject.inputs.items():
        value = torch.tensor(np.asarray(array))
        if value.is_floating_point():
            value.requires_grad_(True)
        tensors[name] = value
    caller = Caller(model_file, list(tensors), subject.params)
    args, kwargs = caller.arguments(tensors)
    label = model_file.label
    floating = [n for n, t in tensors.items() if t.requires_grad]
    per_cotangent = []
    try:
        result = model_file.forward(*args, **kwargs)
        outputs = _outputs(result, model_file.convention)
        for number, model in enumerate(subject.models, start=1):
            vectors = cotangent_vectors(model)
            if vectors:
                total = sum(
                    (o * torch.tensor(np.asarray(v))).sum()
                    for o, v in zip(outputs, vectors, strict=True)
                )
            else:
                total = outputs[0].sum()
            per_cotangent.append(
                torch.autograd.grad(
                    total,
                    [tensors[n] for n in floating],
                    allow_unused=True,
                    retain_graph=number < len(subject.models),
                )
            )
    except InputError:
        raise
    except Exception as error:
        message = " ".join(str(error).split())[:200]
        raise InputError(
            f"--reference torch: {label}'s forward does not work on torch tensors "
            f"({type(error).__name__}: {message}); --reference torch needs a forward written "
            "with torch operations"
        ) from None
    gradients = []
    for grads in per_cotangent:
        by_name: dict[str, Array] = {}
        for name, grad in zip(floating, grads, strict=True):
            if grad is not None:
                by_name[name] = grad.detach().numpy().astype(np.asarray(subject.inputs[name]).dtype)
        gradients.append(by_name)
    return gradients


def _outputs(result: Any, convention: str) -> list[Any]:
    torch = _torch()
    if convention == "layer":
        result = result[:-1]
    elif convention == "loss":
        result = result[:1]
    else:
        result = [result]
    outputs = []
    for value in result:
        if not isinstance(value, torch.Tensor):
            raise InputError(
                "--reference torch: forward returned a "
                f"{type(value).__name__}, not a torch tensor (return the tensor, not float(...))"
            )
        outputs.append(value)
    return outputs
