"""PyTorch functions with hand-written backwards, through the real command line: a
torch.autograd.Function, a function built on one, a custom operator with register_autograd;
their bug twins fail on exactly the planted entries; forward mode, double backward, float32,
devices, worker processes and batched evaluation; the numbers against autograd of plain torch
operations (an independent opinion: no user backward in it)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck, gradcheck_json, load_fixture

pytestmark = pytest.mark.torch

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def model(stem: str, name: str) -> str:
    return f"{MODELS / stem}.py:{name}"


def failed_entries(document: dict[str, Any]) -> set[tuple[str, tuple[int, ...]]]:
    return {(c["wrt"], tuple(c["index"])) for c in document["checks"] if not c["passed"]}


def all_entries(name: str, shape: tuple[int, ...]) -> set[tuple[str, tuple[int, ...]]]:
    return {(name, tuple(int(i) for i in index)) for index in np.ndindex(*shape)}


@pytest.mark.parametrize("name", ["SoftplusAffine", "softplus_affine"])
def test_the_function_passes_and_its_twin_fails_on_exactly_the_bias(
    report_validator: Any, name: str
) -> None:
    """The fused softplus-affine Function (and a function built on it) passes every entry of x,
    w and b; its twin, whose db is a mean over the batch of 4, fails on the 3 entries of b
    alone, diagnosed as a scale of 1/4; both reports are valid JSON of the schema."""
    code, good = gradcheck_json("run", "--model", model("torch_softplus_affine", name))
    assert code == 0
    assert good["verdict"] == "passed"
    assert list(good["inputs"]) == ["x", "w", "b"]
    assert {n: s["entries"] for n, s in good["summary"].items()} == {"x": 20, "w": 15, "b": 3}
    assert "torch" in good["model"]["formula"]
    report_validator.validate(good)
    code, bad = gradcheck_json("run", "--model", model("torch_softplus_affine_bug", name))
    assert code == 1
    assert failed_entries(bad) == all_entries("b", (3,))
    (diagnosis,) = bad["diagnosis"]
    assert diagnosis["wrt"] == "b"
    assert diagnosis["kind"] == "scale"
    assert diagnosis["parameters"]["factor"] == pytest.approx(0.25, rel=1e-6)
    report_validator.validate(bad)


def test_the_custom_operator_passes_and_its_twin_fails_everywhere(report_validator: Any) -> None:
    """scaled_tanh(x, scale) through torch.library: x is the one input (scale, a Python float,
    is a parameter); the twin's 1 - tanh for 1 - tanh**2 fails on all 12 entries of x."""
    code, good = gradcheck_json("run", "--model", model("torch_custom_op", "scaled_tanh"))
    assert code == 0
    assert list(good["inputs"]) == ["x"]
    code, bad = gradcheck_json("run", "--model", model("torch_custom_op_bug", "scaled_tanh"))
    assert code == 1
    assert failed_entries(bad) == all_entries("x", (3, 4))
    assert bad["diagnosis"][0]["wrt"] == "x"
    report_validator.validate(bad)


def test_a_parameter_from_the_command_line_reaches_the_operator() -> None:
    """--param scale=3 replaces example_inputs()'s 2.0: f is 3/2 of what it was, exactly."""
    _, two = gradcheck_json("run", "--model", model("torch_custom_op", "scaled_tanh"))
    _, three = gradcheck_json(
        "run", "--model", model("torch_custom_op", "scaled_tanh"), "--param", "scale=3.0"
    )
    assert three["f"] == pytest.approx(1.5 * two["f"], rel=1e-14)


