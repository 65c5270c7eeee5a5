"""Second-order and forward-mode checks: hand-written Hessian-vector products (`--order 2`,
check_hvp) and Jacobian-vector products (`--mode jvp`, check_jvp) against central differences
along seeded random tangents; correct ones pass, each planted one-line bug fails exactly the
entries it touches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck, gradcheck_json, load_module
from numpy.typing import NDArray

from gradcheck_cli.api import check_hvp, check_jvp
from gradcheck_cli.checks.tangents import random_tangents
from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.directional import directional_estimates
from gradcheck_cli.numerics.schemes import SCHEMES, default_steps
from gradcheck_cli.report import RunReport

Matrix = NDArray[np.float64]
Seed = tuple[Matrix, Matrix]
ModelPath = Callable[[str], str]
Entry = tuple[str, tuple[int, ...], int | None]
"""(part name, index, tangent number): one row of a tangent check."""

EPS = float(np.finfo(np.float64).eps)
FIRST_ORDER_PASSED = {"verdict": "passed", "entries": 15, "failed": 0, "inconclusive": 0}
"""`gradient_check` after the seed's 15 gradient entries of sigmoid-sum all passed."""


def failed_in_document(doc: Mapping[str, Any]) -> set[Entry]:
    assert doc["omitted"] == 0
    return {(c["wrt"], tuple(c["index"]), c["tangent"]) for c in doc["checks"] if not c["passed"]}


def failed_in_report(report: RunReport) -> set[Entry]:
    assert report.omitted == 0
    return {(c.wrt, c.index, c.tangent) for c in report.checks if not c.passed}


def every(name: str, shape: tuple[int, ...], tangents: int = 2) -> set[Entry]:
    """Every entry of a part of that shape, through each tangent."""
    return {(name, index, t) for index in np.ndindex(shape) for t in range(1, tangents + 1)}


def deviations(
    correct: Callable[..., Any],
    buggy: Callable[..., Any],
    inputs: Mapping[str, Matrix],
    parts: list[str],
    tangents: int = 2,
) -> dict[Entry, float]:
    """|buggy - correct| per entry along the check's own tangents (seed 0, every input moved)."""
    found: dict[Entry, float] = {}
    for number, tangent in enumerate(random_tangents(inputs, list(inputs), tangents, 0), start=1):
        right, wrong = correct(**inputs, tangents=tangent), buggy(**inputs, tangents=tangent)
        right = right if isinstance(right, tuple) else (right,)
        wrong = wrong if isinstance(wrong, tuple) else (wrong,)
        for name, a, b in zip(parts, right, wrong, strict=True):
            gap = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
            for index in np.ndindex(gap.shape):
                found[(name, index, number)] = float(gap[index])
    return found


def touched(
    correct: Callable[..., Any],
    buggy: Callable[..., Any],
    inputs: Mapping[str, Matrix],
    parts: list[str],
    tangents: int = 2,
) -> set[Entry]:
    """The entries a bug changes (by more than 1e-6): what a check must name, no more, no less."""
    gaps = deviations(correct, buggy, inputs, parts, tangents)
    return {entry for entry, gap in gaps.items() if gap > 1e-6}


# --- sigmoid-sum, the built-in model, as a user would write it in numpy ---------------------------


def sigmoid(z: Matrix) -> Matrix:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def sigmoid_forward(X: Matrix, W: Matrix) -> float:
    return float(np.sum(sigmoid(X @ W)))


def sigmoid_backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
    s = sigmoid(X @ W)
    D = s * (1 - s)
    return D @ W.T, X.T @ D


def sigmoid_hvp(X: Matrix, W: Matrix, tangents: Mapping[str, Matrix]) -> tuple[Matrix, Matrix]:
    """H v in closed form: with D = s'(XW), the gradient (D W^T, X^T D) moves by
    ((s'' dG) W^T + D vW^T, X^T (s'' dG) + vX^T D), dG = vX W + X vW, s'' = s'(1 - 2s)."""
    vX, vW = tangents["X"], tangents["W"]
    s = sigmoid(X @ W)
    D = s * (1 - s)
    moved = D * (1 - 2 * s) * (vX @ W + X @ vW)
    return moved @ W.T + D @ vW.T, X.T @ moved + vX.T @ D


