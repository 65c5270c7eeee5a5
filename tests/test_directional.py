"""The directional estimates fast mode and the tangent checks judge by, pinned to the last bit:
steps, estimates, tolerances, one-sided slopes and reasons across a kink, in float32, by
complex-step, with f NaN a few steps away. Both checks share one estimator, so any change to
it changes their verdicts at once; a change here must be deliberate, and the pinned numbers
say exactly what moved."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from gradcheck_cli.checks.fast import fast_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.directional import (
    FIVE_POINT,
    STENCILS,
    directional_estimates,
    moved_inputs,
)
from gradcheck_cli.numerics.models import Array, Gradients, Inputs, builtin_model
from gradcheck_cli.numerics.schemes import SCHEMES, Precision, default_steps
from gradcheck_cli.report import RunReport
from gradcheck_cli.settings import CheckSettings

Matrix = NDArray[np.float64]
Row = tuple[str, bool, float, float, float, float]
"""(reason, passed, numerical, error_estimate, tolerance, step) of one direction."""

NAN = float("nan")


def blocks(n: int, k: int, m: int, seed: int) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {"X": rng.standard_normal((n, k)) / 4, "W": rng.standard_normal((k, m)) / 4}


def kinked() -> dict[str, Array]:
    """relu-sum's inputs with one pre-activation 2e-7 above its kink (as in test_fast)."""
    xw = blocks(8, 6, 4, 5)
    X, W = xw["X"], xw["W"]
    X[0, 0] += (2e-7 - (X @ W)[0, 0]) / W[0, 0]
    return xw


class Scaled:
    """A built-in model whose gradient is off by `factor` at X[0, 0]."""

    complex_analytic = False

    def __init__(self, name: str, factor: float) -> None:
        self.inner = builtin_model(name)
        self.name, self.formula, self.factor = f"scaled-{name}", self.inner.formula, factor

    def value(self, inputs: Inputs) -> float | complex:
        return self.inner.value(inputs)

    def gradient(self, inputs: Inputs) -> Gradients:
        out: Gradients = {}
        for key, grad in self.inner.gradient(inputs).items():
            assert grad is not None
            grad = grad.copy()
            if key == "X":
                grad[0, 0] *= self.factor
            out[key] = grad
        return out


class Fenced:
    """tanh-sum, NaN once any entry moves further than `fence` from where it started."""

    complex_analytic = False

    def __init__(self, start: Mapping[str, Array], fence: float) -> None:
        self.inner = builtin_model("tanh-sum")
        self.name, self.formula = "fenced", self.inner.formula
        self.start, self.fence = start, fence

    def value(self, inputs: Inputs) -> float | complex:
        far = max(float(np.max(np.abs(inputs[k] - self.start[k]))) for k in ("X", "W"))
        return NAN if far > self.fence else self.inner.value(inputs)

    def gradient(self, inputs: Inputs) -> Gradients:
        return self.inner.gradient(inputs)


def fenced_at_two_and_a_half_steps() -> tuple[Fenced, dict[str, Array]]:
    """f is NaN at x +- 3h v of the first direction, finite at +- h and +- 2h."""
    xw = blocks(6, 5, 4, 4)
    eps = float(np.finfo(np.float64).eps)
    f0 = float(np.real(builtin_model("tanh-sum").value(xw)))
    x_max = max(float(np.max(np.abs(a))) for a in xw.values())
    h = float(default_steps(FIVE_POINT, np.asarray([x_max]), eps, magnitude=abs(f0))[0])
    return Fenced({k: v.copy() for k, v in xw.items()}, 2.5 * h), xw


def rows(report: RunReport) -> list[Row]:
    return [
        (d.reason, d.passed, d.numerical, d.error_estimate, d.tolerance, d.step)
        for d in report.directions
    ]