def test_the_analytic_side_is_autograd_of_the_users_backward_contracted() -> None:
    """Every analytic value equals autograd of plain torch operations (softplus(x @ w + b), no
    user backward) contracted with the same seeded cotangent: the report's analytic column is
    the user's VJP for the cotangent it says."""
    import torch

    _, document = gradcheck_json(
        "run",
        "--model",
        model("torch_softplus_affine", "SoftplusAffine"),
        "--details",
        "all",
    )
    module_examples = _examples("torch_softplus_affine")
    tensors = {k: v.clone().requires_grad_() for k, v in module_examples.items()}
    x, w, b = tensors["x"], tensors["w"], tensors["b"]
    out = torch.nn.functional.softplus(x @ w + b)
    rng = np.random.default_rng(0)
    for number in (1, 2):
        v = torch.from_numpy(rng.standard_normal(tuple(out.shape)))
        grads = torch.autograd.grad((out * v).sum(), [x, w, b], retain_graph=True)
        expected = dict(zip("xwb", grads, strict=True))
        rows = [c for c in document["checks"] if c["cotangent"] == number]
        assert len(rows) == 38
        for row in rows:
            want = expected[row["wrt"]][tuple(row["index"])].item()
            assert row["analytic"] == pytest.approx(want, rel=1e-13, abs=1e-15)


def _examples(stem: str) -> dict[str, Any]:
    examples: dict[str, Any] = load_fixture(stem).example_inputs()
    return examples


def test_forward_mode_through_the_functions_jvp(tmp_path: Path) -> None:
    """--mode jvp checks the Function's jvp staticmethod (J v for 2 tangents): it passes; a jvp
    that forgets db fails on some of the 12 output entries; a custom operator has no
    forward-mode rule: exit 2 saying so."""
    code, document = gradcheck_json(
        "run", "--model", model("torch_softplus_affine", "SoftplusAffine"), "--mode", "jvp"
    )
    assert code == 0
    assert document["settings"]["check"] == "jvp"
    source = (MODELS / "torch_softplus_affine.py").read_text(encoding="utf-8")
    wrong = source.replace("(dx @ w + x @ dw + db)", "(dx @ w + x @ dw)")
    assert wrong != source
    (tmp_path / "wrong_jvp.py").write_text(wrong, encoding="utf-8")
    code, document = gradcheck_json(
        "run", "--model", f"{tmp_path / 'wrong_jvp.py'}:SoftplusAffine", "--mode", "jvp"
    )
    assert code == 1
    assert {c["wrt"] for c in document["checks"] if not c["passed"]} == {"out"}
    result = gradcheck("run", "--model", model("torch_custom_op", "scaled_tanh"), "--mode", "jvp")
    assert result.exit_code == 2
    assert result.stderr == (
        "gradcheck: error: torch_custom_op.py:13: --mode jvp needs a forward-mode rule, and "
        "scaled_tanh has none (torch.library registers backward formulas only; a "
        "torch.autograd.Function gets one from a jvp staticmethod)\n"
    )


LOG_COSH = '''
import torch


class LogCosh(torch.autograd.Function):
    """f(x) = sum(log(cosh(x))), a scalar: its backward is written in torch operations, so
    PyTorch differentiates it again (double backward)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.log(torch.cosh(x)).sum()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.tanh(x){bug}


def example_inputs():
    return {{"x": torch.linspace(-1.5, 2.0, 6, dtype=torch.float64).reshape(2, 3)}}
'''


def test_order_two_through_double_backward(tmp_path: Path) -> None:
    """--order 2 on a scalar Function: H v by double backward of its own backward passes; with
    tanh(x)**3 for tanh(x) the gradient check fails first and no hvp is checked."""
    path = tmp_path / "log_cosh.py"
    path.write_text(LOG_COSH.format(bug=""), encoding="utf-8")
    code, document = gradcheck_json("run", "--model", f"{path}:LogCosh", "--order", "2")
    assert code == 0
    assert document["settings"]["check"] == "hvp"
    assert document["gradient_check"]["verdict"] == "passed"
    path.write_text(LOG_COSH.format(bug=" ** 3"), encoding="utf-8")
    code, document = gradcheck_json("run", "--model", f"{path}:LogCosh", "--order", "2")
    assert code == 1
    assert "check" not in document["settings"] or document["settings"]["check"] != "hvp"


def test_float32_runs_the_tensors_in_float32() -> None:
    """--dtype float32: the Function computes in float32 (the report says so) and passes."""
    code, document = gradcheck_json(
        "run",
        "--model",
        model("torch_softplus_affine", "SoftplusAffine"),
        "--dtype",
        "float32",
    )
    assert code == 0
    assert document["settings"]["dtype"] == "float32"
    assert {i["dtype"] for i in document["inputs"].values()} == {"float32"}


