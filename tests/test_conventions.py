"""Code as it is written (issue 21): a fixture per convention through the real CLI.

Each correct fixture passes (exit 0) with every input it should check checked; each
one-line-bug twin fails (exit 1) on exactly the entries its bug touches. Which entries a bug
touches is computed here, independently of gradcheck: each fixture's own gradient, called the
way its convention calls it, in the twin against the correct file, at example_inputs() and one
seeded random dout.

- suffixed_layers: markers inside the names (`max_pool_forward_naive`), two backwards for one
  forward (`layernorm_backward_alt`, whose dgamma is (1, D) for gamma (D,));
- activation_cache: `sigmoid(Z) -> (A, cache)` with `sigmoid_backward`, and a backward taking
  `activation` by name;
- activation_classes: classes with `__call__` and `gradient(x)`;
- layer_classes: layer objects holding W and b (gradients as attributes, or in a grads dict),
  and a model class with a dict `params` and `loss(X, y) -> (loss, grads)`;
- deep_network: a dict of parameters as one argument.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck, gradcheck_json

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"

Document = dict[str, Any]
Entry = tuple[str, tuple[int, ...]]
Gradients = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    """One checkable thing of a fixture: the name after the colon, its parameters, the inputs
    it checks, and how this test computes its gradient as the user's code gives it."""

    stem: str
    name: str
    checked: tuple[str, ...]
    gradients: Callable[[ModuleType, np.random.Generator], Gradients]
    params: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()
    """Inputs listed but not checked (no gradient from the backward, or constants)."""

    def args(self, *, bug: bool = False) -> tuple[str, ...]:
        path = MODELS / f"{self.stem}{'_bug' if bug else ''}.py"
        params = [part for p in self.params for part in ("--param", p)]
        return ("run", "--model", f"{path}:{self.name}", *params)


