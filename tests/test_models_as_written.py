"""Models as they are written: every fixture in fixtures/models checks as its author wrote it
(no reshaping, no adapter) in each convention course code uses, and so does code written here
for the conventions no fixture holds.

- Every correct fixture passes, in full and in fast mode: no false alarm, no diagnosis, no side
  effect; where this file knows the fixture, exactly the inputs it should check are checked.
- Each one-line-bug twin fails on exactly the entries its bug touches. Which entries those are
  is computed here, independently of gradcheck: the twin's gradient against the correct file's,
  called the way its convention calls it, at the file's example_inputs() and one seeded dout.
- What the conventions take from the command line (--input, --inputs, --param, --wrt,
  --entries by name, dicts of arrays) and give back (each array by its name, its own shape).

The conventions: plain forward/backward; a layer's NAME_forward -> (out, cache) with
NAME_backward(dout, cache), one output or several; markers inside the names
(max_pool_forward_naive); a second backward for one forward (layernorm_backward_alt); a loss
NAME(...) -> (loss, gradients); `sigmoid(Z) -> (A, cache)` with `sigmoid_backward`; classes with
__call__ and gradient(x), layer objects holding W and b, a model class with params and loss();
a dict of parameters as one argument; Jacobians and derivatives by name; a cost's backward.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import MODELS, Document, gradcheck, gradcheck_json, load_fixture
from numpy.typing import NDArray

from gradcheck_cli.numerics import workers
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.binding import bind
from gradcheck_cli.subject.files import load_model_file

Entry = tuple[str, tuple[int, ...]]
Gradients = dict[str, NDArray[np.float64]]
GradientsOf = Callable[[ModuleType, np.random.Generator], Gradients]


@cache
def run_json(*args: str) -> tuple[int, Document]:
    """(exit code, JSON report) of `gradcheck ARGS... --format json`, memoised: several tests
    read the same report, and the naive convolution is the slowest thing here."""
    return gradcheck_json(*args, codes=(0, 1))


def failed_entries(document: Document) -> set[Entry]:
    """(input, index) of every failed check, over all cotangents."""
    return {(c["wrt"], tuple(c["index"])) for c in document["checks"] if not c["passed"]}


# --- how each convention's own code gives its gradient ---------------------------------------


def arguments_of(function: Callable[..., Any], examples: dict[str, Any]) -> dict[str, Any]:
    """The example values for function's parameters, by name (the loader's rule)."""
    return {n: examples[n] for n in inspect.signature(function).parameters if n in examples}


def as_its_convention_calls_it(layer: str | None, floating: tuple[str, ...]) -> GradientsOf:
    """The gradients of a plain model (layer None), a layer pair or a loss returning (loss,
    gradients), at its example_inputs(), for seeded random douts."""

    def gradients(module: ModuleType, rng: np.random.Generator) -> Gradients:
        examples = module.example_inputs()
        if layer is None:
            arguments = arguments_of(module.forward, examples)
            found = module.backward(**arguments)
        elif hasattr(module, f"{layer}_forward"):
            arguments = arguments_of(getattr(module, f"{layer}_forward"), examples)
            *outputs, layer_cache = getattr(module, f"{layer}_forward")(**arguments)
            douts = [rng.standard_normal(np.shape(out)) for out in outputs]
            found = getattr(module, f"{layer}_backward")(*douts, layer_cache)
        else:  # the loss convention: (loss, gradients)
            arguments = arguments_of(getattr(module, layer), examples)
            _, found = getattr(module, layer)(**arguments)
        if not isinstance(found, tuple):
            found = (found,)
        # One gradient per input (None for labels), or one per floating input: the loader's rule.
        inputs = [n for n in arguments if isinstance(arguments[n], np.ndarray)]
        floats = [n for n in inputs if arguments[n].dtype.kind == "f"]
        by_name = dict(zip(inputs if len(found) == len(inputs) else floats, found, strict=True))
        return {name: np.asarray(by_name[name], dtype=np.float64) for name in floating}

    return gradients


def examples_of(module: ModuleType, name: str) -> dict[str, Any]:
    own = getattr(module, f"{name}_example_inputs", None)
    return dict((own or module.example_inputs)())


def pair(forward: str, backward: str, names: tuple[str, ...], **extra: Any) -> GradientsOf:
    """A layer pair: forward(**examples, **extra) -> (out, cache); backward(dout, cache, and
    what of `extra` it names) -> one gradient per name."""

    def gradients(module: ModuleType, rng: np.random.Generator) -> Gradients:
        given = examples_of(module, forward.replace("_forward", ""))
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


def elementwise(cls: str, **build: Any) -> GradientsOf:
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


# --- the fixtures this file knows ------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One checkable thing of a fixture: the name after the colon (None for a plain model),
    the inputs it checks in forward's order, those listed but not checked (constants, or no
    gradient from the backward), and how this file computes its gradient as the code gives it."""

    stem: str
    name: str | None
    checked: tuple[str, ...]
    gradients: GradientsOf
    unchecked: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    buggy: str | None = None
    """The one input whose gradient the _bug twin gets wrong, where it is one input."""
    shaped_as_examples: bool = False
    """Each checked input is described as example_inputs() gives it: shape, float64, source."""

    def spec(self, *, bug: bool = False) -> str:
        """What --model takes: the file, and the name after its colon."""
        path = MODELS / f"{self.stem}{'_bug' if bug else ''}.py"
        return f"{path}:{self.name}" if self.name else str(path)

    def args(self, *, bug: bool = False) -> tuple[str, ...]:
        params = [part for p in self.params for part in ("--param", p)]
        return ("run", "--model", self.spec(bug=bug), *params)