def sigmoid_hvp_missing_term(
    X: Matrix, W: Matrix, tangents: Mapping[str, Matrix]
) -> tuple[Matrix, Matrix]:
    vX, vW = tangents["X"], tangents["W"]
    s = sigmoid(X @ W)
    D = s * (1 - s)
    moved = D * (1 - 2 * s) * (vX @ W + X @ vW)
    return moved @ W.T, X.T @ moved + vX.T @ D  # bug: D vW^T left out


def sigmoid_hvp_transposed(
    X: Matrix, W: Matrix, tangents: Mapping[str, Matrix]
) -> tuple[Matrix, Matrix]:
    vX, vW = tangents["X"], tangents["W"]
    s = sigmoid(X @ W)
    D = s * (1 - s)
    moved = D * (1 - 2 * s) * (vX @ W + X @ vW)
    return moved @ W.T + D @ vW.T, X @ moved + vX.T @ D  # bug: X where X^T belongs


def sigmoid_hvp_factor(
    X: Matrix, W: Matrix, tangents: Mapping[str, Matrix]
) -> tuple[Matrix, Matrix]:
    vX, vW = tangents["X"], tangents["W"]
    s = sigmoid(X @ W)
    D = s * (1 - s)
    moved = D * (1 - s) * (vX @ W + X @ vW)  # bug: s'' = s'(1 - s), not s'(1 - 2s)
    return moved @ W.T + D @ vW.T, X.T @ moved + vX.T @ D


def sigmoid_jvp(X: Matrix, W: Matrix, tangents: Mapping[str, Matrix]) -> float:
    dX, dW = sigmoid_backward(X, W)
    return float(np.sum(dX * tangents["X"]) + np.sum(dW * tangents["W"]))


# --- the numerics ------------------------------------------------------------------------------


def test_directional_estimates_of_a_linear_g_are_exact() -> None:
    """The gradient of a quadratic is linear: its central difference along v is M v up to
    round-off, and the truncation estimate is at round-off level."""
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 5))  # not symmetric: g need not be a gradient here
    c = rng.standard_normal(5)
    x = rng.standard_normal(5)
    v = rng.standard_normal(5)

    def g(at: Mapping[str, Matrix]) -> dict[str, Matrix]:
        return {"g": M @ at["x"] + c}

    estimates, step = directional_estimates(g, {"x": x}, {"x": v}, ["g"], eps=EPS)
    found = estimates["g"]
    assert np.max(np.abs(found.numerical - M @ v)) <= 1e-9
    assert np.max(found.truncation) <= 1e-8
    assert np.all(found.steps == step)


def test_no_entry_moves_further_than_its_own_step() -> None:
    """The tangent's step is the shortest of the entries' textbook steps over |v|: an input of
    entries near 1000 does not stretch the step of one near 0.001 (sin(1000 w) would turn
    through radians), whose steps over |v| decide it."""
    x = np.array([1000.0, -2000.0, 500.0])
    w = np.array([1e-3, -2e-3, 3e-4])
    tangent = {"x": np.array([0.5, 1.0, -0.25]), "w": np.array([0.75, -1.5, 0.5])}

    def g(at: Mapping[str, Matrix]) -> dict[str, Matrix]:
        return {"x": 2 * at["x"], "w": 1e3 * np.cos(1e3 * at["w"])}

    estimates, step = directional_estimates(g, {"x": x, "w": w}, tangent, ["x", "w"], eps=EPS)
    scale = 4000.0  # max |g|: g's own size sets the textbook step's round-off
    own = {
        "x": default_steps(SCHEMES["central"], np.abs(x), EPS, scale),
        "w": default_steps(SCHEMES["central"], np.abs(w), EPS, scale),
    }
    assert step == float(own["w"][1]) / 1.5
    assert all(np.all(np.abs(step * tangent[n]) <= own[n]) for n in own)
    exact = -1e6 * np.sin(1e3 * w) * tangent["w"]
    # Within 1e-3 of H v, an error its estimate knows to 1% (under a step set by x's entries
    # alone, it was off by a factor of 100).
    assert np.allclose(estimates["w"].numerical, exact, rtol=1e-3)
    assert np.allclose(estimates["w"].error, np.abs(estimates["w"].numerical - exact), rtol=1e-2)
    assert np.allclose(estimates["x"].numerical, 2 * tangent["x"], rtol=1e-9)


