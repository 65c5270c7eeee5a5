"""Every way a PyTorch or JAX model file can be wrong is exit 2 with one line naming the file and
line, never a traceback and never exit 3: the section "PyTorch and JAX models" of
docs/errors.md, message for message."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import gradcheck

SCALE = """import torch


class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        {forward}

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        {backward}


def example_inputs():
    two = torch.full((3,), 2.0, dtype=torch.float64)
    return {{"x": torch.ones(3, dtype=torch.float64), "w": two}}
"""


def scale(forward: str = "return x * w", backward: str = "return grad * w, grad * x") -> str:
    return SCALE.format(forward=forward, backward=backward)


LEAVES = """import numpy as np
import torch


def forward(x):
    return torch.from_numpy(np.tanh(x.detach().numpy()))


def example_inputs():
    return {"x": torch.ones(3, dtype=torch.float64)}
"""

OPERATOR = """import torch


@torch.library.custom_op("gradcheck_errors::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    return 2 * x


def backward(ctx, grad):
    return grad, grad


twice.register_autograd(backward)


def example_inputs():
    return {"x": torch.ones(3, dtype=torch.float64)}
"""

ONCE = """import torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x**3).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * grad


def example_inputs():
    return {"x": torch.linspace(0.5, 1.5, 4, dtype=torch.float64)}
"""

JAX_SCALE = """import jax
import jax.numpy as jnp


@jax.custom_vjp
def scale(x, w):
    return x * w


def scale_fwd(x, w):
    return x * w, (x, w)


def scale_bwd(residuals, g):
    x, w = residuals
    {returned}


scale.defvjp(scale_fwd, scale_bwd)


def example_inputs():
    return {{"x": jnp.ones(3), "w": jnp.full(3, 2.0)}}
"""

NUMPY = """import numpy as np


def forward(x):
    return float(np.sum(x**2))


def backward(x):
    return 2 * x


def example_inputs():
    return {"x": np.ones(3)}
