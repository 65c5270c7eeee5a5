"""The Python API: check_gradients and assert_gradients_close, as a pytest user would call them,
and their agreement with the CLI's JSON report for the same model and matrices."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck, load_module
from numpy.typing import NDArray

from gradcheck_cli import assert_gradients_close, check_gradients, check_layer
from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.render.output import to_json_text
from gradcheck_cli.report import RunReport

Matrix = NDArray[np.float64]
Seed = tuple[Matrix, Matrix]
ModelPath = Callable[[str], str]

MODEL_FILES = ["dense_tanh", "dense_tanh_bug", "dense_tanh_vector", "dense_tanh_vector_bug"]


def tanh_forward(X: Matrix, W: Matrix) -> float:
    return float(np.sum(np.tanh(X @ W)))


def tanh_backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
    d = 1.0 / np.cosh(X @ W) ** 2
    return d @ W.T, X.T @ d


ENTRY_ROW = re.compile(r"^(\w+\[[\d,]*\](?: v\d+)?) ")
"""A row of the worst-entries table in a failure message: `W[2,1] v2   -0.43  ...  FAIL ...`."""


def entry_rows(message: str) -> list[str]:
    """The rows of the entries table of an assertion message, stripped, in their order."""
    return [line.strip() for line in message.splitlines() if ENTRY_ROW.match(line.strip())]


def row_label(row: str) -> str:
    """`W[2,1] v2` for the row of that entry's check through cotangent 2."""
    match = ENTRY_ROW.match(row)
    assert match is not None
    return match[1]


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
    model_path: ModelPath,
    seed_arrays: Seed,
    report_validator: Any,
    stem: str,
) -> None:
    """The API's report document equals `gradcheck run --model FILE --format json` for the same
    model and matrices: the same checks, numbers, summary and verdict (sources apart)."""
    module = load_module(Path(model_path(stem)))
    X, W = seed_arrays
    report = check_gradients(
        module.forward, module.backward, X, W, name=module.name, formula=module.formula
    )
    api = json.loads(to_json_text(report.to_document()))
    result = gradcheck("run", "--model", model_path(stem), "--format", "json")
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
    module = load_module(Path(model_path("dense_tanh_bug")))
    X, W = seed_arrays
    report = check_gradients(module.forward, module.backward, X, W)
    worst = max(report.checks, key=lambda c: c.abs_error / c.tolerance)
    assert (worst.wrt, worst.index) == ("X", (0, 2))
    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(module.forward, module.backward, X, W)
    message = str(caught.value)
    assert message.splitlines()[0] == "gradients not shown right:"
    assert message.splitlines()[-1] == "FAILED: 15 of 15 entries disagree."
    rows = entry_rows(message)
    assert rows[0].startswith("X[0,2] ")
    assert rows[0].endswith("FAIL mismatch")


def test_vector_forward_is_checked_through_cotangents(
    model_path: ModelPath, seed_arrays: Seed
) -> None:
    """A forward returning an array is checked via backward(X, W, v) for each cotangent v."""
    module = load_module(Path(model_path("dense_tanh_vector")))
    X, W = seed_arrays
    report = assert_gradients_close(module.forward, module.backward, X, W, cotangents=3)
    assert {c.cotangent for c in report.checks} == {1, 2, 3}
    # 27 checks of X: its 9 entries through each of the 3 cotangents; the summary counts each
    # entry once, whatever the number of cotangents.
    assert len([c for c in report.checks if c.wrt == "X"]) == 27
    assert report.summary["X"].entries == 9


def test_vector_bug_blames_only_dw(model_path: ModelPath, seed_arrays: Seed) -> None:
    """The vector model whose dW is wrong fails naming dW entries only, never dX."""
    module = load_module(Path(model_path("dense_tanh_vector_bug")))
    X, W = seed_arrays
    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(module.forward, module.backward, X, W)
    failing = [row for row in entry_rows(str(caught.value)) if "FAIL" in row]
    assert failing
    assert all(row.startswith("W[") for row in failing)