def case(stem: str, layer: str | None, floating: tuple[str, ...], **kw: Any) -> Case:
    """A fixture whose convention this file calls as the loader does (plain, pair, loss)."""
    gradients = as_its_convention_calls_it(layer, floating)
    return Case(stem, layer, floating, gradients, shaped_as_examples=True, **kw)


POOL = {"size": 2, "stride": 2}
EPS = {"eps": 1e-5}
PARAMETERS = tuple(f"parameters.{k}" for k in ("W1", "b1", "W2", "b2"))
NORM = ("x", "gamma", "beta")
LINEAR = ("A_prev", "W", "b")
CASES = [
    case("layers", "affine", ("x", "w", "b"), buggy="b"),
    case("layers", "batchnorm", ("x", "gamma", "beta"), buggy="gamma"),
    case("layers", "scale", ("x", "alpha"), buggy="alpha"),
    case("layers", "softmax_loss", ("x",), unchecked=("y",), buggy="x"),
    case("conv_layers", "conv", ("x", "w", "b"), buggy="x"),
    case("rnn_layers", "lstm_step", ("x", "prev_h", "prev_c", "Wx", "Wh", "b"), buggy="prev_c"),
    case("softmax_regression", None, ("x", "w", "b"), unchecked=("y",), buggy="w"),
    Case(
        "suffixed_layers",
        "max_pool",
        ("x",),
        pair("max_pool_forward_naive", "max_pool_backward_naive", ("x",), pool_param=POOL),
    ),
    Case(
        "suffixed_layers",
        "layernorm",
        NORM,
        pair("layernorm_forward", "layernorm_backward", NORM, ln_param=EPS),
    ),
    Case(
        "suffixed_layers",
        "layernorm_alt",
        NORM,
        pair("layernorm_forward", "layernorm_backward_alt", NORM, ln_param=EPS),
    ),
    Case("activation_cache", "sigmoid", ("Z",), pair("sigmoid", "sigmoid_backward", ("Z",))),
    Case("activation_cache", "relu", ("Z",), pair("relu", "relu_backward", ("Z",))),
    Case(
        "activation_cache",
        "linear_activation",
        LINEAR,
        pair(
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
IDS = [f"{c.stem}:{c.name}" if c.name else c.stem for c in CASES]
BY_ID = dict(zip(IDS, CASES, strict=True))
KNOWN = {c.args(): c for c in CASES}


# --- every correct fixture passes ----------------------------------------------------------------


NEEDS_A_REFERENCE = {"low_precision.py:softmax_half"}
"""Correct kernels that compute in float16 whatever they are given: in float64 nothing can vouch
for them (exit 4, inconclusive); against a float64 reference they pass (test_low_precision)."""


def correct_fixtures() -> list[tuple[str, ...]]:
    """The `gradcheck run` arguments of every correct fixture (no _bug in its name): FILE.py for
    a file with forward(), FILE.py:NAME for each NAME_forward with a NAME_backward (but
    NEEDS_A_REFERENCE), then what only this file's cases name (classes, losses, markers inside
    names), and a class built without the parameter its case gives it."""
    found: list[tuple[str, ...]] = []
    for path in sorted(MODELS.glob("*.py")):
        if "_bug" in path.stem:
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"^def forward\(", text, re.MULTILINE):
            found.append(("run", "--model", str(path)))
        for name in re.findall(r"^def (\w+)_forward\(", text, re.MULTILINE):
            needs = f"{path.name}:{name}" in NEEDS_A_REFERENCE
            if re.search(rf"^def {name}_backward\(", text, re.MULTILINE) and not needs:
                found.append(("run", "--model", f"{path}:{name}"))
    found += [c.args() for c in CASES if c.args() not in found]
    return [*found, ("run", "--model", f"{MODELS / 'layer_classes.py'}:TwoLayerNet")]


CORRECT = correct_fixtures()


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize(
    "args", CORRECT, ids=[" ".join(Path(a).name for a in args[2:]) for args in CORRECT]
)
def test_every_correct_fixture_passes(
    args: tuple[str, ...], mode: str, report_validator: Any
) -> None:
    """Each correct model file (and each layer, class or loss of one) in fixtures/models passes
    `gradcheck run` with exit 0, in full and in fast mode: no entry fails, nothing is diagnosed,
    no side effect is found. Where this file knows the fixture (full mode), exactly the inputs
    its backward gives a gradient for are checked, attributes and dict members by their names,
    each as example_inputs() gives it where the case says so; the others are listed unchecked."""
    code, document = run_json(*args) if mode == "full" else run_json(*args, "--mode", mode)
    report_validator.validate(document)
    assert (code, document["verdict"]) == (0, "passed"), [
        (c["wrt"], c["index"], c["reason"]) for c in document["checks"] if not c["passed"]
    ]
    assert not failed_entries(document)
    assert document["diagnosis"] == []
    assert all(e["passed"] for e in document["side_effects"]), document["side_effects"]
    known = KNOWN.get(args)
    if known is None or mode == "fast":
        return
    inputs = document["inputs"]
    assert document["settings"]["wrt"] == list(known.checked)
    assert [n for n, i in inputs.items() if i["checked"]] == list(known.checked)
    assert [n for n, i in inputs.items() if not i["checked"]] == list(known.unchecked)
    assert list(document["summary"]) == list(known.checked)
    assert {c["wrt"] for c in document["checks"]} == set(known.checked)
    if known.shaped_as_examples:
        shapes = example_shapes(known)
        for name in known.checked:
            described = inputs[name]
            assert described["dtype"] == "float64"
            assert described["shape"] == shapes[name]
            assert described["source"] == "example_inputs()"
            entries = int(np.prod(shapes[name], dtype=np.int64))
            assert document["summary"][name]["entries"] == entries


def example_shapes(known: Case) -> dict[str, list[int]]:
    examples = load_fixture(known.stem).example_inputs()
    return {n: list(np.shape(examples[n])) for n in (*known.checked, *known.unchecked)}


# --- each twin fails where its bug is ------------------------------------------------------------


def touched_entries(known: Case) -> set[Entry]:
    """The entries where the twin's gradient differs from the correct file's."""
    right = known.gradients(load_fixture(known.stem), np.random.default_rng(0))
    wrong = known.gradients(load_fixture(f"{known.stem}_bug"), np.random.default_rng(0))
    touched: set[Entry] = set()
    for name in known.checked:
        a, b = np.asarray(right[name], dtype=float), np.asarray(wrong[name], dtype=float)
        differs = np.abs(b.reshape(a.shape) - a) > 1e-9 * (1.0 + np.abs(a))
        touched |= {(name, tuple(int(i) for i in index)) for index in np.argwhere(differs)}
    return touched


@pytest.mark.parametrize("known", CASES, ids=IDS)
def test_bug_twin_fails_on_exactly_the_entries_its_bug_touches(
    known: Case, report_validator: Any
) -> None:
    """The twin exits 1; its failed checks are exactly the entries where its gradient differs
    from the correct file's, computed here (all in the one input it breaks, where it breaks
    one), each input's summary counting its own."""
    touched = touched_entries(known)
    assert touched, "the twin's gradient equals the correct one: no bug planted"
    if known.buggy is not None:
        assert {name for name, _ in touched} == {known.buggy}
    code, document = run_json(*known.args(bug=True))
    report_validator.validate(document)
    assert code == 1
    assert document["verdict"] == "failed"
    assert failed_entries(document) == touched
    for name, summary in document["summary"].items():
        assert summary["failed"] == sum(1 for n, _ in touched if n == name), (name, summary)


# --- integer labels, 0-D inputs, a bias -------------------------------------------------------


LABELLED = [c for c in CASES if c.shaped_as_examples and c.unchecked]


@pytest.mark.parametrize("known", LABELLED, ids=[f"{c.stem}:{c.name}" for c in LABELLED])
@pytest.mark.parametrize("bug", [False, True], ids=["correct", "twin"])
def test_integer_labels_are_constants_never_perturbed(known: Case, bug: bool) -> None:
    """Integer labels appear in `inputs` as constants (checked false, why says so), keep their
    integer dtype, and appear in no check and no summary."""
    _, document = run_json("run", "--model", known.spec(bug=bug))
    shapes = example_shapes(known)
    for name in known.unchecked:
        described = document["inputs"][name]
        assert described["checked"] is False
        assert described["dtype"] == "int64"
        assert described["shape"] == shapes[name]
        assert "constant" in described["why"]
        assert name not in document["summary"]
        assert name not in document["settings"]["wrt"]
        assert all(c["wrt"] != name for c in document["checks"])


@pytest.mark.parametrize(("bug", "passed"), [(False, True), (True, False)])
def test_zero_d_input_is_checked_at_index_empty(bug: bool, passed: bool) -> None:
    """scale's alpha is a 0-D array: described with shape [], checked once per cotangent at
    index [], and its wrong gradient in the twin is caught."""
    _, document = run_json("run", "--model", BY_ID["layers:scale"].spec(bug=bug))
    assert document["inputs"]["alpha"]["shape"] == []
    assert document["summary"]["alpha"]["entries"] == 1
    alpha = [c for c in document["checks"] if c["wrt"] == "alpha"]
    assert [c["index"] for c in alpha] == [[]] * document["settings"]["cotangents"]
    assert all(c["passed"] is passed for c in alpha)


def test_bias_gradient_bug_alone_is_caught() -> None:
    """affine's twin gets only db wrong (the batch mean instead of the sum): every entry of b
    fails, x and w pass, and the diagnosis names the factor 1/N (N = 4 rows)."""
    code, document = run_json("run", "--model", BY_ID["layers:affine"].spec(bug=True))
    assert code == 1
    summary = document["summary"]
    assert (summary["x"]["failed"], summary["w"]["failed"], summary["b"]["failed"]) == (0, 0, 3)
    [diagnosis] = document["diagnosis"]
    assert diagnosis["wrt"] == "b"
    assert diagnosis["kind"] == "scale"
    assert diagnosis["parameters"]["simple_factor"] == "1/4"


def test_softmax_loss_missing_one_over_n_is_diagnosed_as_scale_n() -> None:
    """softmax_loss's twin forgets dx /= N with N = 4 rows: the diagnosis is kind "scale" with
    factor 4 over every entry of x, named as the batch size of x: a factor is named against the
    model's own dimensions."""
    n = load_fixture("layers").example_inputs()["x"].shape[0]
    _, document = run_json("run", "--model", BY_ID["layers:softmax_loss"].spec(bug=True))
    [diagnosis] = document["diagnosis"]
    assert diagnosis["wrt"] == "x"
    assert diagnosis["kind"] == "scale"
    assert diagnosis["parameters"]["simple_factor"] == str(n)
    assert diagnosis["parameters"]["factor"] == pytest.approx(n, rel=1e-6)
    assert diagnosis["entries"]["failed"] == document["summary"]["x"]["entries"]
    assert f"{n} = the batch size of x (x.shape[0]" in diagnosis["message"]
    assert diagnosis["parameters"]["dimension"] == {"input": "x", "axes": [0], "size": n}


# --- inputs from the command line ---------------------------------------------------------------


def regression_arrays() -> dict[str, NDArray[Any]]:
    """Inputs for softmax_regression.py of other shapes than its example_inputs(): N=6, D=2,
    C=3, so a test sees whether the command line's arrays, not the examples, were used."""
    rng = np.random.default_rng(7)
    return {
        "x": rng.standard_normal((6, 2)),
        "w": rng.standard_normal((2, 3)),
        "b": rng.standard_normal(3),
        "y": rng.integers(0, 3, size=6),
    }


@pytest.mark.parametrize(("bug", "code"), [(False, 0), (True, 1)])
def test_input_options_feed_a_plain_model(
    bug: bool,
    code: int,
    tmp_path: Path,
) -> None:
    """--input NAME=PATH (one .npy per input) feeds softmax_regression.py: the arrays are the
    files' (shapes and sources), y stays an integer constant, and the twin fails on w alone."""
    arguments = ["run", "--model", BY_ID["softmax_regression"].spec(bug=bug)]
    for name, array in regression_arrays().items():
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        arguments += ["--input", f"{name}={path}"]
    exit_code, document = run_json(*arguments)
    assert exit_code == code
    for name, array in regression_arrays().items():
        assert document["inputs"][name]["shape"] == list(array.shape)
        assert document["inputs"][name]["source"] == str(tmp_path / f"{name}.npy")
    assert document["inputs"]["y"]["checked"] is False
    assert {c["wrt"] for c in document["checks"]} == {"x", "w", "b"}
    failing = {name for name, summary in document["summary"].items() if summary["failed"]}
    assert failing == ({"w"} if bug else set())


@pytest.mark.parametrize(("bug", "code"), [(False, 0), (True, 1)])
def test_inputs_npz_feeds_a_plain_model(
    bug: bool,
    code: int,
    tmp_path: Path,
) -> None:
    """--inputs FILE.npz gives every input by its key, with the same verdicts as --input."""
    archive = tmp_path / "inputs.npz"
    arrays = regression_arrays()
    np.savez(archive, x=arrays["x"], w=arrays["w"], b=arrays["b"], y=arrays["y"])
    exit_code, document = run_json(
        "run", "--model", BY_ID["softmax_regression"].spec(bug=bug), "--inputs", str(archive)
    )
    assert exit_code == code
    for name, array in regression_arrays().items():
        assert document["inputs"][name]["shape"] == list(array.shape)
        assert document["inputs"][name]["dtype"] == ("int64" if name == "y" else "float64")
    failing = {name for name, summary in document["summary"].items() if summary["failed"]}
    assert failing == ({"w"} if bug else set())


# --- perturb ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "entry", "wrt", "index"),
    [("affine", "b[1]", "b", [1]), ("scale", "alpha[]", "alpha", [])],
)
@pytest.mark.parametrize(("bug", "code"), [(False, 0), (True, 1)])
def test_perturb_one_entry_of_a_layer(
    layer: str,
    entry: str,
    wrt: str,
    index: list[int],
    bug: bool,
    code: int,
) -> None:
    """perturb --entry on a layer's bias and on its 0-D input: the correct layer agrees, the
    twin (whose bug is in exactly that gradient) does not."""
    exit_code, document = run_json(
        "perturb", "--model", BY_ID[f"layers:{layer}"].spec(bug=bug), "--entry", entry
    )
    assert exit_code == code
    [perturbation] = document["perturbations"]
    assert (perturbation["wrt"], perturbation["index"]) == (wrt, index)
    assert perturbation["passed"] is not bug


# --- a second backward, unit axes, dicts of arrays ---------------------------------------------


def test_a_second_backward_is_its_own_layer_and_unit_axes_are_reported() -> None:
    """`:layernorm` is the exact pair; `:layernorm_alt` takes layernorm_backward_alt, whose
    dgamma and dbeta of shape (1, 5) for gamma and beta of shape (5,) are accepted and named in
    each input's gradient_shape (null where the shapes agree)."""
    _, exact = run_json(*BY_ID["suffixed_layers:layernorm"].args())
    _, alt = run_json(*BY_ID["suffixed_layers:layernorm_alt"].args())
    assert exact["model"]["formula"] == "layernorm_forward(...) from suffixed_layers.py"
    assert alt["model"]["formula"] == (
        "layernorm_forward(...) from suffixed_layers.py, backward layernorm_backward_alt"
    )
    assert [i["gradient_shape"] for i in exact["inputs"].values()] == [None, None, None]
    assert [i["gradient_shape"] for i in alt["inputs"].values()] == [None, [1, 5], [1, 5]]
    assert [i["shape"] for i in alt["inputs"].values()] == [[4, 5], [5], [5]]


def test_the_table_says_which_gradient_came_with_unit_axes() -> None:
    """One line per input in the table's header: gamma's says how its gradient came."""
    result = gradcheck(*BY_ID["suffixed_layers:layernorm_alt"].args())
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    gamma = "gamma  5 float64 from example_inputs()  (its gradient comes as 1x5: axes of length 1"
    assert f"{gamma} ignored)" in lines
    assert "x      4x5 float64 from example_inputs()" in lines


def test_dict_members_are_named_in_the_json_and_diagnosed_apart() -> None:
    """deep_network's two_layer twin: only parameters.b2 fails, by the factor 1/m (m = 5)."""
    _, document = run_json(*BY_ID["deep_network:two_layer"].args(bug=True))
    assert list(document["inputs"]) == ["X", *PARAMETERS]
    assert document["inputs"]["parameters.W1"]["shape"] == [3, 4]
    assert {n: s["failed"] for n, s in document["summary"].items() if s["failed"]} == {
        "parameters.b2": 1
    }
    [diagnosis] = document["diagnosis"]
    assert (diagnosis["wrt"], diagnosis["kind"]) == ("parameters.b2", "scale")
    assert diagnosis["parameters"]["simple_factor"] == "1/5"


# --- code written here, for what no fixture holds ----------------------------------------------


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


SCALED = """
import numpy as np


def scaled_forward(x, w):
    return x @ w, (x, w)


def scaled_backward(dout, cache, factor):
    x, w = cache
    return factor * (dout @ w.T), factor * (x.T @ dout)


def example_inputs():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((3, 4)), "w": rng.standard_normal((4, 2))}
"""


def test_a_backward_only_parameter_comes_from_param_by_name(tmp_path: Path) -> None:
    """backward(dout, cache, factor): --param factor=1 gives it (forward does not take it) and
    the check passes; factor=2 makes every gradient twice too large. (Without it, exit 2 says
    how to give it: test_bad_input.)"""
    path = write(tmp_path, "scaled.py", SCALED)
    code, document = gradcheck_json("run", "--model", f"{path}:scaled", "--param", "factor=1")
    assert code == 0
    assert list(document["inputs"]) == ["x", "w"]
    code, document = gradcheck_json("run", "--model", f"{path}:scaled", "--param", "factor=2")
    assert code == 1
    assert {d["wrt"]: d["parameters"]["simple_factor"] for d in document["diagnosis"]} == {
        "x": "2",
        "w": "2",
    }


def test_a_whole_archive_fills_a_dict_argument_and_its_entries_are_named(tmp_path: Path) -> None:
    """--input parameters=params.npz gives the dict argument every array of the archive, each
    an input `parameters.KEY`; --entries and --wrt name them with the dot."""
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "params.npz",
        W1=rng.standard_normal((3, 4)),
        b1=rng.standard_normal((3, 1)),
        W2=rng.standard_normal((1, 3)),
        b2=rng.standard_normal((1, 1)),
    )
    np.save(tmp_path / "X.npy", rng.standard_normal((4, 2)))
    model = f"{MODELS / 'deep_network.py'}:two_layer"
    given = (
        "--input",
        f"parameters={tmp_path / 'params.npz'}",
        "--input",
        f"X={tmp_path / 'X.npy'}",
    )
    code, document = gradcheck_json("run", "--model", model, *given)
    assert code == 0
    assert {n: i["source"] for n, i in document["inputs"].items()} == {
        "X": str(tmp_path / "X.npy"),
        **{f"parameters.{k}": f"{tmp_path / 'params.npz'}:{k}" for k in ("W1", "b1", "W2", "b2")},
    }
    code, document = gradcheck_json(
        "run",
        "--model",
        model,
        *given,
        "--entries",
        "parameters.W1[0,3];parameters.b2[0,0]",
    )
    assert code == 0
    assert sorted((c["wrt"], tuple(c["index"])) for c in document["checks"]) == sorted(
        [("parameters.W1", (0, 3)), ("parameters.b2", (0, 0))] * 2  # two cotangents
    )
    code, document = gradcheck_json(
        "run", "--model", model, *given, "--wrt", "parameters", codes=(0, 1)
    )
    assert document["settings"]["wrt"] == [f"parameters.{k}" for k in ("W1", "b1", "W2", "b2")]


