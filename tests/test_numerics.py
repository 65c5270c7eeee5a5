"""The numbers a verdict is built on: finite differences, their steps and error estimates.
Each method's accuracy, estimates that bound the observed error (for any input, too), correct
gradients passing and wrong ones failing in float64 and float32, every reason from a
constructed case (a step too small or too large, a kink, saturation, a non-finite value), and
perturb and the Taylor sweep on the seed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import examples, gradient_pair, xw
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.judgement import SAFETY
from gradcheck_cli.checks.perturb import perturb_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.checks.taylor import sweep_check
from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.estimates import DerivativeEstimates, estimate_at_default_steps
from gradcheck_cli.numerics.models import (
    Array,
    ElementwiseModel,
    Gradients,
    Inputs,
    Model,
    Wrt,
    builtin_model,
    builtin_model_names,
)
from gradcheck_cli.numerics.schemes import METHOD_NAMES, SCHEMES, default_steps
from gradcheck_cli.report import RunReport
from gradcheck_cli.settings import CheckSettings
from gradcheck_cli.subject.seed import seed_matrices

FloatArray = NDArray[np.float64]
NAMES = builtin_model_names()
DTYPES = ("float64", "float32")

ACCURACY = {
    "forward": 1e-6,
    "backward": 1e-6,
    "central": 1e-8,
    "five-point": 1e-9,
    "complex-step": 1e-14,
}
"""max |numerical - exact| / max |exact| in float64 at default steps, any built-in model."""
SEED_TARGETS = {"central": 1e-9, "five-point": 1e-11, "complex-step": 1e-14}
"""The float64 accuracy each method is held to on the seed (benchmarks/accuracy.py checks the same
targets on 64^3 inputs)."""


def methods_for(model: Model) -> list[str]:
    return [m for m in METHOD_NAMES if model.complex_analytic or not SCHEMES[m].imaginary]


def random_inputs(seed: int, scale: float = 1.0, square: bool = False) -> tuple[FloatArray, ...]:
    """X (n, k) ~ N(0, scale^2) and W (k, m) ~ N(0, 1), n, k, m in 1..12 (n = k if square)."""
    rng = np.random.default_rng(seed)
    n, k, m = (int(s) for s in rng.integers(2 if square else 1, 13, size=3))
    n = k if square else n
    return scale * rng.standard_normal((n, k)), rng.standard_normal((k, m))


def saturating_inputs(seed: int) -> tuple[FloatArray, ...]:
    """Random inputs with X scaled by 10..20, so |X @ W| reaches 40 and beyond."""
    scale = float(np.random.default_rng(1000 + seed).uniform(10, 20))
    return random_inputs(seed, scale)


def inputs(kind: str, count: int) -> list[tuple[FloatArray, ...]]:
    if kind == "seed":
        return [seed_matrices()]
    make = random_inputs if kind == "random" else saturating_inputs
    return [make(seed) for seed in range(count)]


def estimates(
    model: Model, X: Array, W: Array, method: str
) -> dict[str, tuple[DerivativeEstimates, FloatArray]]:
    """Default-step estimates for every entry of X and W, with the float64 closed form."""
    dX, dW = gradient_pair(model, X.astype(np.float64), W.astype(np.float64))
    exact = {"X": dX, "W": dW}
    f0 = float(np.real(model.value(xw(X, W))))
    out: dict[str, tuple[DerivativeEstimates, FloatArray]] = {}
    pairs: list[tuple[Wrt, Array]] = [("X", X), ("W", W)]
    for wrt, target in pairs:
        flat = np.arange(target.size)
        found = estimate_at_default_steps(model, xw(X, W), wrt, flat, SCHEMES[method], f0=f0)
        out[wrt] = (found, exact[wrt].ravel())
    return out


@dataclass(frozen=True)
class Planted:
    """A built-in model whose gradient passes through `bug`: a wrong gradient to catch."""

    inner: ElementwiseModel
    bug: Callable[[Array, Array], tuple[Array, Array]]

    @property
    def name(self) -> str:
        return f"planted-{self.inner.name}"

    @property
    def formula(self) -> str:
        return self.inner.formula

    @property
    def complex_analytic(self) -> bool:
        return self.inner.complex_analytic

    def value(self, inputs: Inputs) -> float | complex:
        return self.inner.value(inputs)

    def gradient(self, inputs: Inputs) -> Gradients:
        dX, dW = self.bug(*gradient_pair(self.inner, inputs["X"], inputs["W"]))
        return {"X": dX, "W": dW}


def scaled(dX: Array, dW: Array) -> tuple[Array, Array]:
    return dX * 1.01, dW * 1.01


def one_entry_off(dX: Array, dW: Array) -> tuple[Array, Array]:
    wrong = dX.copy()
    wrong[np.unravel_index(np.argmax(np.abs(dX)), dX.shape)] *= 1 + 1e-3
    return wrong, dW


def transposed(dX: Array, dW: Array) -> tuple[Array, Array]:
    return dX.T.copy(), dW  # needs a square X


BUGS = {"scaled by 1.01": scaled, "one entry off by 1e-3": one_entry_off, "transposed": transposed}


@dataclass(frozen=True)
class SqrtSum:
    """f = sum(sqrt(X @ W)): NaN wherever a step carries an entry of X @ W below 0."""

    name: str = "sqrt-sum"
    formula: str = "sum(sqrt(X @ W))"
    complex_analytic: bool = False

    def value(self, inputs: Inputs) -> float | complex:
        with np.errstate(invalid="ignore"):
            return float(np.sum(np.sqrt(inputs["X"] @ inputs["W"])))

    def gradient(self, inputs: Inputs) -> Gradients:
        X, W = inputs["X"], inputs["W"]
        D = 0.5 / np.sqrt(X @ W)
        return {"X": D @ W.T, "W": X.T @ D}


def reasons(report: RunReport) -> Counter[str]:
    return Counter(c.reason for c in report.checks)


# --- accuracy of each method and of its error estimate -------------------------------------------


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_each_method_matches_the_closed_form(method: str) -> None:
    """Each method at its default steps lands within its order's accuracy of the closed form."""
    for name in NAMES:
        model = builtin_model(name)
        if method not in methods_for(model):
            continue
        for X, W in [seed_matrices(), *inputs("random", 8)]:
            found = estimates(model, X, W, method)
            error = max(float(np.max(np.abs(e.numerical - x))) for e, x in found.values())
            size = max(float(np.max(np.abs(x))) for _, x in found.values())
            assert error <= ACCURACY[method] * size, (name, X.shape, W.shape)


