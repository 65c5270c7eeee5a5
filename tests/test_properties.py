"""Properties that hold for any input, found by hypothesis rather than picked by hand.

- every built-in model's analytic gradient agrees with finite differences within the error
  estimate the check itself reports, for any finite X, W in a sane range and any small shapes;
- CSV (written by np.savetxt with %.17g) and NPY files load back bit for bit;
- no file content and no option value makes the CLI exit with anything but 0, 1 or 2, or print
  a traceback.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import examples, xw
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.models import builtin_model, builtin_model_names
from gradcheck_cli.settings import CheckSettings
from gradcheck_cli.subject.arrays.loading import load_array

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


# --- gradients agree within the reported estimate ---------------------------------------------


def methods_for(model_name: str) -> list[str]:
    """central always; complex-step too where the model is complex-analytic."""
    model = builtin_model(model_name)
    return ["central", "complex-step"] if model.complex_analytic else ["central"]


MODEL_METHODS = [
    pytest.param(name, method, id=f"{name}-{method}")
    for name in builtin_model_names()
    for method in methods_for(name)
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


# --- files written by numpy load back bit for bit ---------------------------------------------


@PROPERTY_SETTINGS
@given(
    matrix=arrays(
        np.float64,
        st.tuples(SIDE, SIDE),
        elements=st.floats(allow_nan=False, allow_infinity=False),
    ),
    fmt=st.sampled_from(["csv", "npy"]),
)
def test_numpy_files_load_back_bit_for_bit(matrix: NDArray[np.float64], fmt: str) -> None:
    """Any finite float64 matrix (subnormals and -0.0 included) survives the round trip exactly."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"m.{fmt}"
        if fmt == "csv":
            np.savetxt(path, matrix, fmt="%.17g", delimiter=",")
        else:
            np.save(path, matrix)
        loaded = load_array(str(path), option="--x").array
    assert loaded.dtype == np.float64
    assert loaded.shape == matrix.shape
    assert loaded.tobytes() == matrix.tobytes()