def test_an_inputs_archive_may_hold_a_dict_arguments_arrays(tmp_path: Path) -> None:
    """--inputs all.npz with keys parameters.W1, ...: the same dict argument; an array of it
    given alone overrides example_inputs()'s and the others stay the example's."""
    examples = load_fixture("deep_network").example_inputs()
    np.savez(
        tmp_path / "all.npz",
        X=examples["X"],
        **{f"parameters.{k}": v for k, v in examples["parameters"].items()},
    )
    model = f"{MODELS / 'deep_network.py'}:two_layer"
    code, document = gradcheck_json("run", "--model", model, "--inputs", str(tmp_path / "all.npz"))
    assert code == 0
    assert document["inputs"]["parameters.W2"]["source"] == f"{tmp_path / 'all.npz'}:parameters.W2"
    np.save(tmp_path / "w1.npy", np.ones((3, 4)))
    code, document = gradcheck_json(
        "run", "--model", model, "--input", f"parameters.W1={tmp_path / 'w1.npy'}"
    )
    assert code == 0
    sources = {n: i["source"] for n, i in document["inputs"].items()}
    assert sources["parameters.W1"] == str(tmp_path / "w1.npy")
    assert sources["parameters.b1"] == "example_inputs()"


SQUARES = """
import numpy as np


def forward(b):
    return float(np.sum(b**2))


def backward(b):
    return 2 * b


def example_inputs():
    return {"b": np.zeros(3)}
"""


