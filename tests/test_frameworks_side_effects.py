"""Side effects of PyTorch and JAX code (issue 23), through the command line: each planted side
effect of fixtures/models/torch_side_effects_bug.py is exit 1 naming its kind, the function
and the tensor as the code names it; every correct layer of torch_side_effects.py passes all
six checks; PyTorch's global settings are as they were after a run; a JAX function is checked
for re-entrancy alone."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import MODELS, Document, gradcheck, gradcheck_json, gradcheck_process

KINDS = [
    "input-modified",
    "uninitialised-memory",
    "dout-modified",
    "cache-modified",
    "not-reentrant",
    "uninitialised-memory",
]
"""The verdicts of a Function's checks, in the order a report lists them: forward's two, then
backward's four."""

TWINS = [
    # (layer, kind, role, names, words the message holds)
    ("Relu", "dout-modified", "Relu.backward", ["grad_out"], "grad_out.clone()"),
    (
        "Scale",
        "cache-modified",
        "Scale.backward",
        ["ctx.saved_tensors[0]"],
        "(which holds forward's input x)",
    ),
    ("Center", "input-modified", "Center.forward", ["x"], "writes into its input x: x[0,0] was"),
    ("Tanh", "not-reentrant", "Tanh.backward", ["dx"], "is not re-entrant"),
    ("Leaky", "uninitialised-memory", "Leaky.backward", ["dx"], "is nan instead of"),
    ("square", "dout-modified", "square_backward", ["grad"], "writes into grad"),
]


def run_json(*args: str) -> tuple[int, Document]:
    return gradcheck_json("run", *args)


def failed(document: Document) -> list[tuple[str, str, list[str]]]:
    return [(e["kind"], e["role"], e["names"]) for e in document["side_effects"] if not e["passed"]]


@pytest.mark.torch
@pytest.mark.parametrize(("layer", "kind", "role", "names", "words"), TWINS)
def test_each_planted_side_effect_fails_with_its_name(
    layer: str, kind: str, role: str, names: list[str], words: str
) -> None:
    """The twin fails on exactly its one side effect, named as its code names it; the correct
    layer passes all six checks and its gradient."""
    code, bad = run_json("--model", f"{MODELS / 'torch_side_effects_bug'}.py:{layer}")
    assert code == 1
    assert failed(bad) == [(kind, role, names)]
    (effect,) = [e for e in bad["side_effects"] if not e["passed"]]
    assert words in effect["message"]
    code, good = run_json("--model", f"{MODELS / 'torch_side_effects'}.py:{layer}")
    assert code == 0
    assert good["verdict"] == "passed"
    assert [e["kind"] for e in good["side_effects"]] == KINDS
    assert all(e["passed"] and e["names"] == [] for e in good["side_effects"])


@pytest.mark.torch
def test_the_side_effects_alone_fail_a_right_gradient() -> None:
    """Relu's, Scale's and Center's gradients are right: every entry agrees, and the run fails
    on the side effect alone, which the final line names."""
    for layer in ("Relu", "Scale", "Center"):
        result = gradcheck("run", "--model", f"{MODELS / 'torch_side_effects_bug'}.py:{layer}")
        assert result.exit_code == 1
        final = result.stdout.strip().splitlines()[-1]
        assert final.startswith(f"FAILED: {layer}.")
        assert final.endswith("(a side effect); all 20 entries agree.") or final.endswith(
            "(a side effect); all 40 entries agree."
        )


