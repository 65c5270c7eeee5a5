"""The layer and loss conventions of model files (`--model layers.py:NAME`), CS231n style:
NAME_forward(...) -> (out, cache) with NAME_backward(dout, cache), several outputs, a scalar
loss layer, and NAME(...) -> (loss, gradients)."""

from __future__ import annotations

import textwrap
import types
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from helpers import central_differences, supplied
from numpy.typing import NDArray

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.numerics.models import Array, ContractedModel, Model
from gradcheck_cli.report import RunReport
from gradcheck_cli.subject.binding import Bound, FileModel, bind
from gradcheck_cli.subject.files import load_model_file

FloatArray = NDArray[np.float64]
Forward = Callable[[Mapping[str, Array]], float]

LAYERS = '''
"""Layers as a course's layers.py writes them."""

import numpy as np

douts = []  # every dout that sum_squares_backward received


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = np.sum(dout, axis=0)
    return dx, dw, db


def affine_db_bug_forward(x, w, b):
    return affine_forward(x, w, b)


def affine_db_bug_backward(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, 0.99 * db


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    dx, x = dout, cache
    dx[x <= 0] = 0  # writes into dout, as course code often does
    return dx


def scale_forward(x, w):
    return x * w, (x, w)


def scale_backward(dout, cache):
    x, w = cache
    x *= dout  # dw = x * dout, computed in the buffer of the x it kept
    return dout * w, x


def halfway_forward(x):  # no halfway_backward yet
    return x, None


def sum_squares_forward(x):
    return float(np.sum(x ** 2)), x


def sum_squares_backward(dout, cache):
    douts.append(dout)
    return 2.0 * cache * dout


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tc ** 2)
    da = np.hstack([
        dc * g * i * (1 - i),
        dc * prev_c * f * (1 - f),
        dnext_h * tc * o * (1 - o),
        dc * i * (1 - g ** 2),
    ])
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, np.sum(da, axis=0)


def lstm_prev_c_bug_forward(x, prev_h, prev_c, Wx, Wh, b):
    return lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)


def lstm_prev_c_bug_backward(dnext_h, dnext_c, cache):
    dx, dprev_h, dprev_c, dWx, dWh, db = lstm_step_backward(dnext_h, dnext_c, cache)
    f = cache[6]
    return dx, dprev_h, dprev_c / f, dWx, dWh, db  # d(prev_c) forgets the forget gate


def softmax_loss(x, y):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    n = x.shape[0]
    loss = -np.mean(log_probs[np.arange(n), y])
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    return loss, dx / n


def softmax_loss_unscaled(x, y):
    loss, dx = softmax_loss(x, y)
    return loss, dx * x.shape[0]  # forgets the 1/N of the mean
'''

BATCHNORM = """
import numpy as np


def example_inputs():
    rng = np.random.default_rng(5)
    return {
        "x": rng.standard_normal((6, 3)),
        "gamma": rng.standard_normal(3),
        "beta": rng.standard_normal(3),
        "bn_param": {"mode": "train", "eps": 1e-5},
    }


def batchnorm_forward(x, gamma, beta, bn_param):
    var = np.var(x, axis=0) + bn_param["eps"]
    xhat = (x - np.mean(x, axis=0)) / np.sqrt(var)
    return gamma * xhat + beta, (xhat, gamma, var)


def batchnorm_backward(dout, cache):
    xhat, gamma, var = cache
    dxhat = dout * gamma
    dx = (dxhat - np.mean(dxhat, axis=0) - xhat * np.mean(dxhat * xhat, axis=0)) / np.sqrt(var)
    return dx, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)
"""


@pytest.fixture
def layers(tmp_path: Path) -> Path:
    path = tmp_path / "layers.py"
    path.write_text(textwrap.dedent(LAYERS).lstrip("\n"))
    return path


def bind_layer(path: Path, name: str, inputs: Mapping[str, Array]) -> Bound:
    return bind(load_model_file(path, name), supplied(**inputs))


def check(bound: Bound) -> RunReport:
    return run_check(Target(tuple(bound.models), bound.inputs, sources=bound.sources))