def test_npy_arrays_keep_their_shape_and_only_a_csv_line_flattens(tmp_path: Path) -> None:
    """For a 1-D example b, a .npy of shape (3, 1) stays (3, 1) (flattening it would change
    what x + b broadcasts to in other models), while a one-column CSV of 3 numbers is (3,)."""
    path = write(tmp_path, "squares.py", SQUARES)
    np.save(tmp_path / "b.npy", np.ones((3, 1)))
    (tmp_path / "b.csv").write_text("1\n2\n3\n", encoding="utf-8")
    for given, shape in (("b.npy", [3, 1]), ("b.csv", [3])):
        code, document = gradcheck_json(
            "run", "--model", str(path), "--input", f"b={tmp_path / given}"
        )
        assert code == 0
        assert document["inputs"]["b"]["shape"] == shape


WRITES = """
import numpy as np


def relu_forward(x):
    return np.maximum(0, x), [x.copy(), np.zeros_like(x)]


def relu_backward(dout, cache):
    x, scratch = cache
    scratch += 1.0  # writes into its own cache
    dout[x <= 0] = 0  # and into dout, as CS231n's relu_backward does
    return dout * scratch


def example_inputs():
    return {"x": np.random.default_rng(2).standard_normal((4, 5))}
"""


def test_a_backward_writing_into_its_cache_and_dout_gets_fresh_copies_every_call(
    tmp_path: Path,
) -> None:
    """Every backward call sees the cache and dout as forward and the check made them, so a
    backward that writes into both is deterministic and its gradient checked as written: every
    entry agrees; and both writes are side effects that fail the run, named as the code names
    them."""
    path = write(tmp_path, "writes.py", WRITES)
    code, document = gradcheck_json("run", "--model", f"{path}:relu")
    assert code == 1
    assert document["summary"]["x"]["entries"] == 20
    assert document["summary"]["x"]["failed"] == 0
    found = {e["kind"]: e["names"] for e in document["side_effects"] if not e["passed"]}
    assert found == {"dout-modified": ["dout"], "cache-modified": ["cache[1]"]}
    code, document = gradcheck_json("run", "--model", f"{path}:relu", "--no-side-effects")
    assert code == 0
    assert document["side_effects"] == []
    assert document["settings"]["side_effects"] is False