def test_vector_bug_message_tells_cotangents_apart(
    model_path: ModelPath, seed_arrays: Seed
) -> None:
    """Each listed failure is identifiable: one entry failing for two cotangents is not printed
    as two identical labels (the CLI writes "W[2,1] v1" and "W[2,1] v2")."""
    module = load_module(Path(model_path("dense_tanh_vector_bug")))
    X, W = seed_arrays
    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(module.forward, module.backward, X, W)
    labels = [row_label(row) for row in entry_rows(str(caught.value))]
    assert labels
    assert len(labels) == len(set(labels)), labels


# --- bad input -----------------------------------------------------------------------------------


MATMUL = r"ValueError: matmul: Input operand 1 has a mismatch in its core dimension 0, .*"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda X, W: (X, W[:2]),
            rf"test_api\.py:\d+: forward raised {MATMUL}\(size 2 is different from 3\)",
        ),
        (
            lambda X, W: (X[:, :2], W),
            rf"test_api\.py:\d+: forward raised {MATMUL}\(size 3 is different from 2\)",
        ),
        (
            lambda X, W: (X[0], W),
            rf"test_api\.py:\d+: backward raised {MATMUL}\(size 2 is different from 3\)",
        ),
        (
            lambda X, W: (X, W[None]),
            rf"test_api\.py:\d+: backward raised {MATMUL}\(size 3 is different from 2\)",
        ),
        (lambda X, W: (np.zeros((0, 3)), W), r"input X is empty \(shape \(0, 3\)\)"),
        (lambda X, W: (np.where(X > 0.5, np.nan, X), W), r"input X holds NaN or Inf values"),
        (lambda X, W: (X, np.where(W > 5, np.inf, W)), r"input W holds NaN or Inf values"),
    ],
    ids=["W-rows", "X-columns", "1-D", "3-D", "empty", "nan", "inf"],
)
def test_bad_matrices_raise_input_error(
    seed_arrays: Seed, make: Callable[[Matrix, Matrix], tuple[Any, Any]], message: str
) -> None:
    """Matrices that cannot be checked raise InputError with a message saying why. Whether
    shapes fit is the model's business now (inputs may have any shape): a tanh(X @ W) whose
    matrices do not fit fails in the user's own forward or backward, named with its line."""
    X, W = make(*seed_arrays)
    with pytest.raises(InputError) as caught:
        check_gradients(tanh_forward, tanh_backward, X, W)
    assert re.fullmatch(message, str(caught.value)), str(caught.value)


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
        {"dtype": "float8"},
        {"dtype": "bfloat16"},
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


# --- the README's example ------------------------------------------------------------------------


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

    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(softplus_layer, wrong_backward, X, W)
    failing = [row for row in entry_rows(str(caught.value)) if "FAIL" in row]
    assert failing
    assert all(re.match(r"W\[\d,\d\] .*FAIL mismatch$", row) for row in failing), failing


# --- named inputs --------------------------------------------------------------------------------


def dense_forward(x: Matrix, w: Matrix, b: Matrix) -> Any:
    """f = sum(tanh(x @ w + b)), a numpy scalar: complex for complex input (complex-safe)."""
    return np.sum(np.tanh(x @ w + b))


def dense_backward(x: Matrix, w: Matrix, b: Matrix) -> tuple[Matrix, Matrix, Matrix]:
    d = 1.0 - np.tanh(x @ w + b) ** 2
    return d @ w.T, x.T @ d, np.sum(d, axis=0)


def db_bug_backward(x: Matrix, w: Matrix, b: Matrix) -> tuple[Matrix, Matrix, Matrix]:
    """dense_backward with db[1] 1% too large: exactly one entry of one input is wrong."""
    dx, dw, db = dense_backward(x, w, b)
    return dx, dw, db * np.array([1.0, 1.01])


