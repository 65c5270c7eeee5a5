"""--reference torch: PyTorch autograd as an independent check of the built-in gradients, and
of model files whose forward works on torch tensors."""

from __future__ import annotations

import builtins
import json
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck, gradient_pair

from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import builtin_model, builtin_model_names
from gradcheck_cli.subject.seed import seed_matrices


@pytest.mark.torch
def test_seed_reference_matches_the_posts_pytorch_value() -> None:
    """The seed's last step: autograd's dF/dX[0,0] is 0.19787656, as the post printed."""
    from gradcheck_cli.adapters.torch_reference import torch_gradients

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
    from gradcheck_cli.adapters.torch_reference import torch_gradients

    rng = np.random.default_rng(7)
    X, W = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    model = builtin_model(name)
    theirs = torch_gradients(model, X, W)
    assert set(theirs) == {"X", "W"}
    for name, ours in zip(("X", "W"), gradient_pair(model, X, W), strict=True):
        np.testing.assert_allclose(ours, theirs[name], rtol=1e-12, atol=1e-14)


@pytest.mark.torch
def test_cli_reference_column() -> None:
    """run --reference torch adds each entry's autograd value and the largest difference."""
    result = gradcheck("run", "--reference", "torch", "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    first = next(c for c in document["checks"] if c["wrt"] == "X" and c["index"] == [0, 0])
    assert first["reference"] == pytest.approx(0.19787655855283736, rel=1e-12)
    assert document["summary"]["X"]["max_reference_diff"] < 1e-15
    table = gradcheck("run", "--reference", "torch")
    assert "torch" in table.stdout
    assert table.exit_code == 0


@pytest.mark.torch
def test_reference_needs_a_forward_that_works_on_torch_tensors() -> None:
    """A model file whose forward is numpy has no autograd twin: --reference torch is refused
    with exit 2, naming the file and saying its forward does not work on torch tensors."""
    result = gradcheck("run", "--model", "fixtures/models/dense_tanh.py", "--reference", "torch")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message
    assert message.startswith("gradcheck: error: --reference torch: ")
    assert "dense_tanh.py's forward does not work on torch tensors" in message
    assert message.endswith("--reference torch needs a forward written with torch operations")


def test_missing_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PyTorch the option fails with the install command, not an ImportError."""
    from gradcheck_cli.adapters import torch_reference

    real_import = builtins.__import__

    def no_torch(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    X, W = seed_matrices()
    with pytest.raises(InputError, match=r"pip install 'gradcheck\[torch\]'"):
        torch_reference.torch_gradients(builtin_model("sigmoid-sum"), X, W)


TORCH_MODEL = """
import numpy as np
import torch


def forward(x, w, b):
    # torch operations on whatever comes in: numpy arrays for the finite differences, tensors
    # that require grad for --reference torch.
    x, w, b = (torch.as_tensor(a) for a in (x, w, b))
    return torch.tanh(x @ w + b).sum()


def backward(x, w, b):
    d = 1 - np.tanh(x @ w + b) ** 2
    return d @ w.T, x.T @ d, d.sum(axis=0){bug}


def example_inputs():
    rng = np.random.default_rng(4)
    return {{"x": rng.standard_normal((4, 3)), "w": rng.standard_normal((3, 2)),
            "b": rng.standard_normal(2)}}
"""


@pytest.mark.torch
@pytest.mark.parametrize("command", ["run", "perturb"])
def test_a_model_file_written_with_torch_gets_autograd_as_a_third_opinion(
    tmp_path: Any, command: str
) -> None:
    """--reference torch on a model file whose forward uses torch operations: autograd of the
    user's own forward, per entry, equals the hand-written backward to rounding (run lists it
    for every entry, perturb for the perturbed one)."""
    path = tmp_path / "torch_model.py"
    path.write_text(TORCH_MODEL.format(bug=""), encoding="utf-8")
    extra = ["--entry", "b[1]"] if command == "perturb" else []
    result = gradcheck(
        command, "--model", str(path), "--reference", "torch", *extra, "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    rows = doc["checks"] if command == "run" else doc["perturbations"]
    assert rows
    for row in rows:
        analytic = row["analytic"] if command == "run" else row["gradient"]
        assert row["reference"] == pytest.approx(analytic, rel=1e-12, abs=1e-15)


@pytest.mark.torch
def test_autograd_disagrees_with_a_wrong_backward_where_it_is_wrong(tmp_path: Any) -> None:
    """With db scaled by 1.5 the run fails in b alone, and autograd's column shows the right
    values there: max |torch - analytic| is large for b and at rounding for x and w."""
    path = tmp_path / "torch_model.py"
    path.write_text(TORCH_MODEL.format(bug=" * 1.5"), encoding="utf-8")
    result = gradcheck("run", "--model", str(path), "--reference", "torch", "--format", "json")
    assert result.exit_code == 1, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["b"]["max_reference_diff"] > 0.1
    assert summary["x"]["max_reference_diff"] < 1e-12
    assert summary["w"]["max_reference_diff"] < 1e-12


TORCH_VECTOR_MODEL = """
import numpy as np
import torch


def forward(x, w, b):
    x, w, b = (torch.as_tensor(a) for a in (x, w, b))
    return torch.tanh(x @ w + b)


def backward(x, w, b, grad_output):
    d = (1 - np.tanh(x @ w + b) ** 2) * grad_output
    return d @ w.T, x.T @ d, d.sum(axis=0)


def example_inputs():
    rng = np.random.default_rng(4)
    return {"x": rng.standard_normal((4, 3)), "w": rng.standard_normal((3, 2)),
            "b": rng.standard_normal(2)}
"""


@pytest.mark.torch
def test_the_reference_is_per_cotangent_and_compared_like_with_like(tmp_path: Any) -> None:
    """A correct array forward checked through 3 cotangents. Autograd's gradient of
    <forward, v_k> is computed for each k, every listed row (v1, v2, v3) carries its own
    cotangent's reference equal to its analytic value, and max |torch - analytic| is at
    rounding for every input (comparing v2's values with v1's torch would give 2.44)."""
    path = tmp_path / "torch_vector.py"
    path.write_text(TORCH_VECTOR_MODEL, encoding="utf-8")
    result = gradcheck(
        "run",
        "--model",
        str(path),
        "--reference",
        "torch",
        "--cotangents",
        "3",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert {row["cotangent"] for row in document["checks"]} == {1, 2, 3}
    for row in document["checks"]:
        assert row["reference"] == pytest.approx(row["analytic"], rel=1e-12, abs=1e-14)
    for name, summary in document["summary"].items():
        assert summary["max_reference_diff"] < 1e-12, name
    # Through different cotangents the gradients differ: a v1 reference would not fit v2.
    by_entry: dict[tuple[str, tuple[int, ...]], set[float]] = {}
    for row in document["checks"]:
        by_entry.setdefault((row["wrt"], tuple(row["index"])), set()).add(row["reference"])
    assert all(len(values) == 3 for values in by_entry.values())