"""

TORCH_CASES = [
    (
        "backward-count",
        "count.py",
        scale(backward="return grad * w"),
        "run --model count.py:Scale",
        "count.py:10: Scale.backward returned 1 gradient, but forward takes 2 inputs (x, w): one "
        "gradient per input, None for an input without one",
    ),
    (
        "backward-shape",
        "shape.py",
        scale(backward="return grad * w, torch.ones(2, dtype=torch.float64)"),
        "run --model shape.py:Scale",
        "shape.py:10: Scale's backward returned a gradient of shape (2,) for w, whose shape is "
        "(3,)",
    ),
    (
        "backward-none",
        "missing_return.py",
        scale(backward="grad * w"),
        "run --model missing_return.py:Scale",
        "missing_return.py:10: Scale.backward returned None (a missing return?); it returns one "
        "gradient per input of forward (x, w), None for an input without one",
    ),
    (
        "backward-not-a-tensor",
        "number.py",
        scale(backward="return grad * w, 1.0"),
        "perturb --model number.py:Scale",
        "number.py:10: Scale.backward returned a float for w; a gradient is a tensor (or None)",
    ),
    (
        "forward-raises",
        "raises.py",
        scale(forward="raise ValueError('no such layer')"),
        "run --model raises.py:Scale",
        "raises.py:8: forward raised ValueError: no such layer",
    ),
    (
        "forward-not-a-tensor",
        "scalar.py",
        scale(forward="return float((x * w).sum())"),
        "sweep --model scalar.py:Scale",
        "scalar.py:5: Scale returned a float; it must return a tensor (or a tuple of tensors)",
    ),
    (
        "output-leaves-torch",
        "leaves.py",
        LEAVES,
        "run --model leaves.py",
        "leaves.py:5: forward's output does not require grad: autograd cannot reach a backward "
        "(code that leaves torch, through numpy or .detach(), needs a torch.autograd.Function "
        "with its own backward)",
    ),
    (
        "operator-backward-count",
        "operator.py",
        OPERATOR,
        "run --model operator.py:twice",
        "operator.py:9: twice's backward returned a gradient for an argument that takes none "
        "(PyTorch says: function GeneratedBackwardFor_gradcheck_errors_twice_defaultBackward "
        "returned a gradient different than None at position 2, but the corresponding forward "
        "input was not a Variable)",
    ),
    (
        "no-double-backward",
        "once.py",
        ONCE,
        "run --model once.py:Cube --order 2",
        "once.py:10: Cube's gradient does not depend on its inputs through torch operations, so "
        "PyTorch cannot differentiate it again (a backward marked once_differentiable, one that "
        "leaves torch, or a linear function): --order 2 needs double backward",
    ),
    (
        "no-forward-mode",
        "operator.py",
        OPERATOR.replace("return grad, grad", "return 2 * grad"),
        "run --model operator.py:twice --mode jvp",
        "operator.py:4: --mode jvp needs a forward-mode rule, and twice has none (torch.library "
        "registers backward formulas only; a torch.autograd.Function gets one from a jvp "
        "staticmethod)",
    ),
    (
        "device-not-torch",
        "count.py",
        scale(),
        "run --model count.py:Scale --device nowhere",
        "--device nowhere: not a PyTorch device (cpu, cuda, cuda:1, mps, ...)",
    ),
]

JAX_CASES = [
    (
        "bwd-count",
        "jax_count.py",
        JAX_SCALE.format(returned="return (g * w,)"),
        "run --model jax_count.py:scale",
        "jax_count.py:14: scale's bwd rule must return a tuple of one cotangent per argument of "
        "scale (x, w)",
    ),
    (
        "bwd-shape",
        "jax_shape.py",
        JAX_SCALE.format(returned="return g * w, g[:2]"),
        "run --model jax_shape.py:scale",
        "jax_shape.py:14: scale's bwd rule returned a cotangent of another shape than its "
        "argument's (x, w)",
    ),
]

NUMPY_CASES = [
    (
        "device-on-a-numpy-file",
        "squares.py",
        NUMPY,
        "run --model squares.py --device cuda",
        "--device cuda: squares.py is a numpy model file; --device places the tensors of a "
        "PyTorch or JAX model",
    ),
    (
        "device-on-a-built-in-model",
        "squares.py",
        NUMPY,
        "run --device cuda",
        "--device cuda: the built-in models are numpy; --device places the tensors of a PyTorch "
        "or JAX model file",
    ),
]


def run_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, text: str, args: str
) -> str:
    (tmp_path / file).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = gradcheck(*args.split())
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.torch
@pytest.mark.parametrize(
    ("file", "text", "args", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in TORCH_CASES],
)
def test_pytorch_faults_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, text: str, args: str, message: str
) -> None:
    """Each fault of PyTorch code: its message, naming the file and the line."""
    assert run_case(tmp_path, monkeypatch, file, text, args) == f"gradcheck: error: {message}"


@pytest.mark.jax
@pytest.mark.parametrize(
    ("file", "text", "args", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in JAX_CASES],
)
def test_jax_faults_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, text: str, args: str, message: str
) -> None:
    """Each fault of a JAX rule: its message, naming the file and the rule's line."""
    assert run_case(tmp_path, monkeypatch, file, text, args) == f"gradcheck: error: {message}"


@pytest.mark.parametrize(
    ("file", "text", "args", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in NUMPY_CASES],
)
def test_device_needs_a_framework_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, text: str, args: str, message: str
) -> None:
    """--device other than cpu on a numpy model file or a built-in model: exit 2."""
    assert run_case(tmp_path, monkeypatch, file, text, args) == f"gradcheck: error: {message}"


@pytest.mark.torch
def test_an_absent_cuda_device_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--device cuda where torch sees no CUDA device: one line naming the option and the build."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    message = run_case(
        tmp_path, monkeypatch, "count.py", scale(), "run --model count.py:Scale --device cuda"
    )
    assert message.startswith(
        f"gradcheck: error: --device cuda: no CUDA device here (torch {torch.__version__}"
    )
    assert message.endswith("; leave --device out to run on the CPU")


def test_a_numpy_model_imports_no_framework(tmp_path: Path) -> None:
    """A numpy model file's check imports neither torch nor jax (in a fresh interpreter)."""
    import json
    import subprocess
    import sys

    (tmp_path / "squares.py").write_text(NUMPY, encoding="utf-8")
    probe = (
        "import contextlib, io, json, sys\n"
        "from gradcheck_cli.cli import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = cli.main(['run', '--model', {str(tmp_path / 'squares.py')!r}, '--format', "
        "'json'], standalone_mode=False)\n"
        "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules, "
        "'jax': 'jax' in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "code": 0,
        "torch": False,
        "jax": False,
    }