def test_directional_estimates_of_a_cubic_know_their_truncation() -> None:
    """For g(x) = x^3 the central difference along v is 3 x^2 v + h^2 v^3: exactly so at x = 0
    (every point a power of two), to within its round-off estimate elsewhere; the Richardson
    estimate of the truncation is h^2 |v|^3 to the same accuracy."""
    x = np.array([0.5, -1.25, 2.0, 0.0, 0.0])
    v = np.array([1.0, -0.5, 0.25, 2.0, -0.5])

    def g(at: Mapping[str, Matrix]) -> dict[str, Matrix]:
        return {"g": at["x"] ** 3}

    estimates, h = directional_estimates(g, {"x": x}, {"x": v}, ["g"], eps=EPS)
    found = estimates["g"]
    truncation = h**2 * v**3
    # x = 0 asks for (eps |g|)^(1/3) = (8 eps)^(1/3) = 1.2e-5, rounded down to 2^-17, and has
    # |v| = 2: the shortest step over |v| of any entry.
    assert h == 2.0**-18
    assert np.all(np.abs(found.numerical - 3 * x**2 * v - truncation) <= found.roundoff)
    assert np.all(np.abs(found.truncation - np.abs(truncation)) <= 2 * found.roundoff)
    assert found.numerical[3:].tolist() == truncation[3:].tolist()
    assert found.truncation[3:].tolist() == np.abs(truncation[3:]).tolist()


def test_random_tangents_are_seeded_standard_normals_in_each_dtype() -> None:
    """One generator per seed draws every tangent over the named inputs, in their dtypes."""
    inputs: dict[str, NDArray[Any]] = {
        "x": np.zeros(3),
        "w": np.zeros((2, 2), dtype=np.float32),
        "n": np.zeros(2),
    }
    first, second = random_tangents(inputs, ["x", "w"], 2, seed=5)
    rng = np.random.default_rng(5)
    assert set(first) == {"x", "w"}
    assert np.array_equal(first["x"], rng.standard_normal(3))
    assert first["w"].dtype == np.float32
    assert np.array_equal(first["w"], rng.standard_normal((2, 2)).astype(np.float32))
    assert np.array_equal(second["x"], rng.standard_normal(3))


# --- the built-in sigmoid-sum on the command line ----------------------------------------------


def test_builtin_order_2_passes_with_the_closed_form_hvp(
    seed_arrays: Seed, report_validator: Any
) -> None:
    """`run --order 2` checks the gradient, then H v along 2 tangents: every analytic value is
    the closed form's, every numerical one within 1e-8 of it, and the JSON carries the tangents."""
    code, doc = gradcheck_json("run", "--order", "2")
    assert code == 0
    assert list(report_validator.iter_errors(doc)) == []
    assert doc["verdict"] == "passed"
    assert doc["gradient_check"] == FIRST_ORDER_PASSED
    settings = doc["settings"]
    assert (settings["check"], settings["order"], settings["tangents"]) == ("hvp", 2, 2)
    assert settings["tangent_inputs"] == ["X", "W"]
    X, W = seed_arrays
    tangents = random_tangents({"X": X, "W": W}, ["X", "W"], 2, 0)
    assert len(doc["checks"]) == 30
    for check in doc["checks"]:
        dX, dW = sigmoid_hvp(X, W, tangents[check["tangent"] - 1])
        exact = (dX if check["wrt"] == "X" else dW)[tuple(check["index"])]
        assert check["analytic"] == pytest.approx(exact, rel=1e-12, abs=1e-15)
        assert abs(check["numerical"] - exact) <= 1e-8
        assert check["passed"]
    assert {c["tangent"] for c in doc["checks"]} == {1, 2}
    assert all("cotangent" not in c for c in doc["checks"])