@pytest.mark.parametrize("method", sorted(SEED_TARGETS))
def test_each_method_meets_its_accuracy_target_on_the_seed(method: str) -> None:
    """On the seed, central, five-point and complex-step meet their float64 targets: what a
    user can expect of each method's numbers."""
    found = estimates(builtin_model("sigmoid-sum"), *seed_matrices(), method)
    error = max(float(np.max(np.abs(e.numerical - x))) for e, x in found.values())
    size = max(float(np.max(np.abs(x))) for _, x in found.values())
    assert error <= SEED_TARGETS[method] * size


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_error_estimate_bounds_the_observed_error(method: str) -> None:
    """|numerical - exact| <= SAFETY * error estimate, for every entry, model and input."""
    for name in NAMES:
        model = builtin_model(name)
        if method not in methods_for(model):
            continue
        for X, W in [seed_matrices(), *inputs("random", 8)]:
            for found, exact in estimates(model, X, W, method).values():
                observed = np.abs(found.numerical - exact)
                assert np.all(observed <= SAFETY * found.error), (name, X.shape, W.shape)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_float32_error_estimate_bounds_its_observed_error(method: str) -> None:
    """In float32 the estimate bounds the gap to the gradient computed alike, in float32."""
    for name in NAMES:
        model = builtin_model(name)
        if method not in methods_for(model):
            continue
        for X, W in [seed_matrices(), *inputs("random", 6)]:
            X32, W32 = X.astype(np.float32), W.astype(np.float32)
            analytic = dict(zip("XW", gradient_pair(model, X32, W32), strict=True))
            for wrt, (found, _) in estimates(model, X32, W32, method).items():
                observed = np.abs(found.numerical - analytic[wrt].ravel())
                assert np.all(observed <= SAFETY * found.error), (name, X.shape, W.shape)


