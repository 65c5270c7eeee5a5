"""`perturb`: the seed's experiment, entry by entry: add delta to an entry and compare the
actual change of f with the change the gradient predicts.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.assembly import relative_error, step_rule
from gradcheck_cli.checks.judgement import (
    SAFETY,
    VerdictRule,
    judge,
    scale_of,
    validate_delta,
    working_dtype,
)
from gradcheck_cli.checks.selection import (
    describe_inputs,
    require_finite_value,
    resolve_wrt,
    validate_gradient,
)
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.estimates import (
    DerivativeEstimates,
    estimate_at_default_steps,
    estimate_derivatives,
)
from gradcheck_cli.numerics.models import Array
from gradcheck_cli.report import ModelInfo, Perturbation, PerturbReport, Settings, entry_label
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings, Naming


def perturb_check(
    target: Target,
    asked: CheckSettings,
    *,
    entries: Sequence[tuple[str, tuple[int, ...]]],
    reference: Mapping[str, Array] | None = None,
    naming: Naming = COMMAND_LINE,
) -> PerturbReport:
    """The seed's experiment: add delta to each entry, compare the change of f with g * delta.

    The difference of a correct gradient is the O(delta^2) remainder, so it is judged after
    removing the curvature estimated from f(x - delta): what is left, delta * (central - g), is
    compared with the method's own error estimate at step delta (not a fixed tolerance).
    """
    model, inputs, precision = target.model, target.inputs, target.precision
    delta = asked.delta
    if delta is None:
        raise ValueError("perturb_check needs a step: asked.delta")
    rule = VerdictRule.of(asked, model, inputs, precision, naming)
    scheme, tolerance = rule.scheme, rule.tolerance
    dtype = working_dtype(inputs)
    with np.errstate(all="ignore"):
        f0 = float(np.real(model.value(inputs)))
    require_finite_value(model, f0, inputs)
    gradients = validate_gradient(model, inputs)
    names = list(dict.fromkeys(name for name, _ in entries))
    resolve_wrt(inputs, gradients, names, option=naming.setting("entry"))
    perturbations = []
    for name in names:
        moved_input = np.asarray(inputs[name])
        indices = [index for n, index in entries if n == name]
        flat = np.asarray(
            [np.ravel_multi_index(index, moved_input.shape) if index else 0 for index in indices],
            dtype=np.intp,
        )
        for index, position in zip(indices, flat.tolist(), strict=True):
            validate_delta(
                delta,
                moved_input.reshape(-1)[position : position + 1],
                entry_label(name, index),
                naming,
            )
        gradient = gradients[name]
        assert gradient is not None
        steps = np.full(flat.shape, delta, dtype=np.float64)
        # Whole forward passes, as one does by hand: f at the perturbed input is a real evaluation.
        estimates = estimate_derivatives(
            model,
            inputs,
            name,
            flat,
            steps,
            scheme,
            f0=f0,
            structured=False,
            eps=precision.eps,
            noise=precision.uncertainty,
        )

        def recheck(indices: NDArray[np.intp], name: str = name) -> DerivativeEstimates:
            return estimate_at_default_steps(
                model,
                inputs,
                name,
                indices,
                scheme,
                f0=f0,
                structured=False,
                eps=precision.eps,
                noise=precision.uncertainty,
            )

        analytic = np.asarray(np.asarray(gradient).reshape(-1)[flat], dtype=np.float64)
        verdicts = judge(
            model,
            inputs,
            name,
            flat,
            analytic,
            estimates,
            tolerance,
            scale=scale_of(np.concatenate([estimates.numerical, analytic])),
            recheck=recheck,
            slopes=None,
            user_step=True,
        )
        moved = dict(inputs)
        for k, (index, position) in enumerate(zip(indices, flat.tolist(), strict=True)):
            plus_minus = []
            for sign in (1, -1):
                work = np.array(moved_input, copy=True)
                work.reshape(-1)[position] = moved_input.reshape(-1)[
                    position
                ] + sign * moved_input.dtype.type(delta)
                moved[name] = work
                with np.errstate(all="ignore"):
                    plus_minus.append(float(np.real(model.value(moved))))
            f_plus, f_minus = plus_minus
            actual = f_plus - f0
            predicted = float(analytic[k]) * delta
            abs_error = abs(actual - predicted)
            perturbations.append(
                Perturbation(
                    wrt=name,
                    index=tuple(int(i) for i in index),
                    delta=delta,
                    f=f0,
                    f_perturbed=f_plus,
                    actual_change=actual,
                    predicted_change=predicted,
                    gradient=float(analytic[k]),
                    abs_error=abs_error,
                    rel_error=relative_error(abs_error, actual),
                    remainder_estimate=(f_plus + f_minus - 2 * f0) / 2,
                    numerical=float(verdicts.numerical[k]),
                    error_estimate=float(verdicts.error_estimate[k]),
                    tolerance=float(verdicts.tolerance[k]),
                    reason=str(verdicts.reasons[k]),
                    passed=bool(verdicts.passed[k]),
                    reference=None
                    if reference is None or name not in reference
                    else float(np.asarray(reference[name]).reshape(-1)[position]),
                )
            )
    settings = Settings(
        method=scheme.name,
        delta=delta,
        step_rule=step_rule(scheme, delta, precision, dtype),
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        tolerance=tolerance.mode,  # type: ignore[arg-type]
        safety=SAFETY,
        dtype=str(dtype),
        wrt=tuple(names),
        forward_eps=precision.eps,
        nondet_tol=precision.noise,
    )
    return PerturbReport(
        model=target.about or ModelInfo(model.name, model.formula, "api"),
        inputs=describe_inputs(
            inputs, target.sources, names, gradients, selected_by=naming.setting("wrt")
        ),
        settings=settings,
        f=f0,
        perturbations=tuple(perturbations),
        output_shape=target.output_shape,
    )