def test_builtin_mode_jvp_passes_with_the_directional_derivative(
    seed_arrays: Seed, report_validator: Any
) -> None:
    """`run --mode jvp --tangents 3` checks the one output f along 3 tangents: J v = <grad, v>."""
    code, doc = gradcheck_json("run", "--mode", "jvp", "--tangents", "3")
    assert code == 0
    assert list(report_validator.iter_errors(doc)) == []
    assert (doc["settings"]["check"], doc["settings"]["tangents"]) == ("jvp", 3)
    assert "gradient_check" not in doc  # no first-order check came first
    X, W = seed_arrays
    tangents = random_tangents({"X": X, "W": W}, ["X", "W"], 3, 0)
    assert [(c["wrt"], c["index"]) for c in doc["checks"]] == [("f", [])] * 3
    for check in doc["checks"]:
        exact = sigmoid_jvp(X, W, tangents[check["tangent"] - 1])
        assert check["analytic"] == pytest.approx(exact, rel=1e-12)
        assert abs(check["numerical"] - exact) <= 1e-8
    assert doc["summary"]["f"]["entries"] == 1


def test_first_order_check_comes_first(model_path: ModelPath) -> None:
    """A wrong backward stops `--order 2` at the gradient: exit 1 and its first-order report
    (dense_tanh_bug.py has no hvp at all: asking it for one would be exit 2)."""
    code, doc = gradcheck_json("run", "--model", model_path("dense_tanh_bug"), "--order", "2")
    assert code == 1
    assert doc["verdict"] == "failed"
    assert "check" not in doc["settings"]
    assert all("tangent" not in c for c in doc["checks"])
    assert "gradient_check" not in doc


# --- model files with named inputs -------------------------------------------------------------


def test_quadratic_model_file_passes_both_checks(
    model_path: ModelPath, report_validator: Any
) -> None:
    """quadratic_hvp.py's hvp passes `--order 2` for x, A and b, and its jvp `--mode jvp`."""
    code, doc = gradcheck_json("run", "--model", model_path("quadratic_hvp"), "--order", "2")
    assert code == 0
    assert list(report_validator.iter_errors(doc)) == []
    assert {n: s["entries"] for n, s in doc["summary"].items()} == {"x": 4, "A": 16, "b": 4}
    assert len(doc["checks"]) == 48
    assert doc["gradient_check"]["entries"] == 24
    code, doc = gradcheck_json("run", "--model", model_path("quadratic_hvp"), "--mode", "jvp")
    assert code == 0
    assert list(report_validator.iter_errors(doc)) == []
    assert list(doc["summary"]) == ["f"]
    assert list(doc["inputs"]) == ["x", "A", "b"]


def test_table_names_each_entry_with_its_tangent(model_path: ModelPath) -> None:
    """The table's rows read `x[0] t1`: the entry, then the tangent it was checked along."""
    result = gradcheck("run", "--model", model_path("quadratic_hvp"), "--order", "2", "--top", "48")
    assert result.exit_code == 0, result.stderr
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    labels = {" ".join(row) for row in rows if len(row) == 2 and row[1] in ("t1", "t2")}
    assert {"x[0] t1", "x[3] t2", "A[1,3] t1", "b[2] t2"} <= labels
    assert len(labels) == 48
    assert "the gradient: passed (24 entries, 0 failed)" in result.stdout


QUADRATIC_BUGS = [
    ("quadratic_hvp_missing_term", every("x", (4,))),
    ("quadratic_hvp_transposed", {("x", (i,), t) for i in (1, 3) for t in (1, 2)}),
    ("quadratic_hvp_factor", every("A", (4, 4))),
]