def test_too_long_default_step_is_shrunk() -> None:
    """Where the textbook step is far too long (float32, five-point, |X| ~ 30) it is shrunk."""
    rng = np.random.default_rng(3)
    X = (30 * rng.standard_normal((4, 4))).astype(np.float32)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    model = builtin_model("tanh-sum")
    found, _ = estimates(model, X, W, "five-point")["W"]
    textbook = default_steps(SCHEMES["five-point"], W.ravel())
    assert np.any(found.steps < textbook / 2)
    observed = np.abs(found.numerical - gradient_pair(model, X, W)[1].ravel())
    assert np.all(observed <= SAFETY * found.error)


def test_float32_complex_step_resolves_a_saturated_gradient() -> None:
    """In float32 the complex step (1e-10) keeps tanh'(26) ~ 1e-22 to float32 accuracy."""
    X = np.array([[2.0, 3.0]], dtype=np.float32)
    W = np.array([[4.0], [6.0]], dtype=np.float32)  # X @ W == 26
    model = builtin_model("tanh-sum")
    found, _ = estimates(model, X, W, "complex-step")["X"]
    assert found.steps[0] == 1e-10
    np.testing.assert_allclose(found.numerical, gradient_pair(model, X, W)[0].ravel(), rtol=1e-5)


# --- correct gradients pass, wrong ones fail -----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["seed", "random", "saturating"])
@pytest.mark.parametrize("name", NAMES)
def test_correct_gradient_passes(name: str, kind: str, dtype: str) -> None:
    """Every built-in model's own gradient never fails, by any method, at default settings; and
    it passes wherever the method can vouch for it: everywhere but at saturating inputs (whose
    gradients, ~1e-30, lie below any difference's noise floor) and with float32 one-sided
    differences (whose error, ~sqrt(eps) ~ 3e-4 of f's scale, exceeds 1% of small gradients).
    There the verdict is inconclusive: no evidence against the gradient, none for it either."""
    model = builtin_model(name)
    for X, W in inputs(kind, 8):
        for method in methods_for(model):
            report = run_check(
                Target.of(model, xw(X.astype(dtype), W.astype(dtype))), CheckSettings(method=method)
            )
            assert report.verdict != "failed", (method, X.shape, W.shape, report.summary)
            weak = kind == "saturating" or (
                dtype == "float32" and method in ("forward", "backward")
            )
            if not weak:
                assert report.passed, (method, X.shape, W.shape, report.summary)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_doubtful_passes_are_rare_in_float64(method: str) -> None:
    """On random inputs in float64, under 1% of entries pass with a reason other than "ok"."""
    entries = doubtful = 0
    for name in NAMES:
        model = builtin_model(name)
        if method not in methods_for(model):
            continue
        for X, W in inputs("random", 8):
            report = run_check(
                Target.of(model, xw(X, W)), CheckSettings(method=method, details="all")
            )
            entries += len(report.checks)
            doubtful += sum(c.passed and c.reason != "ok" for c in report.checks)
    assert doubtful < 0.01 * entries


@pytest.mark.parametrize(
    ("bug", "dtype"),
    [(bug, "float64") for bug in BUGS] + [("scaled by 1.01", "float32"), ("transposed", "float32")],
)
@pytest.mark.parametrize("name", NAMES)
def test_wrong_gradient_fails(name: str, bug: str, dtype: str) -> None:
    """A planted bug fails with "mismatch", on the seed and random inputs.

    float64: every bug by every method. float32: the transposed derivative by every method, the
    1% scale by five-point and complex-step only (one-sided and central differences in float32
    cannot vouch for 1% where f's terms are large; 1e-3 in one entry is beyond float32 too).
    """
    model = Planted(builtin_model(name), BUGS[bug])
    methods = methods_for(model)
    if dtype == "float32" and bug == "scaled by 1.01":
        methods = [m for m in methods if m in ("five-point", "complex-step")]
    cases = [seed_matrices(), *(random_inputs(seed, square=True) for seed in range(4))]
    for X, W in cases:
        X, W = X.astype(dtype), W.astype(dtype)
        right = gradient_pair(model.inner, X, W)
        wrong = gradient_pair(model, X, W)
        if all(np.array_equal(a, b) for a, b in zip(right, wrong, strict=True)):
            continue  # e.g. a symmetric dF/dX is its own transpose
        for method in methods:
            report = run_check(
                Target.of(model, xw(X, W)), CheckSettings(method=method, details="all")
            )
            assert not report.passed, (method, X.shape, W.shape)
            assert "mismatch" in reasons(report)


