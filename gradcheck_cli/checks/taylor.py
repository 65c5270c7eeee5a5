"""`sweep`: the Taylor test. Along a direction v, the residual |f(x + d v) - f(x) - d <g, v>|
falls like d^2 for a correct gradient and like d for a wrong one; the slope on log-log axes
tells them apart, and the residuals on the other side tell a kink from a wrong gradient.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.judgement import working_dtype
from gradcheck_cli.checks.selection import (
    describe_inputs,
    require_finite_value,
    resolve_wrt,
    validate_gradient,
)
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.models import Array
from gradcheck_cli.numerics.schemes import FloatArray, machine_epsilon
from gradcheck_cli.report import ModelInfo, SweepReport, SweepRow, SweepSettings
from gradcheck_cli.settings import COMMAND_LINE, Naming

SWEEP_FIT_POINTS = 4
"""The slope is fitted over the smallest deltas still clear of round-off: the asymptotic range."""
SWEEP_NOISE_MARGIN = 100.0
"""A residual counts for the fit only when it is this many times above its round-off floor."""


JUMP_SLOPE = 0.5
"""A residual on the other side of x that falls more slowly than delta^JUMP_SLOPE does not fall
at all, in effect: f jumps at x (floor(sum(x)) at an integer sum). A kink's falls like delta."""


def _fit_slope(
    deltas: Sequence[float], residuals: FloatArray, floors: FloatArray
) -> tuple[float | None, NDArray[np.bool_], NDArray[np.bool_]]:
    """The log-log slope over the smallest deltas clear of round-off; which points are in the
    fit; which are clear."""
    clear = np.isfinite(residuals) & (residuals > SWEEP_NOISE_MARGIN * floors)
    order = np.argsort(np.asarray(deltas))  # smallest first
    fit = [int(k) for k in order if clear[k]][:SWEEP_FIT_POINTS]
    in_fit = np.zeros(len(deltas), dtype=bool)
    in_fit[fit] = True
    if len(fit) < 2:
        return None, in_fit, clear
    log_d = np.log10(np.asarray(deltas)[fit])
    log_r = np.log10(residuals[fit])
    return float(np.polyfit(log_d, log_r, 1)[0]), in_fit, clear


def sweep_check(
    target: Target,
    *,
    direction: Mapping[str, Array],
    direction_info: Mapping[str, object],
    deltas: Sequence[float],
    naming: Naming = COMMAND_LINE,
) -> SweepReport:
    """The Taylor test along direction v (an array per moved input): residual(delta) should
    fall like delta^2.

    residual = |f(x + delta v) - f(x) - delta <g, v>|. A correct gradient leaves the O(delta^2)
    remainder (slope 2 on log-log axes); a wrong one leaves delta <g_true - g, v> (slope 1). So
    does a kink of f along v: the residuals at -delta tell the two apart. Where the gradient
    lies between the one-sided slopes of a kink, the residuals on both sides have the same sign
    (f lies above, or below, its linearisation on both sides); for a wrong gradient of a smooth
    f they have opposite signs.
    """
    model, inputs, precision = target.model, target.inputs, target.precision
    dtype = working_dtype(inputs)
    eps = max(machine_epsilon(dtype), precision.eps or 0.0)
    with np.errstate(all="ignore"):
        f0 = float(np.real(model.value(inputs)))
    require_finite_value(model, f0, inputs)
    gradients = validate_gradient(model, inputs)
    names = list(direction)
    resolve_wrt(inputs, gradients, names, option=naming.setting("wrt"))
    slope_gv = 0.0
    for name in names:
        gradient = gradients[name]
        assert gradient is not None
        slope_gv += float(np.sum(np.asarray(gradient) * direction[name]))
    signed: dict[int, list[float]] = {1: [], -1: []}
    floors: list[float] = []
    for delta in deltas:
        for sign in (1, -1):
            moved = dict(inputs)
            for name in names:
                base = np.asarray(inputs[name])
                moved[name] = base + base.dtype.type(sign * delta) * direction[name]
            with np.errstate(all="ignore"):
                value = float(np.real(model.value(moved)))
            signed[sign].append(value - f0 - sign * delta * slope_gv)
            if sign == 1:
                floors.append(
                    4 * eps * (max(abs(f0), abs(value)) + abs(delta * slope_gv))
                    + 2 * precision.uncertainty
                )
    plus = np.asarray(signed[1])
    minus = np.asarray(signed[-1])
    residual_array = np.abs(plus)
    floor_array = np.asarray(floors)
    slope, in_fit, clear = _fit_slope(deltas, residual_array, floor_array)
    reason = "inconclusive"
    passed = False
    if slope is not None:
        reason = "slope-2" if slope >= 1.5 else "slope-1"
        passed = slope >= 1.5
        if not passed:
            # Linear residuals: a wrong gradient, or a kink. The same sign on both sides, in
            # every fitted point, is a kink with the gradient between its one-sided slopes; a
            # side at round-off level is a kink whose slope on that side the gradient equals
            # (relu'(0) = 0). A wrong gradient of a smooth f leaves |e| delta on both sides.
            other, _, _ = _fit_slope(deltas, np.abs(minus), floor_array)
            quiet = np.abs(minus[in_fit]) <= SWEEP_NOISE_MARGIN * floor_array[in_fit]
            same_side = np.sign(plus[in_fit]) == np.sign(minus[in_fit])
            linear_other_side = other is not None and JUMP_SLOPE <= other < 1.5
            if other is not None and other < JUMP_SLOPE:
                # The other side's residual does not fall with delta: f jumps at x along v, and
                # no gradient is right or wrong at a jump.
                reason, passed = "jump", False
            elif bool(np.all(quiet)) or (linear_other_side and bool(np.all(same_side | quiet))):
                reason, passed = "kink", True
    elif not clear.any() and np.all(np.isfinite(residual_array)):
        # Every residual at round-off: f is linear along v, or the gradient term itself is
        # below round-off, where nothing was tested.
        linear_terms = np.abs(np.asarray(deltas) * slope_gv)
        seen = bool(np.any(linear_terms > SWEEP_NOISE_MARGIN * floor_array))
        reason, passed = ("round-off", True) if seen else ("inconclusive", False)
    rows = tuple(
        SweepRow(float(d), float(r), bool(f), float(abs(m)))
        for d, r, f, m in zip(
            deltas, residual_array.tolist(), in_fit.tolist(), minus.tolist(), strict=True
        )
    )
    settings = SweepSettings(
        method="taylor",
        delta=None,
        step_rule="decades from --largest to --smallest",
        rtol=0.0,
        atol=0.0,
        tolerance="estimate",
        safety=SWEEP_NOISE_MARGIN,
        dtype=str(dtype),
        wrt=tuple(names),
        forward_eps=precision.eps,
        nondet_tol=precision.noise,
        fit_points=SWEEP_FIT_POINTS,
    )
    return SweepReport(
        model=target.about or ModelInfo(model.name, model.formula, "api"),
        inputs=describe_inputs(
            inputs, target.sources, names, gradients, selected_by=naming.setting("wrt")
        ),
        settings=settings,
        f=f0,
        direction=dict(direction_info),
        directional_derivative=slope_gv,
        rows=rows,
        slope=slope,
        noise_floor=float(max(floors)),
        reason=reason,
        passed=passed,
        output_shape=target.output_shape,
    )