RANDOM_CLASS = """
import numpy as np


class Noisy:
    '''A layer whose constructor draws two arrays: W (an input: backward reports dW) and
    mask (not an input), both from np.random's global generator.'''

    def __init__(self, n=4):
        self.W = np.random.randn(n, n)
        self.mask = np.random.rand(n) > 0.5

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.W) * self.mask

    def backward(self, dout):
        dz = dout * self.mask * (1 - np.tanh(self.x @ self.W) ** 2)
        self.dW = self.x.T @ dz
        return dz @ self.W.T


def example_inputs():
    return {"x": np.random.default_rng(4).standard_normal((6, 4))}
"""


def test_worker_processes_build_the_same_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class's recipe imports the file again and builds the instance with the same seeded
    global generator: its models give the parent's numbers, and --jobs 2 the report of
    --jobs 1."""
    path = write(tmp_path, "noisy.py", RANDOM_CLASS)
    bound = bind(load_model_file(path, "Noisy"), {}, {})
    assert list(bound.inputs) == ["x", "W"]
    assert bound.sources["W"] == "Noisy().W"
    rebuilt, _ = bound.recipe({n: np.array(a) for n, a in bound.inputs.items()})
    for parent, child in zip(bound.models, rebuilt, strict=True):
        assert child.value(bound.inputs) == parent.value(bound.inputs)
    one = gradcheck_json("run", "--model", f"{path}:Noisy", "--jobs", "1")
    monkeypatch.setattr(workers, "WORTH_SECONDS", 0.0)
    two = gradcheck_json("run", "--model", f"{path}:Noisy", "--jobs", "2")
    assert two[1]["settings"]["jobs"] == 2
    assert one[0] == two[0] == 0
    assert one[1]["checks"] == two[1]["checks"]


JACOBIAN = """
import numpy as np