def same(found: Sequence[object], pinned: Sequence[object]) -> bool:
    """Equal to the last bit, NaN equal to NaN."""
    return len(found) == len(pinned) and all(
        (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        or a == b
        for a, b in zip(found, pinned, strict=True)
    )


def fast_kink() -> RunReport:
    return fast_check(
        Target.of(builtin_model("relu-sum"), kinked()), CheckSettings(mode="fast", seed=0)
    )


def fast_kink_wrong() -> RunReport:
    return fast_check(
        Target.of(Scaled("relu-sum", 3.0), kinked()), CheckSettings(mode="fast", seed=1)
    )


def fast_float32_noise() -> RunReport:
    xw32 = {k: v.astype(np.float32) for k, v in blocks(10, 7, 5, 2).items()}
    return fast_check(
        Target((Scaled("tanh-sum", 1.01),), xw32, precision=Precision(noise=1e-6)),
        CheckSettings(mode="fast", seed=2),
    )


def fast_complex_step() -> RunReport:
    return fast_check(
        Target.of(builtin_model("sigmoid-sum"), blocks(6, 5, 4, 3)),
        CheckSettings(mode="fast", method="complex-step"),
    )


def fast_nan_at_3h() -> RunReport:
    model, xw = fenced_at_two_and_a_half_steps()
    return fast_check(Target.of(model, xw), CheckSettings(mode="fast", seed=4, directions=2))


FAST_PINNED = [
    (
        fast_kink,
        [
            ("kink", True, -0.6272187159488339, 2.81783142071897e-05, 0.04949848851099556,
             0.00021001066107430283),
            ("kink", True, 2.3047426404114773, 4.0864278695527865e-05, 0.0473382025681483,
             0.00020643488927753152),
            ("kink", True, -3.8648738327913086, 2.2493107409189144e-05, 0.04946230669976476,
             0.00020360043307096184),
            ("kink", True, 0.25056994607779143, 3.295444693980066e-06, 0.017876991362562634,
             0.00015718876645902692),
        ],
    ),
    (
        fast_kink_wrong,
        [
            ("kink-mismatch", False, 1.6913972388669356, 3.411849702323361e-05,
             0.014276450020507935, 0.00018010032736445563),
            ("kink-mismatch", False, -0.8632836952545108, 3.0731671062612286e-05,
             0.00921949916540278, 0.00021693152480204998),
            ("kink", True, -2.5474886841383984, 3.478730635875052e-05, 0.010436189502592057,
             0.00019164082917014994),
        ],
    ),
    (
        fast_float32_noise,
        [
            ("ok", True, -3.170698412314575, 0.00015019610273917365, 0.0017222279127021925,
             0.012799679496930528),
            ("mismatch", False, -1.0154688549631596, 0.00014895827648003508,
             0.0017327693005691834, 0.01271702093541968),
            ("ok", True, 3.3580475006156454, 0.0001730110618806747, 0.0018519024986105108,
             0.010981692790829242),
        ],
    ),
    (
        fast_complex_step,
        [
            ("ok", True, 0.658558323069776, 5.849172906644782e-16, 7.019725721043529e-14,
             4.301018338801722e-21),
            ("ok", True, -1.3320792668791446, 1.18312405817202e-15, 9.434722169223531e-14,
             4.538214277062992e-21),
        ],
    ),
    (
        fast_nan_at_3h,
        [
            ("mismatch", False, -2.479689072525112, NAN, NAN, 0.00021675098201601016),
            ("mismatch", False, -1.3141530611579453, NAN, NAN, 0.00023744367098897155),
        ],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("check", "pinned"), FAST_PINNED, ids=[c.__name__ for c, _ in FAST_PINNED])
def test_fast_mode_directions_give_the_pinned_numbers(
    check: Callable[[], RunReport], pinned: list[Row]
) -> None:
    """Fast mode's first directions, across a kink (right and wrong gradients), in float32 with
    --nondet-tol, by complex-step, and with f NaN at x +- 3h v: reason, verdict, derivative,
    error estimate, tolerance and step, to the last bit."""
    found = rows(check())[: len(pinned)]
    assert len(found) == len(pinned)
    assert all(same(f, p) for f, p in zip(found, pinned, strict=True)), found


def cubic_with_a_kink(at: Mapping[str, Matrix]) -> dict[str, Matrix]:
    return {"g": np.abs(at["x"] - 0.5) + at["x"] ** 3, "h": np.tanh(3 * at["x"])}


TANGENT_PINNED = {
    ("float64", 1e-9): (
        7.62939453125e-06,
        {
            "numerical": [0.7500000000582077, -1.84375, 3.25, -1.9999999995343387, -21.0],
            "truncation": [5.820766091346741e-11, 9.701276818911234e-12, 0.0,
                           4.656612873077393e-10, 3.8805107275644936e-11],
            "roundoff": [0.00013107543428996367, 0.0001310754342909351, 0.0001310754342921841,
                         0.0001310754342910739, 0.00013107543430794928],
            "one_sided_gap": [2.0000228881835938, 1.430511474609375e-05, 5.7220458984375e-06,
                              0.0, 7.724761962890625e-05],
            "gap_growth": [2.0, 0.0, 0.0, 0.0, 0.0],
            "forward_slope": [1.7500114441500045, -1.843757152557373, 3.250002861022949,
                              -1.9999999995343387, -20.999961376190186],
            "backward_slope": [-0.2500114440335892, -1.843742847442627, 3.249997138977051,
                               -1.9999999995343387, -21.000038623809814],
            "slope_error": [0.00013107543428929753] * 5,
        },
    ),
    ("float32", 1e-6): (
        0.00390625,
        {
            "numerical": [0.7500152587890625, -1.84375, 3.25, -1.9998779296875, -21.0],
            "truncation": [1.52587890625e-05, 0.0, 0.0, 0.0001220703125, 0.0],
            "roundoff": [0.0038774967331034133, 0.0038780182664692403, 0.0038786888187229635,
                         0.0038780927140675487, 0.003887152678281069],
            "one_sided_gap": [2.01171875, 0.00732421875, 0.0029296875, 0.0, 0.0400390625],
            "gap_growth": [2.0000152587890625, 0.0, 0.0009765625, 0.0, 0.0009765625],
            "forward_slope": [1.7558746337890625, -1.847412109375, 3.25146484375,
                              -1.9998779296875, -20.97998046875],
            "backward_slope": [-0.2558441162109375, -1.840087890625, 3.24853515625,
                               -1.9998779296875, -21.02001953125],
            "slope_error": [0.0038771390979588033] * 5,
        },
    ),
}  # fmt: skip


@pytest.mark.parametrize(("dtype", "noise"), list(TANGENT_PINNED))
def test_tangent_estimates_give_the_pinned_numbers(dtype: str, noise: float) -> None:
    """The tangent checks' central differences of g along v (a kink at x = 0.5, a cubic, a
    tanh), with --nondet-tol, in float64 and float32: step, derivative, truncation, round-off,
    one-sided slopes and their evidence, to the last bit."""
    x = np.array([0.5, -1.25, 2.0, 0.0, 3.0], dtype=dtype)
    v = np.array([1.0, -0.5, 0.25, 2.0, -0.75], dtype=dtype)
    eps = float(np.finfo(dtype).eps)
    estimates, step = directional_estimates(
        cubic_with_a_kink, {"x": x}, {"x": v}, ["g", "h"], eps=eps, noise=noise
    )
    pinned_step, pinned = TANGENT_PINNED[(dtype, noise)]
    assert step == pinned_step
    found = estimates["g"]
    for field, values in pinned.items():
        assert np.asarray(getattr(found, field)).tolist() == values, field


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_moved_inputs_keep_each_inputs_precision(dtype: str) -> None:
    """x + s v rounds once, in the input's own dtype, whatever the tangent's dtype; a complex
    shift moves into the matching complex dtype; inputs the tangent does not name stay put."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(7).astype(dtype)
    other = rng.standard_normal(3)
    v = rng.standard_normal(7)
    shift = 0.1234567891234
    moved = moved_inputs({"x": x, "o": other}, {"x": v}, shift)
    assert moved["o"] is other
    assert moved["x"].dtype == np.dtype(dtype)
    assert moved["x"].tolist() == (x + (shift * v).astype(dtype)).tolist()
    imaginary = moved_inputs({"x": x}, {"x": v}, 1j * shift)["x"]
    assert imaginary.dtype == np.result_type(np.dtype(dtype), np.complex64)
    assert imaginary.imag.tolist() == (1j * shift * v).astype(imaginary.dtype).imag.tolist()


def test_every_stencil_names_a_scheme_and_others_are_refused() -> None:
    """The directional stencils are schemes of their own name; one-sided schemes have none."""
    assert set(STENCILS) <= set(SCHEMES)
    with pytest.raises(ValueError, match="no directional stencil for forward"):
        directional_estimates(
            cubic_with_a_kink,
            {"x": np.zeros(2)},
            {"x": np.ones(2)},
            ["g"],
            eps=1e-16,
            scheme=SCHEMES["forward"],
        )
