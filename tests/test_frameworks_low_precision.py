"""Low precision for PyTorch and JAX code: a Function run in float32, float16 or bfloat16 is
judged against the same code's forward in float64 at the same quantised inputs, after the same
code's float64 check. bfloat16 (u = 2^-8) cannot resolve a 1% error by itself: where that
float64 check verified the formula, an entry that agrees within bfloat16's rounding passes;
against a named reference alone, nothing is vouched for (inconclusive, never passed)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import MODELS, Document, gradcheck_json

RIGHT = MODELS / "torch_low_precision.py"
WRONG = MODELS / "torch_low_precision_bug.py"
NUMPY_LAYERS = MODELS / "low_precision.py"

LAYERS = {
    # Function: (its inputs, the inputs its 1% error moves, the numpy forward of the same layer)
    "Softmax": (("x",), {"x"}, "softmax_forward"),
    "LayerNorm": (("x", "gamma", "beta"), {"x"}, "layernorm_forward"),
    "Attention": (("q", "k", "v"), {"q", "k"}, "attention_forward"),
}
DTYPES = ["float32", "float16", "bfloat16"]


def failed_by_input(document: Document) -> dict[str, int]:
    return {name: summary["failed"] for name, summary in document["summary"].items()}


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_correct_function_passes_in_low_precision(
    report_validator: Any, layer: str, dtype: str
) -> None:
    """Softmax, layer norm and attention as torch Functions: exit 0 in every low precision,
    after the same code passed in float64; the report says which precision and rule."""
    code, document = gradcheck_json("run", "--model", f"{RIGHT}:{layer}", "--dtype", dtype)
    assert code == 0, [c for c in document["checks"] if not c["passed"]]
    settings = document["settings"]
    assert (settings["dtype"], settings["precision"]) == (dtype, dtype)
    assert settings["reference_forward"] == "the model's own forward, in float64"
    assert document["float64_check"]["verdict"] == "passed"
    assert {info["dtype"] for info in document["inputs"].values()} == {dtype}
    verified = "the formula was verified by the float64 check of the same code"
    assert (verified in settings["rounding_rule"]) == (dtype == "bfloat16")
    assert list(report_validator.iter_errors(document)) == []


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_one_percent_error_fails_on_every_entry_it_moves(layer: str, dtype: str) -> None:
    """The twin with one term of its backward 1% off: exit 1 in every precision, bfloat16
    included, on every entry of the inputs the term moves and on no entry of the others."""
    code, document = gradcheck_json("run", "--model", f"{WRONG}:{layer}", "--dtype", dtype)
    assert code == 1
    names, moved, _ = LAYERS[layer]
    entries = {name: summary["entries"] for name, summary in document["summary"].items()}
    assert failed_by_input(document) == {n: entries[n] if n in moved else 0 for n in names}
    assert document["float64_check"]["verdict"] == "failed"
    assert document["settings"]["precision"] == dtype


@pytest.mark.torch
@pytest.mark.parametrize("source", [RIGHT, WRONG])
def test_bfloat16_against_a_named_reference_alone_vouches_for_nothing(source: Path) -> None:
    """Without the same code in float64 first, 10 x u = 3.9% cannot tell a 1% error from
    rounding: correct and wrong alike are inconclusive (exit 4), no entry passed."""
    code, document = gradcheck_json(
        "run",
        "--model",
        f"{source}:Softmax",
        "--dtype",
        "bfloat16",
        "--reference-model",
        f"{NUMPY_LAYERS}:softmax_forward",
    )
    assert code == 4
    assert document["verdict"] == "inconclusive"
    assert not any(c["passed"] for c in document["checks"])
    assert "no entry is vouched for" in document["settings"]["rounding_rule"]


BFLOAT16_PATH = """
import torch


def softmax_with(factor):
    class Softmax(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            s = torch.softmax(x, dim=-1)
            ctx.save_for_backward(s)
            return s

        @staticmethod
        def backward(ctx, g):
            (s,) = ctx.saved_tensors
            # A kernel of its own for bfloat16, its sum's weight off by `factor`.
            k = factor if g.dtype == torch.bfloat16 else 1.0
            return s * (g - k * (s * g).sum(dim=-1, keepdim=True))

    return Softmax


Right = softmax_with(1.0)
Wrong = softmax_with(1.5)


def example_inputs():
    g = torch.Generator().manual_seed(7)
    return {"x": torch.randn(4, 6, generator=g, dtype=torch.float64)}
"""


@pytest.mark.torch
def test_an_error_of_the_bfloat16_path_alone_fails_in_bfloat16(tmp_path: Path) -> None:
    """A backward right in float64 and wrong in its bfloat16 branch: the float64 check passes,
    the bfloat16 judgement fails (exit 1); the same file's right branch passes."""
    path = tmp_path / "branch.py"
    path.write_text(textwrap.dedent(BFLOAT16_PATH))
    code, document = gradcheck_json("run", "--model", f"{path}:Wrong", "--dtype", "bfloat16")
    assert code == 1
    assert document["float64_check"]["verdict"] == "passed"
    assert failed_by_input(document)["x"] > 0
    assert document["settings"]["dtype"] == "bfloat16"  # the entries listed are bfloat16's
    code, document = gradcheck_json("run", "--model", f"{path}:Right", "--dtype", "bfloat16")
    assert code == 0


@pytest.mark.jax
@pytest.mark.parametrize(("source", "exit_code"), [("jax_logsumexp", 0), ("jax_logsumexp_bug", 1)])
def test_a_jax_function_in_bfloat16(source: str, exit_code: int) -> None:
    """A custom_vjp rule run in bfloat16: the right one passes, the wrong one fails."""
    code, document = gradcheck_json(
        "run", "--model", f"{MODELS / source}.py:lse", "--dtype", "bfloat16"
    )
    assert code == exit_code
    assert document["settings"]["precision"] == "bfloat16"
    assert document["float64_check"]["verdict"] == ("passed" if exit_code == 0 else "failed")