@pytest.mark.parametrize(("stem", "wrong"), QUADRATIC_BUGS)
def test_each_hvp_bug_fails_exactly_the_entries_it_touches(
    model_path: ModelPath,
    report_validator: Any,
    stem: str,
    wrong: set[Entry],
) -> None:
    """A missing term (x's part), a transposed product (x[1] and x[3]: A is symmetric but for
    that pair) and a wrong factor (A's part) each fail those entries through both tangents,
    and nothing else: exit 1."""
    correct, buggy = (
        load_module(Path(model_path("quadratic_hvp"))),
        load_module(Path(model_path(stem))),
    )
    inputs = correct.example_inputs()
    assert touched(correct.hvp, buggy.hvp, inputs, ["x", "A", "b"]) == wrong
    code, doc = gradcheck_json("run", "--model", model_path(stem), "--order", "2")
    assert code == 1
    assert list(report_validator.iter_errors(doc)) == []
    assert doc["gradient_check"]["verdict"] == "passed"
    assert failed_in_document(doc) == wrong
    assert all(c["reason"] == "mismatch" for c in doc["checks"] if not c["passed"])


def test_hvp_of_the_checked_inputs_only(model_path: ModelPath) -> None:
    """Under `--wrt x` the tangent moves x alone; hvp still finds tangents["A"] and ["b"]
    (zeros), and only x's part is compared: the factor bug in A's part is out of sight, the
    transposed product in x's part still fails x[1] and x[3], and the missing vb costs nothing
    where vb = 0."""
    for stem, exit_code, wrong in (
        ("quadratic_hvp_factor", 0, set()),
        ("quadratic_hvp_transposed", 1, {("x", (i,), t) for i in (1, 3) for t in (1, 2)}),
        ("quadratic_hvp_missing_term", 0, set()),
    ):
        code, doc = gradcheck_json("run", "--model", model_path(stem), "--order", "2", "--wrt", "x")
        assert code == exit_code
        assert doc["settings"]["tangent_inputs"] == ["x"]
        assert list(doc["summary"]) == ["x"]
        assert failed_in_document(doc) == wrong


DENSE_ROWS_0_1 = {("out", (i, j), t) for i in (0, 1) for j in (0, 1) for t in (1, 2)}
"""dense_jvp_bug.py's wrong elements: every one outside x's padding row, through each tangent."""

JVP_BUGS = [
    ("quadratic_hvp", "quadratic_jvp_bug", ["f"], every("f", ())),
    ("dense_jvp", "dense_jvp_bug", ["out"], DENSE_ROWS_0_1),
]


@pytest.mark.parametrize(("stem", "bug", "parts", "wrong"), JVP_BUGS)
def test_jvp_passes_and_its_bug_fails_exactly_the_elements_it_touches(
    model_path: ModelPath,
    report_validator: Any,
    stem: str,
    bug: str,
    parts: list[str],
    wrong: set[Entry],
) -> None:
    """`--mode jvp` passes the correct jvp and fails the twin's missing term in exactly the
    output elements it changes (dense: the rows of x that are not padding)."""
    correct, buggy = load_module(Path(model_path(stem))), load_module(Path(model_path(bug)))
    assert touched(correct.jvp, buggy.jvp, correct.example_inputs(), parts) == wrong
    code, doc = gradcheck_json("run", "--model", model_path(stem), "--mode", "jvp")
    assert code == 0
    assert list(doc["summary"]) == parts
    code, doc = gradcheck_json("run", "--model", model_path(bug), "--mode", "jvp")
    assert code == 1
    assert list(report_validator.iter_errors(doc)) == []
    assert failed_in_document(doc) == wrong


# --- the API -------------------------------------------------------------------------------------


def test_check_hvp_agrees_with_the_builtin_run(seed_arrays: Seed) -> None:
    """check_hvp on sigmoid-sum written in numpy passes with the built-in run's analytic values,
    entry by entry and tangent by tangent."""
    X, W = seed_arrays
    report = check_hvp(sigmoid_forward, sigmoid_backward, sigmoid_hvp, {"X": X, "W": W})
    assert report.verdict == "passed"
    assert report.gradient_check == FIRST_ORDER_PASSED
    _, doc = gradcheck_json("run", "--order", "2", codes=(0, 1))
    cli = {(c["wrt"], tuple(c["index"]), c["tangent"]): c for c in doc["checks"]}
    assert len(report.checks) == len(cli) == 30
    for check in report.checks:
        other = cli[(check.wrt, check.index, check.tangent)]
        assert check.analytic == pytest.approx(other["analytic"], rel=1e-12, abs=1e-15)
        assert check.numerical == pytest.approx(other["numerical"], rel=1e-7, abs=1e-9)
    assert report.to_document()["settings"]["check"] == "hvp"


