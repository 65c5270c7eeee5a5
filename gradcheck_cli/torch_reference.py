"""PyTorch autograd as an independent reference for the built-in models (the seed's last step).

PyTorch is an optional extra: nothing else imports this module, and without torch installed
the user is told how to get it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck_cli.errors import InputError
from gradcheck_cli.models import Array, ElementwiseModel

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


def torch_gradients(model: ElementwiseModel, X: Array, W: Array) -> tuple[Array, Array]:
    """dF/dX and dF/dW of the built-in model by PyTorch autograd, in X's dtype."""
    torch = _torch()
    x = torch.tensor(np.asarray(X), requires_grad=True)
    w = torch.tensor(np.asarray(W), requires_grad=True)
    activated = _activation(torch, model.activation.name)(x @ w)
    total = activated.sum() if model.reduction.name == "sum" else activated.mean()
    total.backward()
    return x.grad.detach().numpy().astype(X.dtype), w.grad.detach().numpy().astype(W.dtype)