@pytest.fixture
def xwb() -> dict[str, Matrix]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((4, 3)),
        "w": rng.standard_normal((3, 2)),
        "b": rng.standard_normal(2),
    }


def test_inputs_by_name_pass_with_closed_form_numbers(xwb: dict[str, Matrix]) -> None:
    """inputs={"x", "w", "b"}: every entry of each is checked against the closed form."""
    report = check_gradients(dense_forward, dense_backward, inputs=xwb)
    assert report.passed
    assert report.f == pytest.approx(float(dense_forward(**xwb)), rel=1e-15)
    assert {n: s.entries for n, s in report.summary.items()} == {"x": 12, "w": 6, "b": 2}
    exact = dict(zip(("x", "w", "b"), dense_backward(**xwb), strict=True))
    assert len(report.checks) == 20
    for check in report.checks:
        assert check.analytic == pytest.approx(exact[check.wrt][check.index], rel=1e-15)
        assert abs(check.numerical - exact[check.wrt][check.index]) <= 1e-8
    assert [(i.name, i.shape, i.checked) for i in report.inputs.values()] == [
        ("x", (4, 3), True),
        ("w", (3, 2), True),
        ("b", (2,), True),
    ]


def test_positional_pair_feeds_forwards_first_two_parameters(seed_arrays: Seed) -> None:
    """check_gradients(forward, backward, X, W) gives X and W to forward's first two
    parameters, whatever they are called; the report names them so."""
    X, W = seed_arrays

    def forward(inp: Matrix, kernel: Matrix) -> float:
        return tanh_forward(inp, kernel)

    def backward(inp: Matrix, kernel: Matrix) -> tuple[Matrix, Matrix]:
        return tanh_backward(inp, kernel)

    report = check_gradients(forward, backward, X, W)
    assert report.passed
    assert list(report.inputs) == ["inp", "kernel"]
    assert {n: s.entries for n, s in report.summary.items()} == {"inp": 9, "kernel": 6}
    reference = check_gradients(tanh_forward, tanh_backward, X, W)
    assert [c.analytic for c in report.checks] == [c.analytic for c in reference.checks]
    assert [c.numerical for c in report.checks] == [c.numerical for c in reference.checks]


def test_positional_pair_for_a_three_input_forward_names_the_missing_one(
    xwb: dict[str, Matrix],
) -> None:
    """X, W fill x and w; b, given by nobody, is an InputError naming it."""
    with pytest.raises(InputError, match=r"no value for 'b', a parameter of forward"):
        check_gradients(dense_forward, dense_backward, xwb["x"], xwb["w"])


def test_both_forms_at_once_are_refused(xwb: dict[str, Matrix]) -> None:
    """X, W and inputs={...} together are ambiguous: an InputError."""
    with pytest.raises(
        InputError, match=r"^give the inputs either as X, W or as inputs=\{\.\.\.\}, not both$"
    ):
        check_gradients(dense_forward, dense_backward, xwb["x"], xwb["w"], inputs=xwb)


def test_wrt_one_input_checks_only_it(xwb: dict[str, Matrix]) -> None:
    """wrt="b" checks the two entries of b; x and w are reported as not checked."""
    report = check_gradients(dense_forward, dense_backward, inputs=xwb, wrt="b")
    assert report.passed
    assert [(c.wrt, c.index) for c in report.checks] == [("b", (0,)), ("b", (1,))]
    assert set(report.summary) == {"b"}
    assert [info.checked for info in report.inputs.values()] == [False, False, True]