class Softmax:
    def __call__(self, x):
        e = np.exp(x - x.max())
        return e / e.sum()

    def gradient(self, x):
        p = self(x)
        return np.diag(p) - np.outer(p, p)  # the full Jacobian: (output, input)


def cube(x):
    return x**3


def cube_prime(x):
    return 3 * x**2


def example_inputs():
    return {"x": np.random.default_rng(5).standard_normal(4)}
"""


@pytest.mark.parametrize("name", ["Softmax", "cube"])
def test_a_jacobian_and_a_derivative_by_name_are_checked(tmp_path: Path, name: str) -> None:
    """gradient(x) of shape (output, input) is a Jacobian (v contracted with it); cube with
    cube_prime is an elementwise derivative."""
    path = write(tmp_path, "jacobian.py", JACOBIAN)
    code, document = gradcheck_json("run", "--model", f"{path}:{name}")
    assert code == 0, document["summary"]
    assert document["summary"]["x"]["entries"] == 4


def test_supplied_inputs_reach_a_class_attribute(tmp_path: Path) -> None:
    """An array given for an attribute's name (here W) replaces the constructor's."""
    path = write(tmp_path, "noisy.py", RANDOM_CLASS)
    W = np.eye(4)
    bound = bind(load_model_file(path, "Noisy"), {"W": Supplied(W, "w.npy")}, {})
    assert bound.sources["W"] == "w.npy"
    np.testing.assert_array_equal(bound.inputs["W"], W)


def test_the_api_takes_a_dict_of_arrays_and_backward_params_by_name() -> None:
    """check_layer(..., inputs={"parameters": {...}}) checks each array as parameters.KEY, and
    params= reaches a backward that takes a value by name."""
    from gradcheck_cli.api import check_layer

    module = load_fixture("deep_network")
    examples = module.example_inputs()
    report = check_layer(
        module.two_layer_forward,
        module.two_layer_backward,
        inputs={"X": examples["X"], "parameters": examples["parameters"]},
    )
    assert report.passed
    assert list(report.inputs) == ["X", *(f"parameters.{k}" for k in ("W1", "b1", "W2", "b2"))]
    cached = load_fixture("activation_cache")
    given = cached.example_inputs()
    report = check_layer(
        cached.linear_activation_forward,
        cached.linear_activation_backward,
        inputs={n: given[n] for n in ("A_prev", "W", "b")},
        params={"activation": "relu"},
    )
    assert report.passed
    assert report.settings.wrt == ("A_prev", "W", "b")


def test_wrt_names_a_dict_arguments_arrays_one_by_one() -> None:
    """--wrt parameters.W1,parameters.b2 checks those two arrays alone."""
    model = f"{MODELS / 'deep_network.py'}:two_layer"
    wrt = "parameters.W1,parameters.b2"
    code, document = gradcheck_json("run", "--model", model, "--wrt", wrt)
    assert code == 0
    assert document["settings"]["wrt"] == ["parameters.W1", "parameters.b2"]
    assert {c["wrt"] for c in document["checks"]} == {"parameters.W1", "parameters.b2"}


PLANAR = """
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def layer_sizes(X, Y):
    return X.shape[0], 4, Y.shape[0]