SIGMOID_BUGS = [
    (sigmoid_hvp_missing_term, every("X", (3, 3))),
    (sigmoid_hvp_transposed, every("W", (3, 2))),
    (sigmoid_hvp_factor, every("X", (3, 3)) | every("W", (3, 2))),
]


@pytest.mark.parametrize(("hvp", "wrong"), SIGMOID_BUGS)
def test_check_hvp_fails_each_sigmoid_bug_where_it_touches(
    seed_arrays: Seed,
    report_validator: Any,
    hvp: Callable[..., Any],
    wrong: set[Entry],
) -> None:
    """sigmoid-sum's hvp with a missing term (X's part), a transposed product (W's part) or a
    wrong factor in s'' (both) fails exactly those entries through both tangents."""
    X, W = seed_arrays
    inputs = {"X": X, "W": W}
    assert touched(sigmoid_hvp, hvp, inputs, ["X", "W"]) == wrong
    report = check_hvp(sigmoid_forward, sigmoid_backward, hvp, inputs)
    assert report.verdict == "failed"
    assert failed_in_report(report) == wrong
    assert list(report_validator.iter_errors(report.to_document())) == []


@pytest.mark.parametrize(
    "hvp", [sigmoid_hvp, sigmoid_hvp_missing_term, sigmoid_hvp_transposed, sigmoid_hvp_factor]
)
def test_float32_hvp_fails_only_where_a_bug_touches(
    seed_arrays: Seed, hvp: Callable[..., Any]
) -> None:
    """In float32 the correct hvp passes (a saturated sigmoid's round-off is that of the values
    it is computed from, not of its small derivative); a bug fails no entry it leaves alone and
    every entry it moves by more than the tolerance (smaller entries hide in float32's noise)."""
    X, W = seed_arrays
    inputs = {"X": X, "W": W}
    report = check_hvp(sigmoid_forward, sigmoid_backward, hvp, inputs, dtype="float32")
    gaps = deviations(sigmoid_hvp, hvp, inputs, ["X", "W"])
    assert report.verdict == ("passed" if hvp is sigmoid_hvp else "failed")
    assert failed_in_report(report) <= {entry for entry, gap in gaps.items() if gap > 1e-6}
    # A change beyond the check's own tolerance is never missed.
    for check in report.checks:
        if gaps[(check.wrt, check.index, check.tangent)] > 1.2 * check.tolerance:
            assert not check.passed


def test_inputs_of_different_scales_share_one_step() -> None:
    """A correct hvp passes when one input's entries are near 1000 and another's near 0.001
    with f varying on that small scale: the step fits the small one."""

    def forward(x: Matrix, w: Matrix) -> float:
        return float(np.sum(x**2) + np.sum(np.sin(1e3 * w)))

    def backward(x: Matrix, w: Matrix) -> tuple[Matrix, Matrix]:
        return 2 * x, 1e3 * np.cos(1e3 * w)

    def hvp(x: Matrix, w: Matrix, tangents: Mapping[str, Matrix]) -> tuple[Matrix, Matrix]:
        return 2 * tangents["x"], -1e6 * np.sin(1e3 * w) * tangents["w"]

    inputs = {"x": np.array([1e3, -2e3, 500.0]), "w": np.array([1e-3, -2e-3, 3e-4])}
    report = check_hvp(forward, backward, hvp, inputs)
    assert report.verdict == "passed"
    assert {c.reason for c in report.checks} == {"ok"}


