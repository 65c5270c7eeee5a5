"""The three ways to difference a built-in model agree: dense closed-form brackets (a full
check), the gathered per-row path (a selection of entries), and whole forward passes (the
black-box path, the only one for model files)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import gradient_pair, xw

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.judgement import SAFETY
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics import kernels
from gradcheck_cli.numerics.models import Array, Wrt, builtin_model, builtin_model_names
from gradcheck_cli.settings import CheckSettings


def inputs(seed: int, n: int = 6, k: int = 5, m: int = 4) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)) * 1.5, rng.standard_normal((k, m)) * 1.5


WITH_BRACKETS = [
    n for n in builtin_model_names() if builtin_model(n).activation.name in kernels.SUPPORTED
]


@pytest.mark.parametrize("name", WITH_BRACKETS)
@pytest.mark.parametrize("wrt", ["X", "W"])
def test_closed_form_brackets_equal_forward_differences(name: str, wrt: Wrt) -> None:
    """kernels.central_brackets is f(x + h e) - f(x - h e) itself: it equals two whole forward
    passes to the rounding of those passes, for several distinct steps at once."""
    model = builtin_model(name)
    X, W = inputs(1)
    target = X if wrt == "X" else W
    steps = np.exp2(np.floor(np.log2(1e-3 * np.maximum(1.0, np.abs(target)))))
    brackets = kernels.central_brackets(model, X, W, X @ W, wrt, steps)
    for index in np.ndindex(target.shape):
        moved_X, moved_W = X.copy(), W.copy()
        moved = moved_X if wrt == "X" else moved_W
        moved[index] += steps[index]
        plus = model.value(xw(moved_X, moved_W))
        moved[index] -= 2 * steps[index]
        minus = model.value(xw(moved_X, moved_W))
        assert brackets[index] == pytest.approx(plus - minus, abs=64 * np.finfo(float).eps)


@pytest.mark.parametrize("name", builtin_model_names())
@pytest.mark.parametrize("method", ["central", "five-point", "forward"])
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_gathered_and_black_box_agree(name: str, method: str, seed: int) -> None:
    """Per entry, the numerical derivatives of the three paths agree within their own error
    estimates, and their verdicts on a correct gradient are the same: pass."""
    X, W = inputs(seed)
    model = builtin_model(name)
    dense = run_check(Target.of(model, xw(X, W)), CheckSettings(method=method, details="all"))
    some = {"X": np.arange(0, X.size, 3), "W": np.arange(1, W.size, 2)}
    gathered = run_check(
        Target.of(model, xw(X, W)), CheckSettings(method=method, details="all"), selections=some
    )
    black_box = run_check(
        Target.of(model, xw(X, W)), CheckSettings(method=method, details="all"), structured=False
    )
    assert dense.passed
    assert gathered.passed
    assert black_box.passed
    by_entry = {(c.wrt, c.index): c for c in dense.checks}
    for other in (gathered, black_box):
        for check in other.checks:
            mine = by_entry[(check.wrt, check.index)]
            assert check.analytic == mine.analytic
            bound = SAFETY * (check.error_estimate + mine.error_estimate)
            assert abs(check.numerical - mine.numerical) <= bound, (check, mine)


SMOOTH = [n for n in builtin_model_names() if n.split("-")[0] in ("sigmoid", "tanh")]


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("wrt", ["X", "W"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("step", [1e-3, 1e-2, 0.1, 0.5, 2.0])
def test_truncation_bound_bounds_the_truncation(
    name: str, wrt: Wrt, seed: int, step: float
) -> None:
    """|D(h) - f'| <= kernels.truncation_bound for every entry, from steps in the asymptotic
    range to steps far beyond it (where Taylor's leading term alone would not bound it)."""
    model = builtin_model(name)
    X, W = inputs(seed)
    G = X @ W
    target = X if wrt == "X" else W
    steps = np.full(target.shape, step)
    numerical = kernels.central_brackets(model, X, W, G, wrt, steps) / (2 * steps)
    exact = dict(zip(("X", "W"), gradient_pair(model, X, W), strict=True))[wrt]
    bound = kernels.truncation_bound(model, X, W, G, wrt, steps)
    rounding = 1e-13 * (1.0 + np.abs(exact))  # D(h) itself is computed in float64
    assert np.all(np.abs(numerical - exact) <= bound + rounding)


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("wrt", ["X", "W"])
def test_truncation_bound_is_tight_for_small_steps(name: str, wrt: Wrt) -> None:
    """At h = 1e-3 the bound is the truncation to leading order: within 5% of |D(h) - f'| for
    the typical entry (a bound far above the error would let a wrong gradient through)."""
    model = builtin_model(name)
    X, W = inputs(3)
    G = X @ W
    target = X if wrt == "X" else W
    steps = np.full(target.shape, 1e-3)
    numerical = kernels.central_brackets(model, X, W, G, wrt, steps) / (2 * steps)
    exact = dict(zip(("X", "W"), gradient_pair(model, X, W), strict=True))[wrt]
    bound = kernels.truncation_bound(model, X, W, G, wrt, steps)
    ratio = bound / np.abs(numerical - exact)
    assert np.all(ratio >= 1.0)
    assert np.median(ratio) < 1.05


def test_truncation_bound_shrinks_where_sigmoid_saturates() -> None:
    """At X @ W = 40 the global sup of sigmoid'''' (0.19) would dwarf sigmoid' ~ 4e-18; the
    exponential bound keeps the truncation bound far below the gradient it vouches for."""
    model = builtin_model("sigmoid-sum")
    X = np.array([[10.0, 10.0]])
    W = np.array([[2.0], [2.0]])
    steps = np.full(X.shape, 2.0**-14)
    bound = kernels.truncation_bound(model, X, W, X @ W, "X", steps)
    gradient = gradient_pair(model, X, W)[0]
    assert np.all(gradient > 0)
    assert np.all(bound < 1e-6 * gradient)