@pytest.mark.torch
def test_the_real_command_line_names_the_side_effect(tmp_path: Path) -> None:
    """`python -m gradcheck_cli run` in a process of its own: the twin's table line and exit
    code, the JUnit failure naming the check, the correct layer's exit 0."""
    junit = tmp_path / "report.xml"
    model = f"{MODELS / 'torch_side_effects_bug'}.py:Relu"
    done = gradcheck_process("run", "--model", model, "--junit-xml", str(junit), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert (
        "side effect (dout-modified): FAILED: Relu.backward writes into grad_out, the gradient "
        "of forward's output it is given: grad_out[0,1] was -0.132105, is -0 after the call"
    ) in " ".join(done.stdout.split())
    assert "dout-modified of Relu.backward" in junit.read_text()
    done = gradcheck_process("run", "--model", model.replace("_bug", ""), cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.torch
def test_a_saved_output_written_into_says_so(tmp_path: Path) -> None:
    """A backward that writes into a saved tensor that is forward's own output (the caller's
    result), and one that writes into a tensor kept as a ctx attribute, inside a dict."""
    path = tmp_path / "saved.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch

            class Exp(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    y = torch.exp(x)
                    ctx.save_for_backward(y)
                    return y

                @staticmethod
                def backward(ctx, g):
                    (y,) = ctx.saved_tensors
                    return y.mul_(g)

            class Kept(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    ctx.kept = {"twice": [2.0 * x]}
                    return x * x

                @staticmethod
                def backward(ctx, g):
                    twice = ctx.kept["twice"][0]
                    return twice.mul_(g)

            def example_inputs():
                return {"x": torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)}
            """
        )
    )
    code, document = run_json("--model", f"{path}:Exp")
    assert code == 1
    assert failed(document) == [("cache-modified", "Exp.backward", ["ctx.saved_tensors[0]"])]
    message = next(e["message"] for e in document["side_effects"] if not e["passed"])
    assert "(which holds forward's output)" in message
    code, document = run_json("--model", f"{path}:Kept")
    assert code == 1
    assert failed(document) == [("cache-modified", "Kept.backward", ["ctx.kept['twice'][0]"])]


@pytest.mark.torch
def test_a_write_that_leaves_the_values_is_seen_by_the_version_counter(tmp_path: Path) -> None:
    """x.mul_(1.0) changes no value: the version counter says it was written all the same."""
    path = tmp_path / "same.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch

            class Same(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    x.mul_(1.0)
                    ctx.save_for_backward(x)
                    return torch.sin(x)

                @staticmethod
                def backward(ctx, g):
                    (x,) = ctx.saved_tensors
                    return g * torch.cos(x)

            def example_inputs():
                return {"x": torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)}
            """
        )
    )
    code, document = run_json("--model", f"{path}:Same")
    assert code == 1
    assert failed(document) == [("input-modified", "Same.forward", ["x"])]
    message = next(e["message"] for e in document["side_effects"] if not e["passed"])
    assert message.startswith(
        "Same.forward writes into its input x (its version counter moved: an in-place "
        "operation on it): the caller's tensor changes with every call"
    )
    assert document["summary"]["x"]["failed"] == 0


@pytest.mark.torch
def test_several_outputs_name_each_gradient(tmp_path: Path) -> None:
    """A Function with two outputs and `*grads`: checked as one joined output (exit 0, where it
    was exit 3), and a write into its second gradient is named grads[1]."""
    path = tmp_path / "two.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch

            class Polar(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    ctx.save_for_backward(x)
                    return torch.sin(x), torch.cos(x)

                @staticmethod
                def backward(ctx, *grads):
                    (x,) = ctx.saved_tensors
                    return grads[0] * torch.cos(x) - grads[1] * torch.sin(x)

            class PolarBug(Polar):
                @staticmethod
                def backward(ctx, *grads):
                    (x,) = ctx.saved_tensors
                    grads[1].mul_(torch.sin(x))
                    return grads[0] * torch.cos(x) - grads[1]

            def example_inputs():
                g = torch.Generator().manual_seed(0)
                return {"x": torch.randn(3, 4, generator=g, dtype=torch.float64)}
            """
        )
    )
    code, document = run_json("--model", f"{path}:Polar")
    assert code == 0
    assert document["summary"]["x"]["failed"] == 0
    code, document = run_json("--model", f"{path}:PolarBug")
    assert code == 1
    assert failed(document) == [("dout-modified", "PolarBug.backward", ["grads[1]"])]
    message = next(e["message"] for e in document["side_effects"] if not e["passed"])
    assert "(work on a copy: grads[1].clone())" in message


@pytest.mark.torch
def test_a_function_without_a_backward_of_its_own_has_its_forward_checked(tmp_path: Path) -> None:
    """Plain torch operations: autograd's own backward is not the user's, so only forward's
    inputs and memory are checked; a Function inside a function is found and checked."""
    path = tmp_path / "plain.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch

            def plain(x):
                return torch.tanh(x) * x

            def example_inputs():
                return {"x": torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)}
            """
        )
    )
    code, document = run_json("--model", f"{path}:plain")
    assert code == 0
    assert [(e["kind"], e["role"]) for e in document["side_effects"]] == [
        ("input-modified", "plain"),
        ("uninitialised-memory", "plain"),
    ]
    code, document = run_json("--model", f"{MODELS / 'torch_softplus_affine'}.py:softplus_affine")
    assert code == 0
    assert [(e["kind"], e["role"]) for e in document["side_effects"]] == list(
        zip(KINDS, ["softplus_affine"] * 2 + ["SoftplusAffine.backward"] * 4, strict=True)
    )