def contracted_layer(bound: Bound, vectors: tuple[Array, ...]) -> Forward:
    """<outputs, v> straight from the user's NAME_forward (its outputs, then its cache)."""

    def f(inputs: Mapping[str, Array]) -> float:
        result = bound.model_file.forward(**inputs, **bound.params)
        assert isinstance(result, tuple)
        outputs = result[:-1]
        return float(sum(np.sum(np.asarray(o) * v) for o, v in zip(outputs, vectors, strict=True)))

    return f


def vectors_of(model: Model) -> tuple[Array, ...]:
    assert isinstance(model, ContractedModel)
    return model.vectors


def assert_gradients_match(bound: Bound) -> None:
    """Every model's gradient equals central differences of its contraction, for every input."""
    for model in bound.models:
        gradients = model.gradient(bound.inputs)
        fd = central_differences(contracted_layer(bound, vectors_of(model)), bound.inputs)
        assert set(fd) == {n for n, g in gradients.items() if g is not None}
        for name, expected in fd.items():
            gradient = gradients[name]
            assert gradient is not None
            np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-8)


@pytest.fixture
def affine_inputs() -> dict[str, Array]:
    """A 3-D x (flattened per row by the layer), a 2-D w and a 1-D b."""
    rng = np.random.default_rng(6)
    return {
        "x": rng.standard_normal((4, 2, 3)),
        "w": rng.standard_normal((6, 5)),
        "b": rng.standard_normal(5),
    }


@pytest.fixture
def lstm_inputs() -> dict[str, Array]:
    rng = np.random.default_rng(7)
    N, D, H = 3, 4, 5
    return {
        "x": rng.standard_normal((N, D)),
        "prev_h": rng.standard_normal((N, H)),
        "prev_c": rng.standard_normal((N, H)),
        "Wx": 0.5 * rng.standard_normal((D, 4 * H)),
        "Wh": 0.5 * rng.standard_normal((H, 4 * H)),
        "b": rng.standard_normal(4 * H),
    }


# --- picking a layer -------------------------------------------------------------------------


def test_a_layer_name_picks_its_forward_and_backward(layers: Path) -> None:
    """`layers.py:affine` takes affine_forward and affine_backward, and is labelled so."""
    model_file = load_model_file(layers, "affine")
    assert model_file.convention == "layer"
    assert model_file.name == "affine"
    assert model_file.label == "layers.py:affine"
    assert model_file.formula == "affine_forward(...) from layers.py"
    assert getattr(model_file.forward, "__name__", None) == "affine_forward"
    assert getattr(model_file.backward, "__name__", None) == "affine_backward"


@pytest.mark.parametrize(
    ("name", "missing"), [("conv", "conv_forward"), ("halfway", "halfway_backward")]
)
def test_an_unknown_layer_lists_the_layers_the_file_defines(
    layers: Path, name: str, missing: str
) -> None:
    """A NAME the file does not define as a layer (halfway has a forward only) is refused,
    listing the layers it does define."""
    with pytest.raises(UserCodeError) as info:
        load_model_file(layers, name)
    assert str(info.value) == (
        f"layers.py: no {missing}; --model layers.py:{name} takes {name}_forward and "
        f"{name}_backward (a layer), a class {name}, or {name} returning (loss, gradients); the "
        "layers it defines are affine, affine_db_bug, relu, scale, sum_squares, lstm_step, "
        "lstm_prev_c_bug"
    )


def test_a_layers_file_without_a_name_points_at_its_layers(layers: Path) -> None:
    """`--model layers.py` alone: no forward/backward, and the message names the layers."""
    with pytest.raises(UserCodeError) as info:
        load_model_file(layers)
    assert str(info.value) == (
        "layers.py: no forward and no backward; a model file defines forward(X, W) and "
        "backward(X, W), or backward(X, W, grad_output) when forward returns an array; or name "
        "a layer of this file: affine, affine_db_bug, relu, scale, sum_squares, lstm_step, "
        "lstm_prev_c_bug (--model layers.py:NAME)"
    )


# --- one output ------------------------------------------------------------------------------