def test_random_entries_per_input(xwb: dict[str, Matrix]) -> None:
    """entries="random:3": 3 distinct entries of each checked input (all 2 of b), the same
    ones for the same seed."""
    report = check_gradients(dense_forward, dense_backward, inputs=xwb, entries="random:3")
    assert report.passed
    picked = [(c.wrt, c.index) for c in report.checks]
    assert len(set(picked)) == len(picked)
    assert {n: s.entries for n, s in report.summary.items()} == {"x": 3, "w": 3, "b": 2}
    assert [(c.wrt, c.index) for c in report.checks if c.wrt == "b"] == [("b", (0,)), ("b", (1,))]
    again = check_gradients(dense_forward, dense_backward, inputs=xwb, entries="random:3")
    assert [(c.wrt, c.index) for c in again.checks] == picked
    assert report.settings.entries == "random:3"


def test_entries_by_input_name(xwb: dict[str, Matrix]) -> None:
    """entries={"w": [(0, 1)]} checks that one entry of w and nothing else."""
    report = check_gradients(dense_forward, dense_backward, inputs=xwb, entries={"w": [(0, 1)]})
    assert report.passed
    assert [(c.wrt, c.index) for c in report.checks] == [("w", (0, 1))]
    assert set(report.summary) == {"w"}


def test_a_zero_d_input_and_integer_labels(xwb: dict[str, Matrix]) -> None:
    """A 0-D scale is checked as the entry scale[]; integer labels y are a constant that every
    forward call sees unchanged."""
    seen: list[NDArray[np.int64]] = []
    y = np.array([0, 1, 1, 0])

    def forward(x: Matrix, scale: Matrix, y: NDArray[np.int64]) -> float:
        seen.append(y.copy())
        return float(scale * np.sum(np.tanh(x[np.arange(4), y])))

    def backward(x: Matrix, scale: Matrix, y: NDArray[np.int64]) -> dict[str, Any]:
        t = np.tanh(x[np.arange(4), y])
        dx = np.zeros_like(x)
        dx[np.arange(4), y] = scale * (1.0 - t**2)
        return {"x": dx, "scale": np.sum(t)}

    report = check_gradients(forward, backward, inputs={"x": xwb["x"], "scale": 1.5, "y": y})
    assert report.passed
    assert [c.index for c in report.checks if c.wrt == "scale"] == [()]
    assert report.inputs["scale"].shape == ()
    assert (report.inputs["y"].checked, report.inputs["y"].why) == (
        False,
        "constant: an integer array",
    )
    assert len(seen) > 20
    for labels in seen:
        np.testing.assert_array_equal(labels, y)
    only = check_gradients(
        forward, backward, inputs={"x": xwb["x"], "scale": 1.5, "y": y}, entries={"scale": [()]}
    )
    assert [(c.wrt, c.index) for c in only.checks] == [("scale", ())]


def test_fast_mode_passes_and_finds_a_single_wrong_bias_entry(xwb: dict[str, Matrix]) -> None:
    """mode="fast": random directions over x, w and b pass for the right gradient; with db[1]
    1% off, the bisection fails b[1] and nothing else."""
    report = check_gradients(dense_forward, dense_backward, inputs=xwb, mode="fast")
    assert report.passed
    assert report.fast is not None
    assert report.settings.mode == "fast"
    buggy = check_gradients(dense_forward, db_bug_backward, inputs=xwb, mode="fast")
    assert not buggy.passed
    assert [(c.wrt, c.index) for c in buggy.checks if not c.passed] == [("b", (1,))]
    assert {n: s.failed for n, s in buggy.summary.items()} == {"x": 0, "w": 0, "b": 1}


def test_complex_step_needs_complex_safe(xwb: dict[str, Matrix]) -> None:
    """method="complex-step" is refused for a function not declared complex-safe, and with
    complex_safe=True it is exact to round-off."""
    with pytest.raises(InputError, match=r"^method complex-step needs a model that is complex-"):
        check_gradients(dense_forward, dense_backward, inputs=xwb, method="complex-step")
    report = check_gradients(
        dense_forward, dense_backward, inputs=xwb, method="complex-step", complex_safe=True
    )
    assert report.passed
    assert report.settings.method == "complex-step"
    assert len(report.checks) == 20
    for check in report.checks:
        assert check.abs_error <= 1e-14 * max(1.0, abs(check.analytic))


