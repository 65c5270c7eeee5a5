"""check_function: a PyTorch or JAX function's hand-written backward checked from Python (a
pytest test of one's own), by the same engine as `gradcheck run --model FILE.py:NAME`: the same
entries fail as on the command line at the same inputs, side effects and bfloat16 included;
what is not a framework's function, or not its parameter, is an InputError that speaks the
API's keywords."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import MODELS, gradcheck_json, load_fixture

from gradcheck_cli import check_function
from gradcheck_cli.errors import InputError


def failed_entries_of_report(report: Any) -> set[tuple[str, tuple[int, ...], int]]:
    return {(c.wrt, tuple(c.index), c.cotangent) for c in report.checks if not c.passed}


def failed_entries_of_document(document: dict[str, Any]) -> set[tuple[str, tuple[int, ...], int]]:
    return {
        (c["wrt"], tuple(c["index"]), c.get("cotangent", 1))
        for c in document["checks"]
        if not c["passed"]
    }


@pytest.mark.torch
@pytest.mark.parametrize("stem", ["torch_softplus_affine", "torch_softplus_affine_bug"])
def test_a_torch_function_fails_on_the_entries_the_command_line_names(stem: str) -> None:
    """The fused softplus-affine Function at its file's example inputs (tensors, one of them
    requiring grad): the report's verdict and failing entries are those of `gradcheck run` on
    the same file, entry for entry and cotangent for cotangent."""
    module = load_fixture(stem)
    inputs = module.example_inputs()
    inputs["x"] = inputs["x"].clone().requires_grad_(True)
    report = check_function(module.SoftplusAffine, inputs)
    code, document = gradcheck_json("run", "--model", f"{MODELS / stem}.py:SoftplusAffine")
    assert report.verdict == document["verdict"] == ("failed" if stem.endswith("bug") else "passed")
    assert failed_entries_of_report(report) == failed_entries_of_document(document)
    assert report.model.name == "SoftplusAffine"
    if code == 1:
        assert failed_entries_of_report(report)  # the twin's wrong bias, named
        with pytest.raises(AssertionError, match="FAILED"):
            report.assert_ok()
    else:
        assert report.assert_ok() is report


@pytest.mark.torch
def test_a_side_effect_and_bfloat16_through_the_api() -> None:
    """A backward that writes into grad_out fails on that side effect alone; the correct
    softmax passes in bfloat16 after its float64 check, and its 1% twin fails."""
    import torch

    effects = load_fixture("torch_side_effects_bug")
    x = torch.linspace(-1.0, 1.0, 20, dtype=torch.float64).reshape(4, 5)
    report = check_function(effects.Relu, {"x": x})
    assert report.verdict == "failed"
    assert [e.kind for e in report.side_effects if not e.passed] == ["dout-modified"]
    assert not [c for c in report.checks if not c.passed]
    right, wrong = load_fixture("torch_low_precision"), load_fixture("torch_low_precision_bug")
    x = right.example_inputs()["x"]
    passed = check_function(right.Softmax, {"x": x}, dtype="bfloat16")
    assert passed.verdict == "passed"
    assert passed.float64_check is not None
    assert passed.float64_check["verdict"] == "passed"
    assert check_function(wrong.Softmax, {"x": x}, dtype="bfloat16").verdict == "failed"


@pytest.mark.jax
@pytest.mark.parametrize(
    ("stem", "verdict"), [("jax_logsumexp", "passed"), ("jax_logsumexp_bug", "failed")]
)
def test_a_jax_custom_vjp_function(stem: str, verdict: str) -> None:
    """jax arrays made without 64-bit types (float32) are checked in float64 as given."""
    import jax.numpy as jnp

    module = load_fixture(stem)
    x = jnp.linspace(-2.0, 2.0, 20).reshape(4, 5)
    report = check_function(module.lse, {"x": x, "b": jnp.ones(5)})
    assert report.verdict == verdict
    assert report.inputs["x"].dtype == "float64"


@pytest.mark.torch
def test_what_cannot_be_checked_is_an_input_error_in_the_apis_words() -> None:
    softmax = load_fixture("torch_low_precision").Softmax
    x = np.ones((2, 3))
    with pytest.raises(InputError, match=r"is neither a PyTorch nor a JAX function: check numpy"):
        check_function(lambda x: float(np.sum(x)), {"x": x})
    with pytest.raises(InputError, match=r"^inputs=\{'y': \.\.\.\}: .*Softmax's forward has no"):
        check_function(softmax, {"y": x})
    with pytest.raises(InputError, match=r"no value for 'x'.*give it as inputs=\{'x': array\}"):
        check_function(softmax, {})
    with pytest.raises(InputError, match=r"input x from array is empty \(shape 0x3\)"):
        check_function(softmax, {"x": np.zeros((0, 3))})
    module = load_fixture("torch_module")
    with pytest.raises(InputError, match=r"LinearTanh is a torch.nn.Module class: give"):
        check_function(module.LinearTanh, {"x": x})
    with pytest.raises(InputError, match=r"^rtol must be"):
        check_function(softmax, {"x": x}, rtol=-1)
    with pytest.raises(InputError, match=r"^unknown setting colour"):
        check_function(softmax, {"x": x}, colour=True)