def test_affine_layer_vjp_matches_central_differences(
    layers: Path, affine_inputs: dict[str, Array]
) -> None:
    """The affine layer's backward(dout, cache), for each seeded random dout, is the gradient of
    <out, dout> in x (3-D), w and b."""
    bound = bind_layer(layers, "affine", affine_inputs)
    assert bound.output_shape == (4, 5)
    assert len(bound.models) == 2
    for model in bound.models:
        (v,) = vectors_of(model)
        assert v.shape == (4, 5)
    assert_gradients_match(bound)


def test_affine_layer_passes_and_a_db_bug_fails_only_in_b(
    layers: Path, affine_inputs: dict[str, Array]
) -> None:
    """The correct layer passes; the one whose db is 0.99x right fails in every entry of b
    and in no entry of x or w."""
    assert check(bind_layer(layers, "affine", affine_inputs)).passed
    report = check(bind_layer(layers, "affine_db_bug", affine_inputs))
    assert not report.passed
    assert {n: (s.entries, s.failed) for n, s in report.summary.items()} == {
        "x": (24, 0),
        "w": (30, 0),
        "b": (5, 5),
    }
    assert {c.wrt for c in report.checks if not c.passed} == {"b"}


def test_a_scalar_loss_layer_gets_dout_one(layers: Path) -> None:
    """A layer whose output is a number (a loss) is checked as a scalar: backward gets
    dout = 1.0 exactly, and its gradient is the loss's."""
    x = np.random.default_rng(8).standard_normal((3, 4))
    model_file = load_model_file(layers, "sum_squares")
    bound = bind(model_file, supplied(x=x))
    assert bound.output_shape is None
    (model,) = bound.models
    assert isinstance(model, FileModel)
    assert model.value(bound.inputs) == pytest.approx(float(np.sum(x**2)), rel=1e-15)
    gradient = model.gradient(bound.inputs)["x"]
    np.testing.assert_array_equal(gradient, 2.0 * x)
    assert check(bound).passed
    forward = model_file.forward
    assert isinstance(forward, types.FunctionType)
    douts = forward.__globals__["douts"]
    assert douts
    assert all(np.shape(d) == () and float(d) == 1.0 for d in douts)


def test_a_layer_backward_writing_into_dout_still_works(layers: Path) -> None:
    """relu_backward zeroes entries of dout in place (`dx = dout; dx[x <= 0] = 0`): the call
    falls back to a copy, the check passes and the cotangents stay as drawn."""
    x = np.random.default_rng(9).standard_normal((4, 3))
    bound = bind_layer(layers, "relu", {"x": x})
    drawn = [vectors_of(m)[0].copy() for m in bound.models]
    for model in bound.models:
        (v,) = vectors_of(model)
        np.testing.assert_array_equal(model.gradient(bound.inputs)["x"], np.where(x > 0, v, 0.0))
    assert check(bound).passed
    for model, v0 in zip(bound.models, drawn, strict=True):
        np.testing.assert_array_equal(vectors_of(model)[0], v0)
    np.testing.assert_array_equal(bound.inputs["x"], x)


def test_a_layer_backward_writing_into_an_input_it_cached_still_works(layers: Path) -> None:
    """scale_backward computes dw in the buffer of the x that forward put in its cache
    (`x *= dout`): x is forward's own argument, so the call falls back to copies like any
    other write into an argument; the check passes and no array of the check changes."""
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    x0, w0 = x.copy(), w.copy()
    bound = bind_layer(layers, "scale", {"x": x, "w": w})
    for model in bound.models:
        (v,) = vectors_of(model)
        gradients = model.gradient(bound.inputs)
        np.testing.assert_array_equal(gradients["x"], v * w)
        np.testing.assert_array_equal(gradients["w"], x * v)
    assert check(bound).passed
    for name, array in (("x", x0), ("w", w0)):
        np.testing.assert_array_equal(bound.inputs[name], array)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


# --- several outputs -------------------------------------------------------------------------


def test_an_lstm_step_with_two_outputs_is_checked_through_both(
    layers: Path, lstm_inputs: dict[str, Array]
) -> None:
    """(next_h, next_c, cache) with backward(dnext_h, dnext_c, cache): one cotangent per
    output, and each of the six inputs' gradients is that of <next_h, v_h> + <next_c, v_c>."""
    bound = bind_layer(layers, "lstm_step", lstm_inputs)
    assert bound.output_shape == ((3, 5), (3, 5))
    for model in bound.models:
        assert [v.shape for v in vectors_of(model)] == [(3, 5), (3, 5)]
    assert_gradients_match(bound)
    report = check(bound)
    assert report.passed
    assert list(report.summary) == ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]