def test_any_callable_is_a_forward(xwb: dict[str, Matrix]) -> None:
    """A functools.partial (a parameter bound) and a callable object are accepted."""
    scaled = functools.partial(_scaled_forward, scale=2.0)
    scaled_backward = functools.partial(_scaled_backward, scale=2.0)
    report = check_gradients(scaled, scaled_backward, inputs=xwb)
    assert report.passed
    assert report.f == pytest.approx(2.0 * float(dense_forward(**xwb)), rel=1e-15)
    assert list(report.summary) == ["x", "w", "b"]

    class Dense:
        def __call__(self, x: Matrix, w: Matrix, b: Matrix) -> Any:
            return dense_forward(x, w, b)

    obj = check_gradients(Dense(), dense_backward, inputs=xwb)
    assert obj.passed
    assert obj.model.name == "Dense"
    assert obj.f == pytest.approx(float(dense_forward(**xwb)), rel=1e-15)


def _scaled_forward(x: Matrix, w: Matrix, b: Matrix, scale: float = 1.0) -> float:
    return scale * float(dense_forward(x, w, b))


def _scaled_backward(
    x: Matrix, w: Matrix, b: Matrix, scale: float = 1.0
) -> tuple[Matrix, Matrix, Matrix]:
    dx, dw, db = dense_backward(x, w, b)
    return scale * dx, scale * dw, scale * db


