"""The Python API: check_gradients and assert_gradients_close, as a pytest user would call them,
and their agreement with the CLI's JSON report for the same model and matrices."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from numpy.typing import NDArray

from gradcheck_cli import assert_gradients_close, check_gradients
from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.output import to_json_text
from gradcheck_cli.report import RunReport

Invoke = Callable[..., Result]
Matrix = NDArray[np.float64]
Seed = tuple[Matrix, Matrix]
ModelPath = Callable[[str], str]

MODEL_FILES = ["dense_tanh", "dense_tanh_bug", "dense_tanh_vector", "dense_tanh_vector_bug"]


def load_model(path: str) -> ModuleType:
    """Import a fixtures/models file as a user's own module would be imported."""
    spec = importlib.util.spec_from_file_location(f"fixture_{Path(path).stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tanh_forward(X: Matrix, W: Matrix) -> float:
    return float(np.sum(np.tanh(X @ W)))


def tanh_backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
    d = 1.0 / np.cosh(X @ W) ** 2
    return d @ W.T, X.T @ d


def comparable(doc: dict[str, Any], keep_settings: set[str]) -> dict[str, Any]:
    """The document without what differs by design between the API and the CLI: where the
    model and the matrices came from, and command-specific settings."""
    copy = json.loads(json.dumps(doc))
    del copy["model"]["source"]
    for info in copy["inputs"].values():
        del info["source"]
    copy["settings"] = {k: v for k, v in copy["settings"].items() if k in keep_settings}
    return dict(copy)


# --- what passes ---------------------------------------------------------------------------------


def test_correct_pair_passes_with_closed_form_numbers(seed_arrays: Seed) -> None:
    """check_gradients on a correct tanh pair returns a passing RunReport with its numbers."""
    X, W = seed_arrays
    report = check_gradients(tanh_forward, tanh_backward, X, W)
    assert isinstance(report, RunReport)
    assert report.passed
    assert report.f == pytest.approx(float(np.sum(np.tanh(X @ W))), rel=1e-15)
    dX, dW = tanh_backward(X, W)
    assert len(report.checks) == 15
    for check in report.checks:
        exact = (dX if check.wrt == "X" else dW)[check.index]
        assert check.analytic == pytest.approx(exact, rel=1e-15)
        assert abs(check.numerical - exact) <= 1e-8
        assert check.passed
    assert report.to_document()["model"]["source"] == "api"


def test_assert_gradients_close_returns_the_report(seed_arrays: Seed) -> None:
    """assert_gradients_close returns the same passing report as check_gradients."""
    X, W = seed_arrays
    report = assert_gradients_close(tanh_forward, tanh_backward, X, W)
    assert report.passed
    assert report.checks == check_gradients(tanh_forward, tanh_backward, X, W).checks


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_report_equals_the_cli_json(
    invoke: Invoke,
    model_path: ModelPath,
    seed_arrays: Seed,
    report_validator: Any,
    stem: str,
) -> None:
    """The API's report document equals `gradcheck run --model FILE --format json` for the same
    model and matrices: the same checks, numbers, summary and verdict (sources apart)."""
    module = load_model(model_path(stem))
    X, W = seed_arrays
    report = check_gradients(
        module.forward, module.backward, X, W, name=module.name, formula=module.formula
    )
    api = json.loads(to_json_text(report.to_document()))
    result = invoke("run", "--model", model_path(stem), "--format", "json")
    cli = json.loads(result.stdout)
    assert result.exit_code == (0 if report.passed else 1)
    shared = set(api["settings"]) & set(cli["settings"])
    assert {"method", "delta", "rtol", "atol", "tolerance", "safety", "dtype", "wrt"} <= shared
    assert comparable(api, shared) == comparable(cli, shared)
    assert api["checks"] == cli["checks"]  # spelled out: the numbers are the point
    assert list(report_validator.iter_errors(api)) == []


def test_settings_reach_the_check(seed_arrays: Seed) -> None:
    """wrt, method and entries mean what the CLI options do."""
    X, W = seed_arrays
    report = check_gradients(
        tanh_forward,
        tanh_backward,
        X,
        W,
        wrt="X",
        method="five-point",
        entries={"X": [(0, 0), (2, 1)]},
    )
    assert [(c.wrt, c.index) for c in report.checks] == [("X", (0, 0)), ("X", (2, 1))]
    assert set(report.summary) == {"X"}
    assert report.settings.method == "five-point"


def test_float32_and_list_inputs(seed_arrays: Seed) -> None:
    """Plain nested lists are accepted; dtype="float32" runs the check in float32 and passes."""
    X, W = seed_arrays
    report = check_gradients(tanh_forward, tanh_backward, X.tolist(), W.tolist(), dtype="float32")
    assert report.passed
    assert {info.dtype for info in report.inputs.values()} == {"float32"}


# --- what fails ----------------------------------------------------------------------------------


def test_planted_bug_names_the_worst_entry(model_path: ModelPath, seed_arrays: Seed) -> None:
    """assert_gradients_close on dense_tanh_bug raises, naming dX[0, 2] (the worst) first."""
    module = load_model(model_path("dense_tanh_bug"))
    X, W = seed_arrays
    report = check_gradients(module.forward, module.backward, X, W)
    worst = max(report.checks, key=lambda c: c.abs_error / c.tolerance)
    assert (worst.wrt, worst.index) == ("X", (0, 2))
    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(module.forward, module.backward, X, W)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("15 gradient entries disagree")
    assert lines[1].lstrip().startswith("dX[0, 2]:")
    assert "mismatch" in lines[1]


def test_vector_forward_is_checked_through_cotangents(
    model_path: ModelPath, seed_arrays: Seed
) -> None:
    """A forward returning an array is checked via backward(X, W, v) for each cotangent v."""
    module = load_model(model_path("dense_tanh_vector"))
    X, W = seed_arrays
    report = assert_gradients_close(module.forward, module.backward, X, W, cotangents=3)
    assert {c.cotangent for c in report.checks} == {1, 2, 3}
    assert report.summary["X"].entries == 27


def test_vector_bug_blames_only_dw(model_path: ModelPath, seed_arrays: Seed) -> None:
    """The vector model whose dW is wrong fails naming dW entries only, never dX."""
    module = load_model(model_path("dense_tanh_vector_bug"))
    X, W = seed_arrays
    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(module.forward, module.backward, X, W)
    listed = str(caught.value).splitlines()[1:]
    assert listed
    assert all(line.lstrip().startswith("dW[") for line in listed)


def test_vector_bug_message_tells_cotangents_apart(
    model_path: ModelPath, seed_arrays: Seed
) -> None:
    """Each listed failure is identifiable: one entry failing for two cotangents is not printed
    as two identical labels (the CLI writes "W[2,1] v1" and "W[2,1] v2")."""
    module = load_model(model_path("dense_tanh_vector_bug"))
    X, W = seed_arrays
    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(module.forward, module.backward, X, W)
    labels = [line.split(":")[0].strip() for line in str(caught.value).splitlines()[1:]]
    assert len(labels) == len(set(labels)), labels


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda X, W: (X, W[:2]), "do not fit"),
        (lambda X, W: (X[:, :2], W), "do not fit"),
        (lambda X, W: (X[0], W), "2-D"),
        (lambda X, W: (X, W[None]), "2-D"),
        (lambda X, W: (np.zeros((0, 3)), W), "non-empty"),
        (lambda X, W: (np.where(X > 0.5, np.nan, X), W), "NaN"),
        (lambda X, W: (X, np.where(W > 5, np.inf, W)), "Inf"),
    ],
    ids=["W-rows", "X-columns", "1-D", "3-D", "empty", "nan", "inf"],
)
def test_bad_matrices_raise_input_error(
    seed_arrays: Seed, make: Callable[[Matrix, Matrix], tuple[Any, Any]], phrase: str
) -> None:
    """Matrices that cannot be checked raise InputError with a message saying why."""
    X, W = make(*seed_arrays)
    with pytest.raises(InputError, match=phrase):
        check_gradients(tanh_forward, tanh_backward, X, W)