def test_check_hvp_returns_the_gradient_report_when_backward_is_wrong(seed_arrays: Seed) -> None:
    """A wrong gradient comes first: check_hvp returns its failed first-order report and never
    calls hvp."""
    X, W = seed_arrays

    def wrong_backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
        dX, dW = sigmoid_backward(X, W)
        return dX, 2 * dW

    def hvp(X: Matrix, W: Matrix, tangents: Mapping[str, Matrix]) -> None:
        raise AssertionError("hvp called after a wrong gradient")

    report = check_hvp(sigmoid_forward, wrong_backward, hvp, {"X": X, "W": W})
    assert report.verdict == "failed"
    assert {c.wrt for c in report.checks if not c.passed} == {"W"}
    assert all(c.tangent is None for c in report.checks)
    assert report.gradient_check is None


def test_check_hvp_and_check_jvp_on_model_file_functions(
    model_path: ModelPath, report_validator: Any
) -> None:
    """The API checks a file's functions over named inputs as the CLI does: the correct ones
    pass, jvp's missing term fails f through each of 3 tangents, with rtol/atol applied."""
    module = load_module(Path(model_path("quadratic_hvp")))
    inputs = module.example_inputs()
    report = check_hvp(module.forward, module.backward, module.hvp, inputs, wrt="x,b")
    assert report.passed
    assert list(report.summary) == ["x", "b"]
    assert report.to_document()["settings"]["tangent_inputs"] == ["x", "b"]
    report = check_jvp(module.forward, module.jvp, inputs, tangents=3)
    assert report.passed
    assert sorted((c.wrt, c.tangent) for c in report.checks) == [("f", 1), ("f", 2), ("f", 3)]
    assert list(report_validator.iter_errors(report.to_document())) == []
    buggy = load_module(Path(model_path("quadratic_jvp_bug")))
    report = check_jvp(module.forward, buggy.jvp, inputs, tangents=3)
    assert failed_in_report(report) == every("f", (), tangents=3)
    loose = check_jvp(module.forward, buggy.jvp, inputs, rtol=10.0, atol=10.0)
    assert loose.passed
    assert (loose.settings.rtol, loose.settings.atol) == (10.0, 10.0)


def test_check_jvp_of_an_array_forward(model_path: ModelPath) -> None:
    """check_jvp needs no backward: an array forward's J v is checked element by element."""
    correct, buggy = (
        load_module(Path(model_path("dense_jvp"))),
        load_module(Path(model_path("dense_jvp_bug"))),
    )
    inputs = correct.example_inputs()
    report = check_jvp(correct.forward, correct.jvp, inputs)
    assert report.passed
    assert report.summary["out"].entries == 6
    assert report.output_shape == (3, 2)
    report = check_jvp(correct.forward, buggy.jvp, inputs)
    assert failed_in_report(report) == DENSE_ROWS_0_1


def double(x: Matrix) -> Matrix:
    return x * 2.0


def double_vjp(x: Matrix, grad_output: Matrix) -> Matrix:
    return grad_output * 2.0


def double_jvp(x: Matrix, tangents: Mapping[str, Matrix]) -> Matrix:
    return tangents["x"] * 2.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda i: check_hvp(double, double_vjp, double_jvp, i), "checks the Hessian of a scalar"),
        (lambda i: check_jvp(double, double_jvp, i, tangents=0), "tangents must be an integer"),
        (lambda i: check_jvp(double, double_jvp, i, wrt="y"), "wrt y: no input of that name"),
    ],
)
def test_api_refuses_what_it_cannot_check(
    call: Callable[[dict[str, Matrix]], object], message: str
) -> None:
    """An hvp of an array forward, zero tangents and an unknown input are InputErrors."""
    assert check_jvp(double, double_jvp, {"x": np.ones(3)}).passed
    with pytest.raises(InputError, match=message):
        call({"x": np.ones(3)})


def test_cli_tolerances_reach_the_tangent_check(model_path: ModelPath) -> None:
    """--rtol and --atol set the tolerance of a tangent check, as they do a gradient check's."""
    loose = ("--rtol", "10", "--atol", "10")
    code, doc = gradcheck_json(
        "run", "--model", model_path("quadratic_jvp_bug"), "--mode", "jvp", *loose
    )
    assert (doc["settings"]["rtol"], doc["settings"]["atol"]) == (10.0, 10.0)
    assert code == 0