def test_the_cpu_device_is_the_default_device() -> None:
    """--device cpu gives the report of no --device, number for number."""
    spec = model("torch_softplus_affine", "SoftplusAffine")
    _, plain = gradcheck_json("run", "--model", spec)
    _, cpu = gradcheck_json("run", "--model", spec, "--device", "cpu")
    assert [c["numerical"] for c in cpu["checks"]] == [c["numerical"] for c in plain["checks"]]


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def test_an_absent_device_is_exit_2() -> None:
    """A CUDA device this machine does not have: one line, exit 2, before any check."""
    import torch

    if _cuda() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    result = gradcheck(
        "run", "--model", model("torch_softplus_affine", "SoftplusAffine"), "--device", "cuda:7"
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("gradcheck: error: --device cuda:7: ")
    assert result.stderr.count("\n") == 1


def test_a_present_gpu_checks_the_same() -> None:
    """On a machine with CUDA the Function checked there passes and fails as on the CPU."""
    if not _cuda():
        pytest.skip("no CUDA device on this machine")
    for stem, code in (("torch_softplus_affine", 0), ("torch_softplus_affine_bug", 1)):
        got, _ = gradcheck_json("run", "--model", model(stem, "SoftplusAffine"), "--device", "cuda")
        assert got == code


def test_a_worker_process_adapts_the_same_function() -> None:
    """What a --jobs worker does (unpickle the recipe, import the file, bind): the same adapted
    Function, with its NAME and device, giving bitwise the parent's values and gradients."""
    from gradcheck_cli.subject.arguments import Supplied
    from gradcheck_cli.subject.binding import bind
    from gradcheck_cli.subject.files import load_model_file

    bound = bind(
        load_model_file(MODELS / "torch_softplus_affine_bug.py", "SoftplusAffine", device="cpu"),
        {},
    )
    recipe = pickle.loads(pickle.dumps(bound.recipe))
    assert (recipe.entry, recipe.device) == ("SoftplusAffine", "cpu")
    models, _ = recipe({n: Supplied(a, "x").array for n, a in bound.inputs.items()})
    for theirs, ours in zip(models, bound.models, strict=True):
        assert theirs.value(bound.inputs) == ours.value(bound.inputs)
        for name, gradient in ours.gradient(bound.inputs).items():
            np.testing.assert_array_equal(theirs.gradient(bound.inputs)[name], gradient)


@pytest.mark.slow
def test_worker_processes_give_the_in_process_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """--jobs 2 with workers forced to start: the same checks, number for number. (Slow: each
    worker process imports PyTorch.)"""
    from gradcheck_cli.numerics import workers

    spec = model("torch_softplus_affine_bug", "SoftplusAffine")
    _, alone = gradcheck_json("run", "--model", spec, "--jobs", "1")
    monkeypatch.setattr(workers, "WORTH_SECONDS", 0.0)
    _, pooled = gradcheck_json("run", "--model", spec, "--jobs", "2")
    assert pooled["settings"]["jobs"] == 2
    assert [c["numerical"] for c in pooled["checks"]] == [c["numerical"] for c in alone["checks"]]
    assert failed_entries(pooled) == failed_entries(alone)


@pytest.mark.parametrize(
    ("stem", "name"),
    [
        ("torch_softplus_affine", "SoftplusAffine"),
        ("torch_softplus_affine_bug", "SoftplusAffine"),
        ("torch_custom_op_bug", "scaled_tanh"),
    ],
)
def test_batches_change_no_verdict(monkeypatch: pytest.MonkeyPatch, stem: str, name: str) -> None:
    """With batched evaluation switched off (every point its own forward call) every entry
    gets the same verdict, and the numerical values agree within the error estimates."""
    from gradcheck_cli.numerics import evaluation

    spec = model(stem, name)
    _, batched = gradcheck_json("run", "--model", spec, "--details", "all")
    monkeypatch.setattr(
        evaluation.InProcess,
        "_in_batches",
        lambda self, model, batches, *rest: self.one_at_a_time(model, *rest),
    )
    _, alone = gradcheck_json("run", "--model", spec, "--details", "all")
    assert [c["passed"] for c in batched["checks"]] == [c["passed"] for c in alone["checks"]]
    for ours, theirs in zip(batched["checks"], alone["checks"], strict=True):
        assert abs(ours["numerical"] - theirs["numerical"]) <= (
            ours["error_estimate"] + theirs["error_estimate"]
        )


def test_an_elementwise_operator_batches_bitwise() -> None:
    """scaled_tanh is elementwise: a batch of moved copies gives, bit for bit, the differences
    of one forward call at a time."""
    from gradcheck_cli.numerics.evaluation import IN_PROCESS
    from gradcheck_cli.subject.binding import bind
    from gradcheck_cli.subject.files import load_model_file

    bound = bind(load_model_file(MODELS / "torch_custom_op.py", "scaled_tanh"), {})
    model_, inputs = bound.models[0], bound.inputs
    flat = np.arange(12, dtype=np.intp)
    shifts = np.tile([2.0**-17, -(2.0**-17)], (12, 1))
    f0 = float(np.real(model_.value(inputs)))
    batched = IN_PROCESS.differences(model_, inputs, "x", flat, shifts, f0, None, batched=True)
    alone = IN_PROCESS.one_at_a_time(model_, inputs, "x", flat, shifts, f0, None)
    np.testing.assert_array_equal(batched[0], alone[0])


CUBE = """
import torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * g


def example_inputs():
    return {"x": torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(2, 3)}
"""


def test_an_old_style_function_with_tensor_examples_passes(tmp_path: Path) -> None:
    """forward(ctx, x) with example tensors (0 among them, where the gradient is 0): exit 0."""
    path = tmp_path / "torch_cube.py"
    path.write_text(CUBE, encoding="utf-8")
    code, document = gradcheck_json("run", "--model", f"{path}:Cube")
    assert code == 0
    assert document["summary"]["x"]["failed"] == 0


LABELS = '''
import torch


class PickLoss(torch.autograd.Function):
    """mean of -log_softmax(scores)[i, labels[i]]: integer labels are a constant."""

    @staticmethod
    def forward(ctx, scores, labels):
        p = torch.softmax(scores, dim=1)
        ctx.save_for_backward(p, labels)
        return -torch.log(p[torch.arange(len(labels)), labels]).mean()

    @staticmethod
    def backward(ctx, grad):
        p, labels = ctx.saved_tensors
        d = p.clone()
        d[torch.arange(len(labels)), labels] -= 1
        return grad * d / len(labels), None


def example_inputs():
    g = torch.Generator().manual_seed(2)
    return {"scores": torch.randn(4, 3, generator=g, dtype=torch.float64),
            "labels": torch.tensor([0, 2, 1, 1])}
'''


def test_integer_tensors_are_constants(tmp_path: Path) -> None:
    """An integer tensor from example_inputs() is a constant: listed unchecked, never moved."""
    path = tmp_path / "pick.py"
    path.write_text(LABELS, encoding="utf-8")
    code, document = gradcheck_json("run", "--model", f"{path}:PickLoss")
    assert code == 0
    assert document["inputs"]["labels"]["checked"] is False
    assert set(document["summary"]) == {"scores"}


TORCH_NUMPY_MODEL = """
import numpy as np
import torch


def forward(x):
    return torch.as_tensor(x).tanh().sum()


def backward(x):
    return 1 - np.tanh(x) ** 2


def example_inputs():
    return {"x": np.linspace(-1, 1, 5)}
"""


def test_a_numpy_backward_keeps_the_numpy_convention(tmp_path: Path) -> None:
    """A file whose forward uses torch but whose backward is its own numpy function is a
    numpy model file (what --reference torch checks), not an adapted one."""
    path = tmp_path / "mixed.py"
    path.write_text(TORCH_NUMPY_MODEL, encoding="utf-8")
    code, document = gradcheck_json("run", "--model", str(path), "--reference", "torch")
    assert code == 0
    assert document["model"]["formula"] == "forward(...) from mixed.py"


def test_reference_torch_is_refused_for_a_torch_function() -> None:
    """--reference torch on a PyTorch function: its gradient is autograd's already."""
    result = gradcheck(
        "run", "--model", model("torch_softplus_affine", "SoftplusAffine"), "--reference", "torch"
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "gradcheck: error: --reference torch: torch_softplus_affine.py:SoftplusAffine is a "
        "PyTorch function: its gradient is PyTorch's autograd already (through its own "
        "backward), so there is no independent reference to add; leave --reference out\n"
    )


def test_perturb_and_sweep_take_a_torch_function() -> None:
    """perturb and sweep run on the same adapted functions: the twin's db entry fails perturb."""
    spec = model("torch_softplus_affine_bug", "SoftplusAffine")
    assert gradcheck("perturb", "--model", spec, "--entry", "w[0,0]").exit_code == 0
    assert gradcheck("perturb", "--model", spec, "--entry", "b[1]").exit_code == 1
    assert gradcheck("sweep", "--model", spec, "--entry", "x[1,2]").exit_code == 0


def test_a_module_instance_checks_its_parameters_too() -> None:
    """An nn.Module holding weight and bias, its forward a Function with a hand-written
    backward: x, weight and bias are all checked (the parameters through functional_call);
    the twin with a doubled weight gradient fails on every entry of weight and on no other,
    diagnosed as a scale of 2; the module's own parameters are as they were."""
    code, document = gradcheck_json("run", "--model", model("torch_module", "layer"))
    assert code == 0
    assert {n: (s["entries"], s["failed"]) for n, s in document["summary"].items()} == {
        "x": (20, 0),
        "weight": (12, 0),
        "bias": (3, 0),
    }
    code, document = gradcheck_json("run", "--model", model("torch_module_bug", "layer"))
    assert code == 1
    assert failed_entries(document) == all_entries("weight", (3, 4))
    assert [d["kind"] for d in document["diagnosis"]] == ["scale"]
    assert document["diagnosis"][0]["parameters"]["simple_factor"] == "2"


def test_a_whole_file_with_a_module_checks_the_module_as_its_layer() -> None:
    """`--model torch_module.py`: the Module instance is the file's one layer; its class (built
    with arguments) and the Function its forward calls are parts of it, not layers refused
    for want of inputs."""
    code, document = gradcheck_json("run", "--model", str(MODELS / "torch_module_bug.py"))
    assert code == 1
    assert [layer["name"] for layer in document["layers"]] == ["layer"]


def test_check_function_takes_a_module_instance() -> None:
    """check_function(module, {"x": x}) checks what the command line checks, parameters
    included, and leaves the module's parameters as they were."""
    import torch

    from gradcheck_cli import check_function

    module = load_fixture("torch_module")
    before = {n: p.detach().clone() for n, p in module.layer.named_parameters()}
    report = check_function(module.layer, module.example_inputs())
    assert report.verdict == "passed"
    assert set(report.summary) == {"x", "weight", "bias"}
    for name, parameter in module.layer.named_parameters():
        assert torch.equal(parameter.detach(), before[name])
    wrong = load_fixture("torch_module_bug")
    report = check_function(wrong.layer, wrong.example_inputs())
    assert {n for n, s in report.summary.items() if s.failed} == {"weight"}


def test_a_function_of_tensor_methods_alone_is_known_by_its_examples(tmp_path: Path) -> None:
    """x.exp().log1p() names neither torch nor jax in its code: its example inputs, tensors,
    say whose it is. A right gradient passes; one returning a Python float is told so."""
    path = tmp_path / "methods.py"
    path.write_text(
        "import torch\n\n\n"
        "def softplus(x):\n    return x.exp().log1p().sum()\n\n\n"
        "def as_float(x):\n    return float(x.sum())\n\n\n"
        "def example_inputs():\n"
        "    return {'x': torch.linspace(-2.0, 2.0, 5, dtype=torch.float64)}\n"
    )
    code, document = gradcheck_json("run", "--model", f"{path}:softplus")
    assert code == 0
    assert document["summary"]["x"]["entries"] == 5
    assert "a function on tensors" in document["model"]["formula"]
    result = gradcheck("run", "--model", f"{path}:as_float")
    assert result.exit_code == 2
    assert "as_float returned a float; it must return a tensor" in result.stderr