def test_bad_backward_shape_raises_user_code_error(seed_arrays: Seed) -> None:
    """A backward returning dW of the wrong shape raises UserCodeError (an InputError) naming dW."""
    X, W = seed_arrays

    def backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
        return tanh_backward(X, W)[0], W[:2]

    with pytest.raises(UserCodeError, match=r"dW of shape \(2, 2\)"):
        check_gradients(tanh_forward, backward, X, W)


@pytest.mark.parametrize(
    "settings",
    [
        {"method": "secant"},
        {"delta": -1.0},
        {"rtol": -1.0},
        {"entries": {"X": [(5, 5)]}},
        {"entries": {"X": [(-1, 0)]}},
        {"entries": {"Z": [(0, 0)]}},
        {"wrt": "Z"},
        {"details": "everything"},
        {"dtype": "float16"},
        {"cotangents": 0},
    ],
    ids=lambda settings: repr(settings),
)
def test_bad_settings_raise_input_error(seed_arrays: Seed, settings: dict[str, Any]) -> None:
    """Settings the CLI would refuse raise InputError from the API (never another exception,
    never silently ignored), as check_gradients' docstring promises for bad input."""
    X, W = seed_arrays
    with pytest.raises(InputError):
        check_gradients(tanh_forward, tanh_backward, X, W, **settings)


# --- the README's example -------------------------------------------------------------------------


def softplus_layer(X: Matrix, W: Matrix) -> float:
    """A user's layer: f = sum(softplus(X @ W))."""
    return float(np.sum(np.logaddexp(0.0, X @ W)))


def softplus_layer_backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
    s = 1.0 / (1.0 + np.exp(-(X @ W)))
    return s @ W.T, X.T @ s


def test_my_layer_gradient() -> None:
    """The README's pytest example: a user's own layer, random seeded matrices, one call."""
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    report = assert_gradients_close(softplus_layer, softplus_layer_backward, X, W)
    assert sum(s.entries for s in report.summary.values()) == 5 * 4 + 4 * 3


def test_my_layer_gradient_catches_a_dropped_term() -> None:
    """The same example with dW missing a factor fails, so the example can catch a bug."""
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))

    def wrong_backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
        dX, dW = softplus_layer_backward(X, W)
        return dX, 0.5 * dW

    with pytest.raises(AssertionError, match=r"dW\["):
        assert_gradients_close(softplus_layer, wrong_backward, X, W)