def forward_propagation(X, parameters):
    A1 = np.tanh(parameters["W1"] @ X + parameters["b1"])
    A2 = sigmoid(parameters["W2"] @ A1 + parameters["b2"])
    return A2, {"A1": A1, "A2": A2}


def compute_cost(A2, Y, parameters):
    return float(-np.mean(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)))


def backward_propagation(parameters, cache, X, Y):
    m = X.shape[1]
    A1, A2 = cache["A1"], cache["A2"]
    dZ2 = A2 - Y
    dZ1 = (parameters["W2"].T @ dZ2) * (1 - A1**2)
    return {
        "dW1": dZ1 @ X.T / m,
        "db1": dZ1.sum(axis=1, keepdims=True) / m,
        "dW2": dZ2 @ A1.T / m,
        "db2": dZ2.sum(axis=1, keepdims=True) * FACTOR / m,
    }


def nn_model(X, Y, n_h, num_iterations=10000):
    return None


def example_inputs():
    rng = np.random.default_rng(0)
    return {
        "X": rng.standard_normal((2, 5)),
        "Y": (rng.random((1, 5)) > 0.5).astype(float),
        "parameters": {
            "W1": rng.standard_normal((4, 2)),
            "b1": rng.standard_normal((4, 1)),
            "W2": rng.standard_normal((1, 4)),
            "b2": rng.standard_normal((1, 1)),
        },
    }