@settings(max_examples=examples(30), deadline=None)
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 12),
    m=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    dtype=st.sampled_from(DTYPES),
)
def test_any_shape_correct_gradients_pass(
    n: int, k: int, m: int, seed: int, scale: float, dtype: str
) -> None:
    """For any shapes up to 12 and entry scales, every model's own gradient never fails
    (central), and passes in float64. (In float32 an entry whose step had to shrink near a
    relu kink may be left inconclusive: at that step float32's round-off is ~10% of it.)"""
    rng = np.random.default_rng(seed)
    X = (scale * rng.standard_normal((n, k))).astype(dtype)
    W = rng.standard_normal((k, m)).astype(dtype)
    for name in NAMES:
        report = run_check(Target.of(builtin_model(name), xw(X, W)))
        assert report.verdict != "failed", name
        if dtype == "float64":
            assert report.passed, name


# --- any input: gradients agree within the estimate the check reports -----------------------

PROPERTY_SETTINGS = settings(
    max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SANE = 10.0
"""|x| <= SANE: X @ W stays within a few hundred, where every activation is well behaved."""
TINY = 1e-6
"""Magnitudes below this are left to their own test: a complex step of 1e-20 times a weight of
1e-300 underflows to zero, which is a limit of the method rather than of the matrix."""
SIDE = st.integers(min_value=1, max_value=6)
ENTRIES = st.one_of(
    st.just(0.0),
    st.integers(-10, 10).map(float),
    st.tuples(st.sampled_from([-1.0, 1.0]), st.floats(TINY, SANE)).map(lambda sx: sx[0] * sx[1]),
)
"""Finite values in [-SANE, SANE]: zeros and integers (kinks of relu, exact products) included."""


@st.composite
def matrix_pairs(draw: st.DrawFn) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """X (n, k) and W (k, m) with n, k, m in 1..6 and finite entries in [-SANE, SANE]."""
    n, k, m = draw(SIDE), draw(SIDE), draw(SIDE)
    X = draw(arrays(np.float64, (n, k), elements=ENTRIES))
    W = draw(arrays(np.float64, (k, m), elements=ENTRIES))
    return X, W


def central_and_complex_step(model_name: str) -> list[str]:
    """central always; complex-step too where the model is complex-analytic."""
    model = builtin_model(model_name)
    return ["central", "complex-step"] if model.complex_analytic else ["central"]


MODEL_METHODS = [
    pytest.param(name, method, id=f"{name}-{method}")
    for name in builtin_model_names()
    for method in central_and_complex_step(name)
]


@pytest.mark.parametrize(("model_name", "method"), MODEL_METHODS)
@PROPERTY_SETTINGS
@given(pair=matrix_pairs())
# dF/dX = s'(-2) * -2 + s'(2) * 2 is exactly 0 for an even s' (sigmoid, tanh): the terms cancel.
@example(pair=(np.array([[1.0]]), np.array([[-2.0, 2.0]])))
def test_builtin_gradients_agree_within_the_reported_estimate(
    model_name: str, method: str, pair: tuple[NDArray[np.float64], NDArray[np.float64]]
) -> None:
    """Each listed entry passes: |analytic - numerical| <= its tolerance (relu may hit a kink)."""
    X, W = pair
    model = builtin_model(model_name)
    report = run_check(Target.of(model, xw(X, W)), CheckSettings(method=method, details="all"))
    assert len(report.checks) == X.size + W.size
    for entry in report.checks:
        where = f"{entry.wrt}{list(entry.index)}: {entry}"
        if entry.reason == "kink":
            assert model.kinks, where  # only a model with a kink may excuse an entry by one
            continue
        assert entry.passed, where
        if entry.reason != "saturated":  # saturated: the gradient is below the noise floor
            assert entry.abs_error <= entry.tolerance, where
    assert report.passed


@pytest.mark.parametrize(
    "model_name", [name for name in builtin_model_names() if builtin_model(name).complex_analytic]
)
@pytest.mark.parametrize("method", ["central", "complex-step"])
def test_tiny_weights_do_not_fail_a_correct_gradient(model_name: str, method: str) -> None:
    """A correct gradient of 2.2e-308 never fails: the step's underflow is no evidence against
    it. (Where the difference cannot see a gradient that small at all, the verdict is
    inconclusive: no evidence for it either.)"""
    X = np.zeros((1, 1))
    W = np.full((1, 1), np.finfo(np.float64).tiny)
    report = run_check(
        Target.of(builtin_model(model_name), xw(X, W)), CheckSettings(method=method, details="all")
    )
    assert report.verdict != "failed", [c for c in report.checks if not c.passed]
    assert all(c.passed or c.reason == "inconclusive" for c in report.checks)


# --- every reason from a constructed case --------------------------------------------------------


def test_mismatch_names_the_planted_bug() -> None:
    """The entry planted 1e-3 off is the one that fails, with reason "mismatch"."""
    X, W = seed_matrices()
    model = Planted(builtin_model("sigmoid-sum"), one_entry_off)
    report = run_check(Target.of(model, xw(X, W)), CheckSettings(details="all"))
    failed = [c for c in report.checks if not c.passed]
    i, j = np.unravel_index(np.argmax(np.abs(gradient_pair(model.inner, X, W)[0])), X.shape)
    worst = (int(i), int(j))
    assert [(c.wrt, c.index, c.reason) for c in failed] == [("X", worst, "mismatch")]


def test_too_small_step_is_blamed_not_the_gradient() -> None:
    """--delta 1e-13 with whole forward passes (a model file's path): a correct gradient passes
    as "step-too-small"; a wrong one still fails. (The built-in dense path subtracts nothing,
    so a tiny step costs it no accuracy: there the same entries are simply "ok".)"""
    X, W = seed_matrices()
    model = builtin_model("sigmoid-sum")
    report = run_check(
        Target.of(model, xw(X, W)), CheckSettings(delta=1e-13, details="all"), structured=False
    )
    assert report.passed
    assert reasons(report) == Counter({"step-too-small": 15})
    dense = run_check(Target.of(model, xw(X, W)), CheckSettings(delta=1e-13, details="all"))
    assert reasons(dense) == Counter({"ok": 15})
    wrong = run_check(
        Target.of(Planted(model, scaled), xw(X, W)), CheckSettings(delta=1e-13), structured=False
    )
    assert not wrong.passed
    assert set(reasons(wrong)) == {"mismatch"}


def test_too_large_step_is_blamed_not_the_gradient() -> None:
    """--delta 0.5 on a curved model: a correct gradient passes, its doubtful entries as
    "step-too-large"; a wrong one still fails."""
    X, W = seed_matrices()
    report = run_check(
        Target.of(builtin_model("sigmoid-sum"), xw(X, W)), CheckSettings(delta=0.5, details="all")
    )
    assert report.passed
    assert set(reasons(report)) == {"ok", "step-too-large"}
    wrong = run_check(
        Target.of(Planted(builtin_model("sigmoid-sum"), scaled), xw(X, W)), CheckSettings(delta=0.5)
    )
    assert not wrong.passed


@pytest.mark.parametrize("method", ["forward", "backward", "central", "five-point"])
def test_kink_within_the_step_passes_as_kink(method: str) -> None:
    """relu-sum with an exact 0 in X @ W: the entries that move it pass with reason "kink"."""
    X = np.array([[1.0, -1.0, 0.5], [0.3, 0.2, -0.7]])
    W = np.array([[1.0, 0.4], [2.0, -0.2], [2.0, 0.9]])  # (X @ W)[0, 0] == 0 exactly
    assert (X @ W)[0, 0] == 0
    report = run_check(
        Target.of(builtin_model("relu-sum"), xw(X, W)), CheckSettings(method=method, details="all")
    )
    assert report.passed
    by_entry = {(c.wrt, c.index): c.reason for c in report.checks}
    touching = {("X", (0, j)) for j in range(3)} | {("W", (j, 0)) for j in range(3)}
    assert {entry for entry, reason in by_entry.items() if reason != "ok"} <= touching
    kinks = {entry for entry, reason in by_entry.items() if reason == "kink"}
    if method in ("central", "five-point"):
        assert kinks == touching  # both sides of the kink are sampled
    else:
        assert kinks  # one side only: where it points into the kink


def test_saturated_gradient_is_inconclusive_by_whole_forward_passes() -> None:
    """sigmoid-sum at X @ W = 40, differenced by whole forward passes: sigmoid' ~ 4e-18 is
    below the noise floor of subtracting two values of f ~ 1, for every entry of both inputs.
    Nothing there can vouch for the gradient (a factor 2 would not show): inconclusive, not
    passed, and not failed either."""
    X = np.array([[10.0, 10.0]])
    W = np.array([[2.0], [2.0]])
    report = run_check(
        Target.of(builtin_model("sigmoid-sum"), xw(X, W)),
        CheckSettings(details="all"),
        structured=False,
    )
    assert report.verdict == "inconclusive"
    assert set(reasons(report)) == {"inconclusive"}
    # The dense path's closed-form brackets subtract nothing: they resolve it and agree.
    dense = run_check(
        Target.of(builtin_model("sigmoid-sum"), xw(X, W)), CheckSettings(details="all")
    )
    assert set(reasons(dense)) == {"ok"}
    # Complex-step has no subtraction and no such floor: it sees the gradient and agrees.
    seen = run_check(
        Target.of(builtin_model("sigmoid-sum"), xw(X, W)),
        CheckSettings(method="complex-step", details="all"),
    )
    assert set(reasons(seen)) == {"ok"}


def test_non_finite_value_fails() -> None:
    """A model whose value is NaN at a perturbed point fails there with reason "non-finite"."""
    X = np.array([[1.0, 1.0]])
    W = np.array([[1.0 + 1e-9], [-1.0]])  # X @ W ~ 1e-9: a step in X[0, 0] crosses 0
    report = run_check(Target.of(SqrtSum(), xw(X, W)), CheckSettings(details="all"))
    assert not report.passed
    assert {(c.wrt, c.index): c.reason for c in report.checks}[("X", (0, 0))] == "non-finite"
    assert "non-finite" in {
        p.reason
        for p in perturb_check(
            Target.of(SqrtSum(), xw(X, W)), CheckSettings(delta=1e-4), entries=(("X", (0, 0)),)
        ).perturbations
    }


def test_complex_step_is_refused_for_relu() -> None:
    """Complex-step on a model with a kink is refused, never silently wrong."""
    with pytest.raises(InputError, match="complex-analytic"):
        run_check(
            Target.of(builtin_model("relu-sum"), xw(*seed_matrices())),
            CheckSettings(method="complex-step"),
        )


# --- the seed's perturbation and the Taylor sweep ------------------------------------------------


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_perturb_fails_a_gradient_one_percent_off(method: str) -> None:
    """On the seed, the correct gradient passes perturb by every method, 1% off fails."""
    X, W = seed_matrices()
    entries = (("X", (0, 0)), ("X", (2, 1)))
    right = perturb_check(
        Target.of(builtin_model("sigmoid-sum"), xw(X, W)),
        CheckSettings(method=method, delta=1e-4),
        entries=entries,
    )
    assert right.passed
    wrong = Planted(builtin_model("sigmoid-sum"), scaled)
    report = perturb_check(
        Target.of(wrong, xw(X, W)), CheckSettings(method=method, delta=1e-4), entries=entries
    )
    assert [p.reason for p in report.perturbations] == ["mismatch", "mismatch"]


DELTAS = [10.0**-k for k in range(1, 11)]


@pytest.mark.parametrize("name", ["sigmoid-sum", "tanh-mean", "softplus-sum"])
def test_sweep_slope_two_for_the_true_gradient(name: str) -> None:
    """The Taylor residual of the true gradient falls like delta^2 (slope ~2), and passes."""
    X, W = seed_matrices()
    unit = np.zeros_like(X)
    unit[0, 0] = 1.0
    report = sweep_check(
        Target.of(builtin_model(name), xw(X, W)),
        direction={"X": unit},
        direction_info={},
        deltas=DELTAS,
    )
    assert report.slope == pytest.approx(2.0, abs=0.2)
    assert (report.passed, report.reason) == (True, "slope-2")


@pytest.mark.parametrize("name", ["sigmoid-sum", "tanh-mean", "softplus-sum"])
def test_sweep_slope_one_for_a_scaled_gradient(name: str) -> None:
    """A gradient 1% off leaves a residual linear in delta (slope ~1), and fails."""
    X, W = seed_matrices()
    rng = np.random.default_rng(0)
    direction = {"X": rng.standard_normal(X.shape), "W": rng.standard_normal(W.shape)}
    model = Planted(builtin_model(name), scaled)
    report = sweep_check(
        Target.of(model, xw(X, W)), direction=direction, direction_info={}, deltas=DELTAS
    )
    assert report.slope == pytest.approx(1.0, abs=0.2)
    assert (report.passed, report.reason) == (False, "slope-1")
