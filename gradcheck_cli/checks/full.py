"""The full check: every selected entry of every checked input, each against its own finite
difference, judged by judgement.judge.

A black-box model at default steps is estimated in two stages: the scheme at one step for every
entry, then the full estimate (Richardson's extra steps, one-sided slopes, shrunk steps) only
for the entries that step did not settle. The built-in models take their closed-form paths.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.assembly import Batch, References, assemble_run_report, run_settings
from gradcheck_cli.checks.judgement import (
    DOUBT,
    Tolerance,
    VerdictRule,
    Verdicts,
    judge,
    scale_of,
    validate_delta,
    working_dtype,
)
from gradcheck_cli.checks.precision import LowPrecision
from gradcheck_cli.checks.selection import (
    describe_inputs,
    require_finite_value,
    resolve_wrt,
    select_entries,
    validate_gradient,
)
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics import kernels
from gradcheck_cli.numerics.blas import single_threaded_blas
from gradcheck_cli.numerics.estimates import (
    DerivativeEstimates,
    estimate_at_default_steps,
    estimate_derivatives,
    one_step_estimates,
)
from gradcheck_cli.numerics.models import Array, Gradients, Inputs, Model, closed_form_model
from gradcheck_cli.numerics.schemes import FloatArray, Precision, Scheme
from gradcheck_cli.report import RunReport
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings, Naming

ProgressCallback = Callable[[float, int], None]
"""progress(done, total), in entries."""


def check_input(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat: NDArray[np.intp],
    analytic_full: Array,
    scheme: Scheme,
    delta: float | None,
    tolerance: Tolerance,
    f0: float,
    *,
    structured: bool,
    progress: Callable[[float], None] | None,
    precision: Precision = Precision(),
    scale: float | None = None,
    rounding_full: Array | None = None,
    resolution_full: Array | None = None,
    unresolved: bool = False,
    doubt: float = DOUBT,
) -> Verdicts:
    """Verdicts for the entries `flat` of input `wrt`; `rounding_full` (the input's shape) is
    the analytic gradient's own error where it is computed in a low precision.

    A black-box model at default steps is estimated in two stages: the scheme at one step for
    every entry, then the full estimate (Richardson's extra steps, one-sided slopes, shrunk
    steps) only for the entries that step did not settle (`differences.one_step_estimates`).
    """

    def at_default_steps(
        indices: NDArray[np.intp],
        report: Callable[[float], None] | None = None,
        known: Mapping[complex, Array] | None = None,
        wanted: FloatArray | None = None,
    ) -> DerivativeEstimates:
        return estimate_at_default_steps(
            model,
            inputs,
            wrt,
            indices,
            scheme,
            f0=f0,
            structured=structured,
            progress=report,
            known=known,
            wanted=wanted,
            eps=precision.eps,
            noise=precision.uncertainty,
            variation=variation,
        )

    def one_sided(indices: NDArray[np.intp], steps: FloatArray) -> DerivativeEstimates:
        return estimate_derivatives(
            model,
            inputs,
            wrt,
            indices,
            steps,
            scheme,
            f0=f0,
            structured=structured,
            allow_dense=False,
            eps=precision.eps,
            noise=precision.uncertainty,
        )

    analytic = np.asarray(np.asarray(analytic_full).reshape(-1)[flat], dtype=np.float64)
    rounding = (
        None
        if rounding_full is None or tolerance.mode != "estimate"
        else np.asarray(rounding_full).reshape(-1)[flat]
    )
    own = 0.0 if rounding is None else rounding
    resolution = (
        None
        if rounding is None or resolution_full is None
        else np.asarray(resolution_full).reshape(-1)[flat]
    )
    # How fast f varies: the gradient's size. A black box's round-off is balanced against a
    # truncation of that size, so an f of 1e200 varying like 1e200 keeps a textbook step.
    with np.errstate(invalid="ignore", over="ignore"):
        variation = float(np.max(np.abs(analytic_full), initial=0.0))
    staged = (
        delta is None
        and tolerance.mode == "estimate"
        and not scheme.imaginary
        and not (structured and closed_form_model(model, wrt) is not None)
    )
    if staged:
        first, known = one_step_estimates(
            model,
            inputs,
            wrt,
            flat,
            scheme,
            f0=f0,
            progress=progress,
            eps=precision.eps,
            noise=precision.uncertainty,
            variation=variation,
        )
        input_scale = scale_of(first.numerical) if scale is None else scale
        tol = tolerance.of(first.numerical, first.roundoff + own)
        with np.errstate(invalid="ignore"):
            settled = (
                np.isfinite(first.numerical)
                & (np.abs(analytic - first.numerical) <= tol)
                & (first.roundoff + own <= DOUBT * np.maximum(np.abs(analytic), input_scale))
            )
        estimates = first
        rest = np.flatnonzero(~settled)
        if rest.size:
            # The error a verdict needs: clearly below what is compared (see judgement.judge).
            needed = DOUBT * np.maximum(np.abs(analytic[rest]), input_scale)
            again = at_default_steps(
                flat[rest], known={o: d[rest] for o, d in known.items()}, wanted=needed
            )
            estimates = first.replaced(rest, again)
        scale = input_scale
    elif delta is None:
        # Lengthened where round-off alone would leave an entry unsure (a float32 subtraction).
        estimates = at_default_steps(
            flat, progress, wanted=DOUBT * np.maximum(np.abs(analytic), variation)
        )
    else:
        steps = np.full(flat.shape, delta, dtype=np.float64)
        estimates = estimate_derivatives(
            model,
            inputs,
            wrt,
            flat,
            steps,
            scheme,
            f0=f0,
            structured=structured,
            progress=progress,
            eps=precision.eps,
            noise=precision.uncertainty,
        )
    return judge(
        model,
        inputs,
        wrt,
        flat,
        analytic,
        estimates,
        tolerance,
        scale=scale_of(estimates.numerical) if scale is None else scale,
        recheck=at_default_steps,
        slopes=one_sided,
        user_step=delta is not None,
        rounding=rounding,
        resolution=resolution,
        unresolved=unresolved and rounding is not None,
        doubt=doubt,
    )


def check_models(
    target: Target,
    selections: Mapping[str, NDArray[np.intp]],
    rule: VerdictRule,
    *,
    f0: float | complex,
    first_gradients: Gradients,
    structured: bool,
    advance: Callable[[float], None],
    low: LowPrecision | None = None,
) -> list[Batch]:
    """The verdicts for each model (one per cotangent) and each selected input; with `low`,
    the analytic side is its gradients, judged with their rounding."""
    batches: list[Batch] = []
    inputs = target.inputs
    first = target.model
    numbered = len(target.models) > 1
    for number, each in enumerate(target.models, start=1):
        with np.errstate(all="ignore"):
            f_each = each.value(inputs) if each is not first else f0
        # Only the checked inputs' gradients are kept: another's may be as large as a big X.
        if low is not None:
            gradients = {n: g for n, g in low.gradients[number - 1].items() if n in selections}
        elif number == 1:
            gradients = dict(first_gradients)
        else:
            gradients = {
                name: g for name, g in validate_gradient(each, inputs).items() if name in selections
            }

        def check(
            item: tuple[str, NDArray[np.intp]],
            each: Model = each,
            gradients: Gradients = gradients,
            f_each: float | complex = f_each,
            number: int = number,
        ) -> Verdicts:
            name, flat = item
            gradient = gradients.get(name)
            assert gradient is not None
            rounding = None if low is None else low.rounding(number - 1, name)
            resolution = None if low is None else low.resolution(number - 1, name)
            return check_input(
                each,
                inputs,
                name,
                flat,
                gradient,
                rule.scheme,
                rule.delta,
                rule.tolerance,
                float(np.real(f_each)),
                structured=structured,
                progress=advance,
                precision=rule.precision,
                rounding_full=rounding,
                resolution_full=resolution,
                unresolved=low is not None and not low.vouches,
                doubt=DOUBT if low is None else low.doubt,
            )

        items = list(selections.items())
        # The built-in models' numerics are pure numpy: X and W can be checked side by side.
        # A user's model is called from this thread only: nobody promised it is thread-safe.
        closed_form = structured and all(closed_form_model(each, n) for n, _ in items)
        results = (
            kernels.map_in_parallel(check, items) if closed_form else [check(i) for i in items]
        )
        for (name, flat), verdicts in zip(items, results, strict=True):
            batches.append((name, number if numbered else None, flat, verdicts))
    return batches


def run_check(
    target: Target,
    asked: CheckSettings = CheckSettings(),
    *,
    selections: Mapping[str, NDArray[np.intp]] | None = None,
    reference: References | None = None,
    progress: ProgressCallback | None = None,
    structured: bool = True,
    f0: float | None = None,
    jobs: int = 1,
    naming: Naming = COMMAND_LINE,
    low: LowPrecision | None = None,
) -> RunReport:
    """Check every selected entry (`selections`, default: every entry) of every checked input
    (`asked.wrt`, default: every floating input the gradient covers) against finite differences.

    With several models (an array-valued forward, one per cotangent), entries are tagged with
    the cotangent's number and an entry fails when it fails for any of them. `f0` is f at the
    inputs when the caller has it already; `jobs` how many processes the caller runs the
    forward calls on (the report says so). With `low`, the analytic side is the gradient
    computed in a low precision (`precision.py`): the target's models are the float64
    reference, whose own gradient is never asked for.
    """
    inputs = target.inputs
    first = target.model
    rule = VerdictRule.of(asked, first, inputs, target.precision, naming)
    # BLAS held from the first product on: threads it wakes outside the hold would spin on the
    # cores the check's own pool is about to use.
    with single_threaded_blas():
        given = validate_gradient(first, inputs) if low is None else dict(low.gradients[0])
        checked = resolve_wrt(inputs, given, asked.wrt, option=naming.setting("wrt"))
        # Whether each input has a gradient is all the report needs of them from here on, and
        # the check needs the checked ones' (another's may be as large as a big X: not kept).
        has_gradient: Gradients = {
            name: None if g is None else np.empty(0) for name, g in given.items()
        }
        checked_gradients: Gradients = {name: given[name] for name in checked}
        del given
        chosen = select_entries(inputs, checked, selections)
        for name, flat in chosen.items():
            validate_delta(asked.delta, np.asarray(inputs[name]).reshape(-1)[flat], name, naming)

        total = len(target.models) * sum(s.size for s in chosen.values())
        done = 0.0

        def advance(count: float) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, total)

        if f0 is None:
            with np.errstate(all="ignore"):
                f0 = float(np.real(first.value(inputs)))
        require_finite_value(first, f0, inputs)
        batches = check_models(
            target,
            chosen,
            rule,
            f0=f0,
            first_gradients=checked_gradients,
            structured=structured,
            advance=advance,
            low=low,
        )
    del checked_gradients
    settings = run_settings(
        asked,
        rule,
        working_dtype(inputs),
        checked,
        cotangents=target.cotangents,
        jobs=jobs,
        mode="full",
    )
    return assemble_run_report(
        first,
        inputs,
        batches,
        settings,
        f0=float(np.real(f0)),
        about=target.about,
        input_infos=describe_inputs(
            inputs, target.sources, checked, has_gradient, selected_by=naming.setting("wrt")
        ),
        top=asked.top,
        reference=reference,
        output_shape=target.output_shape,
    )