@pytest.mark.torch
def test_no_side_effects_skips_them() -> None:
    code, document = run_json(
        "--model", f"{MODELS / 'torch_side_effects_bug'}.py:Relu", "--no-side-effects"
    )
    assert code == 0
    assert document["side_effects"] == []


@pytest.mark.torch
@pytest.mark.parametrize("before", [(False, False, True), (True, False, False), (True, True, True)])
def test_pytorch_global_settings_are_restored(
    tmp_path: Path, before: tuple[bool, bool, bool]
) -> None:
    """use_deterministic_algorithms (and its warn_only) and fill_uninitialized_memory are as
    they were before the run, whatever they were, also after a backward that raises; and Leaky's
    backward, which reads memory it never wrote, fails on that side effect (exit 1) whatever
    they were: the check's own backward calls read zeros there, never a NaN left or filled."""
    import importlib

    import torch

    # A module whose attribute is a property of its class: typed Any for mypy.
    deterministic: Any = importlib.import_module("torch.utils.deterministic")

    path = tmp_path / "raises.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch

            class Raises(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    return x * 2.0

                @staticmethod
                def backward(ctx, g):
                    raise RuntimeError("boom")

            def example_inputs():
                return {"x": torch.ones(3, dtype=torch.float64)}
            """
        )
    )
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        deterministic.fill_uninitialized_memory,
    )
    try:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        deterministic.fill_uninitialized_memory = before[2]
        for model, exit_code in (
            (f"{MODELS / 'torch_side_effects_bug'}.py:Leaky", 1),
            (f"{path}:Raises", 2),
        ):
            result = gradcheck("run", "--model", model)
            assert result.exit_code == exit_code, result.stderr
            after = (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                deterministic.fill_uninitialized_memory,
            )
            assert after == before
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        deterministic.fill_uninitialized_memory = saved[2]


JAX_BUFFER = """
import jax
import jax.numpy as jnp

_calls = []


@jax.custom_vjp
def lse(x):
    return jnp.log(jnp.sum(jnp.exp(x)))


def lse_fwd(x):
    y = lse(x)
    return y, (x, y)


def lse_bwd(residuals, g):
    x, y = residuals
    _calls.append(1)
    return (g * jnp.exp(x - y) * len(_calls),)


lse.defvjp(lse_fwd, lse_bwd)


def example_inputs():
    return {"x": jnp.linspace(-1.0, 1.0, 4)}
"""


@pytest.mark.jax
def test_a_jax_function_is_checked_for_reentrancy_alone(tmp_path: Path) -> None:
    """JAX arrays cannot be written into and jnp.empty is zeros: the one check is re-entrancy,
    the bwd rule called twice on one vjp's residuals; a rule that counts its calls fails it."""
    code, document = run_json("--model", f"{MODELS / 'jax_logsumexp'}.py:lse")
    assert code == 0
    assert [(e["kind"], e["role"], e["passed"]) for e in document["side_effects"]] == [
        ("not-reentrant", "lse_bwd", True)
    ]
    assert document["side_effects"][0]["message"] == (
        "two calls of lse_bwd with the same g and residuals agree"
    )
    path = tmp_path / "counting.py"
    path.write_text(JAX_BUFFER)
    code, document = run_json("--model", f"{path}:lse")
    assert code == 1
    assert failed(document) == [("not-reentrant", "lse_bwd", ["dx"])]
