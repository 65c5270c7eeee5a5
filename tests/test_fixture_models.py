"""The learner's examples in fixtures/models/ through the CLI (issue 10, item 8).

Each correct layer checks as written (no reshaping, no adapter) and passes with every floating
input checked; each one-line-bug twin fails (exit 1) on exactly the entries its bug touches, all
in one input; integer labels are constants; a 0-D input is checked at index [].

Which entries a bug touches is computed here, independently of gradcheck: the twin's backward
against the correct one's, at the file's example_inputs() and the same random dout.
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
from helpers import gradcheck_json
from numpy.typing import NDArray

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"

Document = dict[str, Any]
Entry = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class Case:
    """One fixture: the correct file (and layer), its inputs, and the input its twin breaks."""

    stem: str
    layer: str | None
    """None for the plain convention (forward and backward)."""
    floating: tuple[str, ...]
    """The inputs whose gradient is checked, in forward's order."""
    buggy: str
    """The one input whose gradient the _bug twin gets wrong."""
    constants: tuple[str, ...] = ()
    """Integer inputs (labels): never perturbed."""

    def spec(self, *, bug: bool = False) -> str:
        path = MODELS / f"{self.stem}{'_bug' if bug else ''}.py"
        return f"{path}:{self.layer}" if self.layer else str(path)


CASES = [
    Case("layers", "affine", ("x", "w", "b"), buggy="b"),
    Case("layers", "batchnorm", ("x", "gamma", "beta"), buggy="gamma"),
    Case("layers", "scale", ("x", "alpha"), buggy="alpha"),
    Case("layers", "softmax_loss", ("x",), buggy="x", constants=("y",)),
    Case("conv_layers", "conv", ("x", "w", "b"), buggy="x"),
    Case("rnn_layers", "lstm_step", ("x", "prev_h", "prev_c", "Wx", "Wh", "b"), buggy="prev_c"),
    Case("softmax_regression", None, ("x", "w", "b"), buggy="w", constants=("y",)),
]
IDS = [case.layer or case.stem for case in CASES]
BY_ID = dict(zip(IDS, CASES, strict=True))


# --- helpers ------------------------------------------------------------------------------------


@cache
def run_json(*args: str) -> tuple[int, Document]:
    """(exit code, JSON report) of `gradcheck ARGS... --format json`, memoised: several tests
    read the same report."""
    return gradcheck_json(*args, codes=(0, 1))


def load_fixture(stem: str) -> ModuleType:
    """Import fixtures/models/STEM.py as a user's own script would be imported."""
    spec = importlib.util.spec_from_file_location(f"_fixture_{stem}", MODELS / f"{stem}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forward_arguments(function: Callable[..., Any], examples: dict[str, Any]) -> dict[str, Any]:
    """The example values for function's parameters, by name (the loader's rule)."""
    return {n: examples[n] for n in inspect.signature(function).parameters if n in examples}


def user_gradients(module: ModuleType, case: Case) -> dict[str, NDArray[np.float64]]:
    """The file's own gradients at its example_inputs(), for a seeded random dout."""
    examples = module.example_inputs()
    if case.layer is None:
        arguments = forward_arguments(module.forward, examples)
        gradients = module.backward(**arguments)
    elif hasattr(module, f"{case.layer}_forward"):
        arguments = forward_arguments(getattr(module, f"{case.layer}_forward"), examples)
        *outputs, layer_cache = getattr(module, f"{case.layer}_forward")(**arguments)
        rng = np.random.default_rng(0)
        douts = [rng.standard_normal(np.shape(out)) for out in outputs]
        gradients = getattr(module, f"{case.layer}_backward")(*douts, layer_cache)
    else:  # the loss convention: (loss, gradients)
        arguments = forward_arguments(getattr(module, case.layer), examples)
        _, gradients = getattr(module, case.layer)(**arguments)
    if not isinstance(gradients, tuple):
        gradients = (gradients,)
    # One gradient per input (None for labels), or one per floating input: the loader's rule.
    inputs = [n for n in arguments if isinstance(arguments[n], np.ndarray)]
    floating = [n for n in inputs if arguments[n].dtype.kind == "f"]
    by_name = dict(
        zip(inputs if len(gradients) == len(inputs) else floating, gradients, strict=True)
    )
    return {name: np.asarray(by_name[name], dtype=np.float64) for name in case.floating}


def touched_entries(case: Case) -> set[Entry]:
    """The entries where the twin's gradient differs from the correct file's."""
    right = user_gradients(load_fixture(case.stem), case)
    wrong = user_gradients(load_fixture(f"{case.stem}_bug"), case)
    touched: set[Entry] = set()
    for name in case.floating:
        differs = np.abs(wrong[name] - right[name]) > 1e-9 * (1.0 + np.abs(right[name]))
        touched |= {(name, tuple(int(i) for i in index)) for index in np.argwhere(differs)}
    return touched


def failed_entries(document: Document) -> set[Entry]:
    """(input, index) of every failed check, over all cotangents."""
    return {(c["wrt"], tuple(c["index"])) for c in document["checks"] if not c["passed"]}


def example_shapes(case: Case) -> dict[str, list[int]]:
    examples = load_fixture(case.stem).example_inputs()
    return {n: list(np.shape(examples[n])) for n in (*case.floating, *case.constants)}


# --- every fixture, correct and twin ------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_correct_fixture_passes_with_every_floating_input_checked(
    case: Case, report_validator: Any
) -> None:
    """The correct file checks as written: exit 0, every floating input checked at the shape
    example_inputs() gives it, every entry of it listed, none failed; labels are constants."""
    code, document = run_json("run", "--model", case.spec())
    report_validator.validate(document)
    assert code == 0, document["summary"]
    assert document["verdict"] == "passed"
    assert set(document["inputs"]) == {*case.floating, *case.constants}
    shapes = example_shapes(case)
    for name in case.floating:
        described = document["inputs"][name]
        assert described["checked"] is True, described
        assert described["dtype"] == "float64"
        assert described["shape"] == shapes[name]
        assert described["source"] == "example_inputs()"
    assert document["settings"]["wrt"] == list(case.floating)
    assert set(document["summary"]) == set(case.floating)
    for name, summary in document["summary"].items():
        assert summary["failed"] == 0, (name, summary)
        assert summary["entries"] == int(np.prod(shapes[name], dtype=np.int64))
    assert not failed_entries(document)
    assert {c["wrt"] for c in document["checks"]} == set(case.floating)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bug_twin_fails_on_exactly_the_entries_its_bug_touches(
    case: Case, report_validator: Any
) -> None:
    """The twin exits 1; its failed checks are exactly the entries where its gradient differs
    from the correct file's (computed here), and those all lie in the one input it breaks."""
    touched = touched_entries(case)
    assert touched, "the twin's gradient equals the correct one: no bug planted"
    assert {name for name, _ in touched} == {case.buggy}

    code, document = run_json("run", "--model", case.spec(bug=True))
    report_validator.validate(document)
    assert code == 1
    assert document["verdict"] == "failed"
    assert failed_entries(document) == touched
    for name, summary in document["summary"].items():
        if name == case.buggy:
            assert summary["failed"] == len(touched), summary
        else:
            assert summary["failed"] == 0, (name, summary)