"""

COST_LAYER = """
import numpy as np


def forward_propagation_n(X, Y, parameters):
    A = 1 / (1 + np.exp(-(parameters["W"] @ X + parameters["b"])))
    cost = float(-np.mean(Y * np.log(A) + (1 - Y) * np.log(1 - A)))
    return cost, (A, X)


def backward_propagation_n(X, Y, cache):
    A, X = cache
    dZ = (A - Y) / X.shape[1]
    return {"dZ": dZ, "dW": FACTOR * dZ @ X.T, "db": dZ.sum(axis=1, keepdims=True)}


def example_inputs():
    rng = np.random.default_rng(1)
    return {
        "X": rng.standard_normal((3, 4)),
        "Y": np.array([[1.0, 0.0, 1.0, 1.0]]),
        "parameters": {"W": rng.standard_normal((1, 3)), "b": rng.standard_normal((1, 1))},
    }
"""


@pytest.mark.parametrize(
    ("source", "name", "wrong"),
    [(PLANAR, "propagation", "parameters.b2"), (COST_LAYER, "propagation_n", "parameters.W")],
    ids=["loss-of-output", "cost-and-cache"],
)
def test_deeplearning_ai_backwards_of_a_cost_are_checked_as_written(
    tmp_path: Path, source: str, name: str, wrong: str
) -> None:
    """backward_propagation(parameters, cache, X, Y) differentiates compute_cost(A2, Y,
    parameters) (the one function named a cost that takes Y and forward's output; not
    layer_sizes(X, Y) or nn_model); backward_propagation_n(X, Y, cache) is the gradient of the
    cost forward_propagation_n returns. Each passes, and a factor planted in one gradient
    fails that input alone; X and Y are listed, not checked; dZ is ignored."""
    path = write(tmp_path, "network.py", source.replace("FACTOR", "1.0"))
    code, document = gradcheck_json("run", "--model", f"{path}:{name}")
    assert code == 0, document["summary"]
    unchecked = [n for n, i in document["inputs"].items() if not i["checked"]]
    assert sorted(unchecked) == ["X", "Y"]
    path = write(tmp_path, "network.py", source.replace("FACTOR", "2.0"))
    code, document = gradcheck_json("run", "--model", f"{path}:{name}")
    assert code == 1
    assert [n for n, s in document["summary"].items() if s["failed"]] == [wrong]


def test_a_loss_holding_one_number_in_a_matrix_is_that_number(tmp_path: Path) -> None:
    """A cost left unsqueezed, of shape (1, 1), is the loss it holds: checked, not refused."""
    source = """
    import numpy as np

    X = np.random.default_rng(1).standard_normal((4, 3))


    def cost(w):
        return np.array([[np.sum((X @ w) ** 2)]]), 2 * X.T @ (X @ w)


    def example_inputs():
        return {"w": np.random.default_rng(0).standard_normal((3, 1))}
    """
    path = write(tmp_path, "cost.py", source)
    code, document = gradcheck_json("run", "--model", f"{path}:cost")
    assert code == 0
    assert document["output_shape"] is None