def test_a_nan_at_a_shifted_point_is_a_verdict_not_an_error() -> None:
    """sqrt(x) at x[0] = 1e-12: the step crosses zero, f is NaN there. Even with warnings as
    errors (as this suite runs), that entry's verdict is non-finite and the others are ok."""

    def forward(x: Matrix, w: Matrix) -> float:
        return float(np.sum(np.sqrt(x) * w))

    def backward(x: Matrix, w: Matrix) -> tuple[Matrix, Matrix]:
        return 0.5 / np.sqrt(x) * w, np.sqrt(x)

    x, w = np.array([1e-12, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    report = check_gradients(forward, backward, inputs={"x": x, "w": w})
    reasons = {(c.wrt, c.index): c.reason for c in report.checks}
    assert reasons == {
        ("x", (0,)): "non-finite",
        ("x", (1,)): "ok",
        ("x", (2,)): "ok",
        ("w", (0,)): "ok",
        ("w", (1,)): "ok",
        ("w", (2,)): "ok",
    }


# --- layers --------------------------------------------------------------------------------------


def affine_forward(x: Matrix, w: Matrix, b: Matrix) -> tuple[Matrix, tuple[Matrix, ...]]:
    return x @ w + b, (x, w, b)


def affine_backward(dout: Matrix, cache: tuple[Matrix, ...]) -> tuple[Matrix, Matrix, Matrix]:
    x, w, _ = cache
    return dout @ w.T, x.T @ dout, np.sum(dout, axis=0)


def affine_db_bug_backward(
    dout: Matrix, cache: tuple[Matrix, ...]
) -> tuple[Matrix, Matrix, Matrix]:
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, 0.99 * db


def test_check_layer_passes_a_correct_layer(xwb: dict[str, Matrix]) -> None:
    """check_layer(affine_forward, affine_backward, inputs): the VJP for seeded random dout
    passes for every entry of x, w and b."""
    report = check_layer(affine_forward, affine_backward, xwb)
    assert report.passed
    assert report.model.name == "affine"
    assert report.output_shape == (4, 2)
    assert {n: s.entries for n, s in report.summary.items()} == {"x": 12, "w": 6, "b": 2}
    assert {c.cotangent for c in report.checks} == {1, 2}


def test_check_layer_fails_only_in_db(xwb: dict[str, Matrix]) -> None:
    """A layer whose db is 0.99x right fails in both entries of b and nowhere else."""
    report = check_layer(affine_forward, affine_db_bug_backward, xwb)
    assert not report.passed
    assert {n: (s.entries, s.failed) for n, s in report.summary.items()} == {
        "x": (12, 0),
        "w": (6, 0),
        "b": (2, 2),
    }
    assert {c.wrt for c in report.checks if not c.passed} == {"b"}


# --- assert_gradients_close ----------------------------------------------------------------------


def test_assertion_message_is_the_table(xwb: dict[str, Matrix]) -> None:
    """The AssertionError's message is the report's table: b[1] fails with "FAIL mismatch",
    the other listed entries are ok, and the verdict line counts the one failure."""
    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(dense_forward, db_bug_backward, inputs=xwb)
    message = str(caught.value)
    assert message.splitlines()[0] == "gradients not shown right:"
    rows = {row_label(row): row for row in entry_rows(message)}
    assert rows["b[1]"].endswith("FAIL mismatch")
    assert [label for label, row in rows.items() if "FAIL" in row] == ["b[1]"]
    assert all(row.endswith(" ok") for label, row in rows.items() if label != "b[1]")
    assert message.splitlines()[-1] == "FAILED: 1 of 20 entries disagrees."


def test_pytest_hides_the_assertion_helpers_frames(xwb: dict[str, Matrix]) -> None:
    """assert_gradients_close sets __tracebackhide__: pytest's traceback ends at the caller's
    line, not inside gradcheck."""
    with pytest.raises(AssertionError) as caught:
        assert_gradients_close(dense_forward, db_bug_backward, inputs=xwb)
    raw = [entry.name for entry in caught.traceback]
    assert "assert_gradients_close" in raw
    (inside,) = [e for e in caught.traceback if e.name == "assert_gradients_close"]
    assert inside.frame.f_locals.get("__tracebackhide__") is True
    shown = [entry.name for entry in caught.traceback.filter(caught)]
    assert "assert_gradients_close" not in shown
    assert shown[-1] == "test_pytest_hides_the_assertion_helpers_frames"


# --- precision -----------------------------------------------------------------------------------


def test_float32_check_of_a_forward_returning_a_numpy_scalar() -> None:
    """dtype="float32" with a forward returning np.sum(...) (a float32 scalar, not a Python
    float) checks like the float() version: the same verdict, passed at these inputs."""
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))

    def forward(X: Matrix, W: Matrix) -> Any:
        return np.sum(np.tanh(X @ W))

    as_float = check_gradients(tanh_forward, tanh_backward, X, W, dtype="float32")
    assert as_float.passed
    report = check_gradients(forward, tanh_backward, X, W, dtype="float32")
    assert report.passed
    assert report.settings.dtype == "float32"


def test_a_float32_forward_is_reported_with_its_precision(seed_arrays: Seed) -> None:
    """A forward that computes in float32 on float64 inputs passes (its steps and tolerances
    follow float32's eps, which the settings report); a float64 forward reports none."""
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))

    def forward(X: Matrix, W: Matrix) -> float:
        return float(np.sum(np.tanh(X.astype(np.float32) @ W.astype(np.float32))))

    report = check_gradients(forward, tanh_backward, X, W)
    assert report.passed
    assert report.settings.forward_eps == float(np.finfo(np.float32).eps)
    X, W = seed_arrays
    assert check_gradients(tanh_forward, tanh_backward, X, W).settings.forward_eps is None


def test_a_small_gradient_bug_at_integer_inputs_fails() -> None:
    """f = sum(x * w) in float64 at small integer inputs, dx 0.1% too large: every entry of x
    fails (the error, 1e-3, is far above what a float64 difference can explain)."""

    def forward(x: Matrix, w: Matrix) -> float:
        return float(np.sum(x * w))

    def backward(x: Matrix, w: Matrix) -> tuple[Matrix, Matrix]:
        return 1.001 * w, x.copy()

    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    w = np.array([[1.0, 1.0], [1.0, 1.0]])
    report = check_gradients(forward, backward, inputs={"x": x, "w": w})
    assert not report.passed
    assert {n: s.failed for n, s in report.summary.items()} == {"x": 4, "w": 0}