def load(stem: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_fixture_{stem}", MODELS / f"{stem}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def examples(module: ModuleType, name: str) -> dict[str, Any]:
    own = getattr(module, f"{name}_example_inputs", None)
    return dict((own or module.example_inputs)())


POOL = {"size": 2, "stride": 2}
EPS = {"eps": 1e-5}


def layer(forward: str, backward: str, names: tuple[str, ...], **extra: Any) -> Any:
    """A layer pair: forward(**examples, **extra) -> (out, cache); backward(dout, cache, and
    what of `extra` it names) -> one gradient per name."""

    def gradients(module: ModuleType, rng: np.random.Generator) -> Gradients:
        given = examples(module, forward.replace("_forward", ""))
        function, back = getattr(module, forward), getattr(module, backward)
        arguments = {n: given[n] for n in inspect.signature(function).parameters if n in given}
        out, layer_cache = function(**{**arguments, **extra})
        dout = rng.standard_normal(np.shape(out))
        named = {k: v for k, v in extra.items() if k in inspect.signature(back).parameters}
        result = back(dout, layer_cache, **named)
        parts = result if isinstance(result, tuple) else (result,)
        return {
            n: np.asarray(p, dtype=float).reshape(np.shape(given[n]))
            for n, p in zip(names, parts, strict=True)
        }

    return gradients


def elementwise(cls: str, **build: Any) -> Any:
    """A class with __call__ and gradient(x): dout * gradient(x)."""

    def gradients(module: ModuleType, rng: np.random.Generator) -> Gradients:
        x = module.example_inputs()["x"]
        return {"x": rng.standard_normal(x.shape) * getattr(module, cls)(**build).gradient(x)}

    return gradients


def dense(module: ModuleType, rng: np.random.Generator) -> Gradients:
    np.random.seed(0)  # noqa: NPY002 - as gradcheck builds the instance
    layer_object = module.Dense()
    x = module.Dense_example_inputs()["x"]
    dout = rng.standard_normal(np.shape(layer_object.forward(x)))
    dx = layer_object.backward(dout)
    return {"x": dx, "W": layer_object.dW, "b": layer_object.db}


def batchnorm(module: ModuleType, rng: np.random.Generator) -> Gradients:
    np.random.seed(0)  # noqa: NPY002
    layer_object = module.BatchNorm()
    x = module.BatchNorm_example_inputs()["x"]
    dout = rng.standard_normal(np.shape(layer_object.forward(x)))
    dx = layer_object.backward(dout)
    return {"x": dx, "gamma": layer_object.grads["gamma"], "beta": layer_object.grads["beta"]}


def two_layer_net(module: ModuleType, rng: np.random.Generator) -> Gradients:
    np.random.seed(0)  # noqa: NPY002
    net = module.TwoLayerNet(reg=0.1)
    given = module.TwoLayerNet_example_inputs()
    _, grads = net.loss(given["X"], given["y"])
    return {f"params.{k}": v for k, v in grads.items()}


def two_layer(module: ModuleType, rng: np.random.Generator) -> Gradients:
    given = module.example_inputs()
    scores, layer_cache = module.two_layer_forward(given["X"], given["parameters"])
    dX, grads = module.two_layer_backward(rng.standard_normal(scores.shape), layer_cache)
    return {"X": dX, **{f"parameters.{k[1:]}": v for k, v in grads.items()}}


def l_model(module: ModuleType, rng: np.random.Generator) -> Gradients:
    given = module.example_inputs()
    AL, caches = module.L_model_forward(given["X"], given["parameters"])
    grads = module.L_model_backward(AL, given["Y"], caches)
    return {f"parameters.{k}": grads[f"d{k}"] for k in given["parameters"]}


PARAMETERS = tuple(f"parameters.{k}" for k in ("W1", "b1", "W2", "b2"))
NORM = ("x", "gamma", "beta")
LINEAR = ("A_prev", "W", "b")
CASES = [
    Case(
        "suffixed_layers",
        "max_pool",
        ("x",),
        layer("max_pool_forward_naive", "max_pool_backward_naive", ("x",), pool_param=POOL),
    ),
    Case(
        "suffixed_layers",
        "layernorm",
        NORM,
        layer("layernorm_forward", "layernorm_backward", NORM, ln_param=EPS),
    ),
    Case(
        "suffixed_layers",
        "layernorm_alt",
        NORM,
        layer("layernorm_forward", "layernorm_backward_alt", NORM, ln_param=EPS),
    ),
    Case("activation_cache", "sigmoid", ("Z",), layer("sigmoid", "sigmoid_backward", ("Z",))),
    Case("activation_cache", "relu", ("Z",), layer("relu", "relu_backward", ("Z",))),
    Case(
        "activation_cache",
        "linear_activation",
        LINEAR,
        layer(
            "linear_activation_forward", "linear_activation_backward", LINEAR, activation="sigmoid"
        ),
    ),
    Case("activation_classes", "Sigmoid", ("x",), elementwise("Sigmoid")),
    Case("activation_classes", "TanH", ("x",), elementwise("TanH")),
    Case(
        "activation_classes",
        "LeakyReLU",
        ("x",),
        elementwise("LeakyReLU", alpha=0.1),
        params=("alpha=0.1",),
    ),
    Case("activation_classes", "SoftPlus", ("x",), elementwise("SoftPlus")),
    Case("layer_classes", "Dense", ("x", "W", "b"), dense),
    Case("layer_classes", "BatchNorm", NORM, batchnorm),
    Case(
        "layer_classes",
        "TwoLayerNet",
        tuple(f"params.{k}" for k in ("W1", "b1", "W2", "b2")),
        two_layer_net,
        params=("reg=0.1",),
        unchecked=("X", "y"),
    ),
    Case("deep_network", "two_layer", ("X", *PARAMETERS), two_layer),
    Case("deep_network", "L_model", PARAMETERS, l_model, unchecked=("X", "Y")),
]
IDS = [f"{c.stem}:{c.name}" for c in CASES]


@cache
def run_json(*args: str) -> tuple[int, Document]:
    """(exit code, JSON report) of `gradcheck ARGS... --format json`, memoised: several tests
    read the same report."""
    return gradcheck_json(*args, codes=(0, 1))


def touched_entries(case: Case) -> set[Entry]:
    """The entries where the twin's gradient differs from the correct file's."""
    right = case.gradients(load(case.stem), np.random.default_rng(0))
    wrong = case.gradients(load(f"{case.stem}_bug"), np.random.default_rng(0))
    touched: set[Entry] = set()
    for name in case.checked:
        a, b = np.asarray(right[name], dtype=float), np.asarray(wrong[name], dtype=float)
        b = b.reshape(a.shape)
        differs = np.abs(b - a) > 1e-9 * (1.0 + np.abs(a))
        touched |= {(name, tuple(int(i) for i in index)) for index in np.argwhere(differs)}
    return touched


def failed_entries(document: Document) -> set[Entry]:
    return {(c["wrt"], tuple(c["index"])) for c in document["checks"] if not c["passed"]}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_correct_fixture_passes_with_its_inputs_checked(case: Case, report_validator: Any) -> None:
    """The correct file checks as written: exit 0, exactly the inputs its backward gives a
    gradient for checked (attributes and dict members by their names), none failed."""
    code, document = run_json(*case.args())
    report_validator.validate(document)
    assert code == 0, document["summary"]
    assert document["settings"]["wrt"] == list(case.checked)
    assert [n for n, i in document["inputs"].items() if i["checked"]] == list(case.checked)
    assert [n for n, i in document["inputs"].items() if not i["checked"]] == list(case.unchecked)
    assert not failed_entries(document)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bug_twin_fails_on_exactly_the_entries_its_bug_touches(
    case: Case, report_validator: Any
) -> None:
    """The twin exits 1, and its failed checks are exactly the entries where its gradient
    differs from the correct file's, computed here."""
    touched = touched_entries(case)
    assert touched, "the twin's gradient equals the correct one: no bug planted"
    code, document = run_json(*case.args(bug=True))
    report_validator.validate(document)
    assert code == 1
    assert failed_entries(document) == touched


def test_a_second_backward_is_its_own_layer_and_unit_axes_are_reported() -> None:
    """`:layernorm` is the exact pair; `:layernorm_alt` takes layernorm_backward_alt, whose
    dgamma and dbeta of shape (1, 5) for gamma and beta of shape (5,) are accepted and named in
    each input's gradient_shape (null where the shapes agree)."""
    _, exact = run_json(*CASES[1].args())
    _, alt = run_json(*CASES[2].args())
    assert exact["model"]["formula"] == "layernorm_forward(...) from suffixed_layers.py"
    assert alt["model"]["formula"] == (
        "layernorm_forward(...) from suffixed_layers.py, backward layernorm_backward_alt"
    )
    assert [i["gradient_shape"] for i in exact["inputs"].values()] == [None, None, None]
    assert [i["gradient_shape"] for i in alt["inputs"].values()] == [None, [1, 5], [1, 5]]
    assert [i["shape"] for i in alt["inputs"].values()] == [[4, 5], [5], [5]]


def test_the_table_says_which_gradient_came_with_unit_axes() -> None:
    """One line per input in the table's header: gamma's says how its gradient came."""
    result = gradcheck(*CASES[2].args())
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    gamma = "gamma  5 float64 from example_inputs()  (its gradient comes as 1x5: axes of length 1"
    assert f"{gamma} ignored)" in lines
    assert "x      4x5 float64 from example_inputs()" in lines


def test_dict_members_are_named_in_the_json_and_diagnosed_apart() -> None:
    """deep_network's two_layer twin: only parameters.b2 fails, by the factor 1/m (m = 5)."""
    _, document = run_json(*CASES[13].args(bug=True))
    assert list(document["inputs"]) == ["X", *PARAMETERS]
    assert document["inputs"]["parameters.W1"]["shape"] == [3, 4]
    assert {n: s["failed"] for n, s in document["summary"].items() if s["failed"]} == {
        "parameters.b2": 1
    }
    [diagnosis] = document["diagnosis"]
    assert (diagnosis["wrt"], diagnosis["kind"]) == ("parameters.b2", "scale")
    assert diagnosis["parameters"]["simple_factor"] == "1/5"
