"""--reference torch: PyTorch autograd as an independent check of the built-in gradients, and
of model files whose forward works on torch tensors."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from helpers import gradient_pair

from gradcheck_cli.errors import InputError
from gradcheck_cli.models import builtin_model, builtin_model_names
from gradcheck_cli.seed import seed_matrices

Invoke = Callable[..., Result]


@pytest.mark.torch
def test_seed_reference_matches_the_posts_pytorch_value() -> None:
    """The seed's last step: autograd's dF/dX[0,0] is 0.19787656, as the post printed."""
    from gradcheck_cli.torch_reference import torch_gradients

    X, W = seed_matrices()
    gradients = torch_gradients(builtin_model("sigmoid-sum"), X, W)
    dX, dW = gradients["X"], gradients["W"]
    assert dX[0, 0] == pytest.approx(0.19787656, abs=5e-9)
    assert dX.shape == (3, 3)
    assert dW.shape == (3, 2)


@pytest.mark.torch
@pytest.mark.parametrize("name", builtin_model_names())
def test_every_builtin_gradient_equals_autograd(name: str) -> None:
    """Each built-in model's closed-form gradient equals PyTorch autograd's to rounding."""
    from gradcheck_cli.torch_reference import torch_gradients

    rng = np.random.default_rng(7)
    X, W = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    model = builtin_model(name)
    theirs = torch_gradients(model, X, W)
    assert set(theirs) == {"X", "W"}
    for name, ours in zip(("X", "W"), gradient_pair(model, X, W), strict=True):
        np.testing.assert_allclose(ours, theirs[name], rtol=1e-12, atol=1e-14)


@pytest.mark.torch
def test_cli_reference_column(invoke: Invoke) -> None:
    """run --reference torch adds each entry's autograd value and the largest difference."""
    result = invoke("run", "--reference", "torch", "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    first = next(c for c in document["checks"] if c["wrt"] == "X" and c["index"] == [0, 0])
    assert first["reference"] == pytest.approx(0.19787655855283736, rel=1e-12)
    assert document["summary"]["X"]["max_reference_diff"] < 1e-15
    table = invoke("run", "--reference", "torch")
    assert "torch" in table.stdout
    assert table.exit_code == 0


@pytest.mark.torch
def test_reference_needs_a_forward_that_works_on_torch_tensors(invoke: Invoke) -> None:
    """A model file whose forward is numpy has no autograd twin: --reference torch is refused
    with exit 2, naming the file and saying its forward does not work on torch tensors."""
    result = invoke("run", "--model", "fixtures/models/dense_tanh.py", "--reference", "torch")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message
    assert message.startswith("gradcheck: error: --reference torch: ")
    assert "dense_tanh.py's forward does not work on torch tensors" in message
    assert message.endswith("--reference torch needs a forward written with torch operations")


def test_missing_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PyTorch the option fails with the install command, not an ImportError."""
    from gradcheck_cli import torch_reference

    real_import = builtins.__import__

    def no_torch(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    X, W = seed_matrices()
    with pytest.raises(InputError, match=r"pip install 'gradcheck\[torch\]'"):
        torch_reference.torch_gradients(builtin_model("sigmoid-sum"), X, W)