# --- the report as a test reads it -----------------------------------------------------------


def test_str_is_the_table_and_repr_one_line(xwb: dict[str, Matrix]) -> None:
    """str(report) is the terminal table without colour, ending in the verdict line; repr is one
    short line naming the verdict (so that a failing `assert report.passed` prints one line,
    not a dataclass of 23,000 characters)."""
    report = check_layer(affine_forward, affine_db_bug_backward, xwb)
    text = str(report)
    assert text.startswith("model  affine: f(x, w, b)")
    assert "\x1b[" not in text
    assert text.splitlines()[-1] == "FAILED: 2 of 20 entries disagree."
    line = repr(report)
    assert "\n" not in line
    assert (
        line
        == "<GradientReport 'affine' failed: 2 failed, 0 inconclusive of 20 entries of x, w, b>"
    )
    with pytest.raises(AssertionError) as caught:
        assert report.passed
    assert len(str(caught.value)) < 300


def test_assert_layer_gradients_passes_and_fails_with_the_table(xwb: dict[str, Matrix]) -> None:
    """assert_layer_gradients and check_layer(...).assert_ok(): the report for a correct layer,
    an AssertionError whose message is the table for a wrong one."""
    from gradcheck_cli import assert_layer_gradients

    assert assert_layer_gradients(affine_forward, affine_backward, xwb).passed
    assert check_layer(affine_forward, affine_backward, xwb).assert_ok().passed

    def helper() -> object:
        return assert_layer_gradients(affine_forward, affine_db_bug_backward, xwb)

    def method() -> object:
        return check_layer(affine_forward, affine_db_bug_backward, xwb).assert_ok()

    for call in (helper, method):
        with pytest.raises(AssertionError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith("gradients not shown right:\nmodel  affine")
        assert "diagnosis (scale)" in message
        assert message.splitlines()[-1] == "FAILED: 2 of 20 entries disagree."


def test_an_api_error_has_a_short_chain(seed_arrays: Seed) -> None:
    """Bad input raises InputError from the public function itself: no cause, no context shown,
    no internal frame in its traceback, and pytest shows only the test's line."""
    X, W = seed_arrays
    with pytest.raises(InputError) as caught:
        check_gradients(tanh_forward, tanh_backward, X, W, method="nonsense")
    error = caught.value
    assert error.__cause__ is None
    assert error.__suppress_context__
    names = [entry.name for entry in caught.traceback]
    assert names == ["test_an_api_error_has_a_short_chain", "public"]
    assert [entry.name for entry in caught.traceback.filter(caught)] == [
        "test_an_api_error_has_a_short_chain"
    ]
    with pytest.raises(InputError) as layered:
        check_layer(affine_forward, affine_backward, {"x": np.zeros((0, 3))})
    assert len(layered.traceback) == 2


def test_every_public_function_hides_its_frames() -> None:
    """Every public function and method of api.py starts with __tracebackhide__ = True."""
    import ast

    from gradcheck_cli import api

    tree = ast.parse(Path(api.__file__).read_text(encoding="utf-8"))
    top = [*tree.body, *(n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body)]
    public = [
        node
        for node in top
        if isinstance(node, ast.FunctionDef)
        and (not node.name.startswith("_") or node.name == "__str__")
    ]
    assert {"check_gradients", "check_layer", "assert_layer_gradients", "assert_ok"} <= {
        node.name for node in public
    }
    for node in public:
        body = [
            n
            for n in node.body
            if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
        ]
        first = body[0]
        assert isinstance(first, ast.Assign), node.name
        target = first.targets[0]
        assert isinstance(target, ast.Name), node.name
        assert target.id == "__tracebackhide__", node.name