def test_an_lstm_bug_in_prev_c_fails_only_prev_c(
    layers: Path, lstm_inputs: dict[str, Array]
) -> None:
    """d(prev_c) without the forget gate: every entry of prev_c fails, no other input's does."""
    report = check(bind_layer(layers, "lstm_prev_c_bug", lstm_inputs))
    assert not report.passed
    assert {n: s.failed for n, s in report.summary.items()} == {
        "x": 0,
        "prev_h": 0,
        "prev_c": 15,
        "Wx": 0,
        "Wh": 0,
        "b": 0,
    }


# --- the loss convention ---------------------------------------------------------------------


@pytest.fixture
def scores() -> tuple[FloatArray, NDArray[np.int64]]:
    rng = np.random.default_rng(10)
    return rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])


def test_a_loss_function_returning_loss_and_gradient(
    layers: Path, scores: tuple[FloatArray, NDArray[np.int64]]
) -> None:
    """`layers.py:softmax_loss` (no softmax_loss_forward): f is the loss, the gradient the
    second element; the integer labels are a constant."""
    x, y = scores
    model_file = load_model_file(layers, "softmax_loss")
    assert model_file.convention == "loss"
    assert model_file.backward is None
    assert model_file.label == "layers.py:softmax_loss"
    assert model_file.formula == "softmax_loss(...)[0] from layers.py"
    bound = bind(model_file, supplied(x=x, y=y))
    (model,) = bound.models
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert model.value(bound.inputs) == pytest.approx(-np.mean(log_probs[np.arange(4), y]))
    gradients = model.gradient(bound.inputs)
    assert gradients["y"] is None

    def loss(inputs: Mapping[str, Array]) -> float:
        result = model_file.forward(**inputs)
        assert isinstance(result, tuple)
        return float(result[0])

    dx = gradients["x"]
    assert dx is not None
    np.testing.assert_allclose(
        dx, central_differences(loss, bound.inputs)["x"], rtol=1e-6, atol=1e-8
    )
    report = check(bound)
    assert report.passed
    assert (report.inputs["y"].checked, report.inputs["y"].why) == (
        False,
        "constant: an integer array",
    )


def test_a_loss_function_with_a_wrong_gradient_fails(
    layers: Path, scores: tuple[FloatArray, NDArray[np.int64]]
) -> None:
    """The gradient N times too large (the mean's 1/N forgotten) fails in every entry."""
    x, y = scores
    report = check(bind(load_model_file(layers, "softmax_loss_unscaled"), supplied(x=x, y=y)))
    assert not report.passed
    assert report.summary["x"].failed == 12


# --- parameters ------------------------------------------------------------------------------


def test_a_layer_parameter_comes_from_example_inputs_or_params(tmp_path: Path) -> None:
    """batchnorm_forward(x, gamma, beta, bn_param): example_inputs() gives the arrays and the
    bn_param dict (a parameter, not an input), so the layer checks alone; params replace it."""
    path = tmp_path / "batchnorm.py"
    path.write_text(textwrap.dedent(BATCHNORM).lstrip("\n"))
    model_file = load_model_file(path, "batchnorm")
    bound = bind(model_file, {})
    assert list(bound.inputs) == ["x", "gamma", "beta"]
    assert bound.params == {"bn_param": {"mode": "train", "eps": 1e-5}}
    assert bound.output_shape == (6, 3)
    assert_gradients_match(bound)
    assert check(bound).passed
    wider = bind(model_file, {}, params={"bn_param": {"mode": "train", "eps": 0.5}})
    assert wider.params == {"bn_param": {"mode": "train", "eps": 0.5}}
    assert check(wider).passed
    x = wider.inputs["x"]
    out = wider.models[0].value(wider.inputs)
    xhat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 0.5)
    (v,) = vectors_of(wider.models[0])
    gamma, beta = wider.inputs["gamma"], wider.inputs["beta"]
    assert out == pytest.approx(float(np.sum((gamma * xhat + beta) * v)), rel=1e-13)
