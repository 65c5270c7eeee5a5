"""The built-in models: activations, their stable derivatives, closed-form gradients (models.py).

The references here are written out independently of estimates.py: whole forward passes,
one entry at a time, central differences and complex-step.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import examples, gradient_pair, xw
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import (
    ACTIVATIONS,
    Array,
    ElementwiseModel,
    Model,
    Wrt,
    builtin_model,
    builtin_model_names,
)
from gradcheck_cli.subject.seed import seed_matrices

FloatArray = NDArray[np.float64]
NAMES = builtin_model_names()
ANALYTIC = [name for name in NAMES if builtin_model(name).complex_analytic]
CENTRAL_STEP = 1e-6
COMPLEX_STEP = 1e-20


def random_inputs(seed: int) -> tuple[FloatArray, FloatArray]:
    """X (n, k) and W (k, m) ~ N(0, 1) with n, k, m in 1..12, from a seeded generator."""
    rng = np.random.default_rng(seed)
    n, k, m = (int(s) for s in rng.integers(1, 13, size=3))
    return rng.standard_normal((n, k)), rng.standard_normal((k, m))


def cases() -> list[tuple[FloatArray, FloatArray]]:
    return [seed_matrices(), *(random_inputs(seed) for seed in range(6))]


def entrywise(
    model: Model, X: FloatArray, W: FloatArray, derivative: str
) -> tuple[FloatArray, FloatArray]:
    """dF/dX and dF/dW by whole forward passes: central differences or complex-step."""
    grads = []
    for which in (0, 1):
        kind = np.complex128 if derivative == "complex-step" else np.float64
        args = [X.astype(kind), W.astype(kind)]
        grad = np.zeros(args[which].shape)
        for index in np.ndindex(grad.shape):
            base = args[which][index]
            if derivative == "complex-step":
                args[which][index] = base + 1j * COMPLEX_STEP
                grad[index] = np.imag(model.value(xw(args[0], args[1]))) / COMPLEX_STEP
            else:
                args[which][index] = base + CENTRAL_STEP
                up = np.real(model.value(xw(args[0], args[1])))
                args[which][index] = base - CENTRAL_STEP
                down = np.real(model.value(xw(args[0], args[1])))
                grad[index] = (up - down) / (2 * CENTRAL_STEP)
            args[which][index] = base
        grads.append(grad)
    return grads[0], grads[1]


def relative_gap(a: tuple[Array, Array], b: tuple[Array, Array]) -> float:
    scale = max(float(np.max(np.abs(g), initial=0.0)) for g in b) or 1.0
    return max(float(np.max(np.abs(x - y), initial=0.0)) for x, y in zip(a, b, strict=True)) / scale


def test_builtin_names_resolve() -> None:
    """Every activation-reduction pair is a model named after itself; others are refused."""
    assert len(NAMES) == len(ACTIVATIONS) * 2
    for name in NAMES:
        assert builtin_model(name).name == name
    with pytest.raises(InputError, match="unknown model 'gelu-sum'"):
        builtin_model("gelu-sum")


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_central_differences(name: str) -> None:
    """The closed-form gradient agrees with central differences of whole forward passes."""
    model = builtin_model(name)
    for X, W in cases():
        if model.kinks:
            # Entries within the step of a kink would measure the kink, not the gradient.
            assert np.min(np.abs(X @ W)) > 1e-3
        assert relative_gap(gradient_pair(model, X, W), entrywise(model, X, W, "central")) < 1e-8


@pytest.mark.parametrize("name", ANALYTIC)
def test_gradient_matches_complex_step(name: str) -> None:
    """For the complex-analytic models, the gradient agrees with complex-step to a few ulps."""
    model = builtin_model(name)
    for X, W in cases():
        gradient = gradient_pair(model, X, W)
        assert relative_gap(gradient, entrywise(model, X, W, "complex-step")) < 1e-14


def test_relu_is_not_complex_analytic() -> None:
    """relu has a kink at 0 and says so: no complex-step, and its kink is listed."""
    relu = builtin_model("relu-sum")
    assert not relu.complex_analytic
    assert relu.kinks == (0.0,)


@pytest.mark.parametrize("name", [a for a in ACTIVATIONS if ACTIVATIONS[a].complex_analytic])
def test_stable_derivatives_match_complex_step(name: str) -> None:
    """Each activation's derivative formula keeps full relative accuracy deep into saturation."""
    activation = ACTIVATIONS[name]
    z = np.linspace(-30.0, 30.0, 121)
    reference = np.imag(activation.function(z + 1j * COMPLEX_STEP)) / COMPLEX_STEP
    np.testing.assert_allclose(activation.derivative(z), reference, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_value_and_gradient_finite_at_extremes(name: str, dtype: str) -> None:
    """At X @ W entries of +-1e3 and +-1e5, value and gradient are finite, with no warnings."""
    model = builtin_model(name)
    X = np.eye(2, dtype=dtype)
    W = np.array([[1e3, -1e3], [1e5, -1e5]], dtype=dtype)  # X @ W == W
    assert np.isfinite(model.value(xw(X, W)))
    assert all(np.all(np.isfinite(g)) for g in gradient_pair(model, X, W))
    if model.complex_analytic:
        moved = X.astype(np.result_type(dtype, np.complex64)) + 1e-20j
        assert np.isfinite(model.value(xw(moved, W)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_activation_limits_are_exact(dtype: str) -> None:
    """Far out, the stable forms give the exact limits: no overflow, no NaN, no warnings."""
    z = np.array([-1e5, -1e3, 1e3, 1e5], dtype=dtype)
    expected = {
        "sigmoid": ([0, 0, 1, 1], [0, 0, 0, 0]),
        "tanh": ([-1, -1, 1, 1], [0, 0, 0, 0]),
        "softplus": ([0, 0, 1e3, 1e5], [0, 0, 1, 1]),
        "relu": ([0, 0, 1e3, 1e5], [0, 0, 1, 1]),
        "identity": (z, [1, 1, 1, 1]),
    }
    for name, (values, slopes) in expected.items():
        activation = ACTIVATIONS[name]
        np.testing.assert_array_equal(activation.function(z), np.asarray(values, dtype=dtype))
        np.testing.assert_array_equal(activation.derivative(z), np.asarray(slopes, dtype=dtype))


@pytest.mark.parametrize("name", NAMES)
def test_entry_shift_differences_match_whole_forward_passes(name: str) -> None:
    """The touched-row/column shortcut gives the same differences as two whole forward passes."""
    model = builtin_model(name)
    X, W = random_inputs(11)
    G = X @ W
    f0 = model.value(xw(X, W))
    shifts = np.array([[1e-3, -2e-3], [0.5, -0.25]])
    pairs: list[tuple[Wrt, FloatArray]] = [("X", X), ("W", W)]
    for wrt, target in pairs:
        rows = np.array([0, target.shape[0] - 1])
        cols = np.array([target.shape[1] - 1, 0])
        diffs, values, terms = model.entry_shift_differences(X, W, G, wrt, rows, cols, shifts)
        for b, (i, j) in enumerate(zip(rows, cols, strict=True)):
            for k in range(shifts.shape[1]):
                moved = target.copy()
                moved[i, j] += shifts[b, k]
                f = model.value(xw(moved, W) if wrt == "X" else xw(X, moved))
                assert diffs[b, k] == pytest.approx(np.real(f) - np.real(f0), abs=1e-12)
        assert np.all(values >= 0)
        assert np.all(terms >= 0)


def test_kink_within_sees_only_a_kink_in_reach() -> None:
    """relu's kink counts where a touched pre-activation lies within the reach, and only there."""
    model = builtin_model("relu-sum")
    X = np.array([[1.0, -1.0, 0.5], [1.0, 1.0, 1.0]])
    W = np.array([[1.0, 0.5], [2.0, 0.5], [2.0, 0.5]])  # X @ W == [[0, 0.25], [5, 1.5]]
    G = X @ W
    rows, cols = np.array([0, 1]), np.array([0, 0])
    near = model.kink_within(X, W, G, "X", rows, cols, np.array([1e-8, 1e-8]))
    np.testing.assert_array_equal(near, [True, False])
    far = model.kink_within(X, W, G, "X", rows, cols, np.array([1e-8, 10.0]))
    np.testing.assert_array_equal(far, [True, True])
    smooth = builtin_model("sigmoid-sum")
    assert not smooth.kink_within(X, W, G, "X", rows, cols, np.array([1.0, 1.0])).any()


@settings(max_examples=examples(40), deadline=None)
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 12),
    m=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(ANALYTIC),
)
def test_any_shape_gradient_matches_complex_step(
    n: int, k: int, m: int, seed: int, name: str
) -> None:
    """For any shapes up to 12, the gradient has the inputs' shapes and matches complex-step."""
    rng = np.random.default_rng(seed)
    X, W = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    model = builtin_model(name)
    dX, dW = gradient_pair(model, X, W)
    assert dX.shape == X.shape
    assert dW.shape == W.shape
    assert relative_gap((dX, dW), entrywise(model, X, W, "complex-step")) < 1e-14


def test_elementwise_model_is_a_model() -> None:
    """Built-in models satisfy the Model protocol the checks accept."""
    assert isinstance(builtin_model("tanh-mean"), ElementwiseModel)
    assert isinstance(builtin_model("tanh-mean"), Model)