@pytest.mark.parametrize("case", [c for c in CASES if c.constants], ids=lambda c: c.layer or c.stem)
@pytest.mark.parametrize("bug", [False, True], ids=["correct", "twin"])
def test_integer_labels_are_constants_never_perturbed(
    case: Case,
    bug: bool,
) -> None:
    """Integer labels appear in `inputs` as constants (checked false, why says so), keep their
    integer dtype, and appear in no check and no summary."""
    _, document = run_json("run", "--model", case.spec(bug=bug))
    shapes = example_shapes(case)
    for name in case.constants:
        described = document["inputs"][name]
        assert described["checked"] is False
        assert described["dtype"] == "int64"
        assert described["shape"] == shapes[name]
        assert "constant" in described["why"]
        assert name not in document["summary"]
        assert name not in document["settings"]["wrt"]
        assert all(c["wrt"] != name for c in document["checks"])


@pytest.mark.parametrize(("bug", "passed"), [(False, True), (True, False)])
def test_zero_d_input_is_checked_at_index_empty(
    bug: bool,
    passed: bool,
) -> None:
    """scale's alpha is a 0-D array: described with shape [], checked once per cotangent at
    index [], and its wrong gradient in the twin is caught."""
    _, document = run_json("run", "--model", BY_ID["scale"].spec(bug=bug))
    assert document["inputs"]["alpha"]["shape"] == []
    assert document["summary"]["alpha"]["entries"] == 1
    alpha = [c for c in document["checks"] if c["wrt"] == "alpha"]
    assert [c["index"] for c in alpha] == [[]] * document["settings"]["cotangents"]
    assert all(c["passed"] is passed for c in alpha)


def test_bias_gradient_bug_alone_is_caught() -> None:
    """affine's twin gets only db wrong (the batch mean instead of the sum): every entry of b
    fails, x and w pass, and the diagnosis names the factor 1/N (N = 4 rows)."""
    code, document = run_json("run", "--model", BY_ID["affine"].spec(bug=True))
    assert code == 1
    summary = document["summary"]
    assert (summary["x"]["failed"], summary["w"]["failed"], summary["b"]["failed"]) == (0, 0, 3)
    [diagnosis] = document["diagnosis"]
    assert diagnosis["wrt"] == "b"
    assert diagnosis["kind"] == "scale"
    assert diagnosis["parameters"]["simple_factor"] == "1/4"


def test_softmax_loss_missing_one_over_n_is_diagnosed_as_scale_n() -> None:
    """softmax_loss's twin forgets dx /= N with N = 4 rows: the diagnosis is kind "scale" with
    factor 4 over every entry of x, named as the batch size of x (issue 24: a factor is named
    against the model's own dimensions, no longer as "a missing 1/N with N = 4")."""
    n = load_fixture("layers").example_inputs()["x"].shape[0]
    _, document = run_json("run", "--model", BY_ID["softmax_loss"].spec(bug=True))
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
        "perturb", "--model", BY_ID[layer].spec(bug=bug), "--entry", entry
    )
    assert exit_code == code
    [perturbation] = document["perturbations"]
    assert (perturbation["wrt"], perturbation["index"]) == (wrt, index)
    assert perturbation["passed"] is not bug
