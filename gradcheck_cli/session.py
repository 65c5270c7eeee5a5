"""One orchestration for the command line and the Python API: `run`, `perturb` and `sweep`.

Each takes a way to load the subject (a model file and its inputs, the API's functions, a
built-in model), the frozen settings and the face's naming. It validates the settings before any
work, loads the subject, resolves which inputs and entries are checked, chooses between the
full, fast, hvp and jvp checks, refuses up front a full check over the call budget, owns the
worker pool's lifetime, and holds BLAS at one thread while the check runs. The faces only parse
and present.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.fast import fast_check
from gradcheck_cli.checks.full import ProgressCallback, run_check
from gradcheck_cli.checks.judgement import floating, working_dtype
from gradcheck_cli.checks.perturb import perturb_check
from gradcheck_cli.checks.precision import UNIT_ROUNDOFF, LowPrecision
from gradcheck_cli.checks.selection import (
    Ref,
    chosen_entries,
    flat_index,
    ref_text,
    resolve_wrt,
    validate_gradient,
)
from gradcheck_cli.checks.tangents import prerequisite, tangent_check, tangent_problem
from gradcheck_cli.checks.target import Target
from gradcheck_cli.checks.taylor import sweep_check
from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics import workers
from gradcheck_cli.numerics.bfloat16 import BFLOAT16
from gradcheck_cli.numerics.blas import single_threaded_blas
from gradcheck_cli.numerics.evaluation import seconds_per_batched_value
from gradcheck_cli.numerics.models import Array
from gradcheck_cli.numerics.noise import rounding_noise
from gradcheck_cli.numerics.schemes import machine_epsilon
from gradcheck_cli.report import LowPrecisionSettings, PerturbReport, RunReport, SweepReport
from gradcheck_cli.settings import CheckSettings, Naming
from gradcheck_cli.subject.low_precision import (
    DITHERS,
    NO_REFERENCE,
    OWN_FORWARD,
    bfloat16_refused,
    check_precision,
    computes_in_float64,
    low_precision_gradients,
    reported_dtype,
    unit_roundoff,
)
from gradcheck_cli.subject.options import Subject

LoadSubject = Callable[[], Subject]
"""Loads what is checked; called once the settings are known to be valid."""

LoadReference = Callable[[Subject], tuple[Subject, str] | None]
"""Binds the float64 forward a low-precision subject is judged against, at its quantised
inputs, and says what it is ("the model's own forward", "ref.py:softmax"); None when the
model's own forward does not compute in float64 and no reference was named (the whole check
then runs in the low precision, as before)."""

DEFAULT_DELTA = {"float64": 1e-4, "float32": 1e-2}
"""perturb's step: the seed's 1e-4 in float64. float32's round-off (eps 1.2e-7) would swamp a
change of f that small, so its default is a step where the O(delta^2) remainder and round-off
balance."""

SWEEP_RANGE = {"float64": (1e-1, 1e-10), "float32": (1.0, 1e-4)}
"""The Taylor test's default deltas: the range where the O(delta^2) remainder stands clear of
round-off for an f of order 1."""

MOST_DECADES = 30


def target_of(subject: Subject) -> Target:
    """What the checks see of a subject: its models and inputs, and how to describe them."""
    return Target(
        tuple(subject.models),
        subject.inputs,
        subject.info,
        subject.sources,
        subject.precision,
        subject.output_shape,
    )


def run(
    load: LoadSubject,
    asked: CheckSettings,
    *,
    naming: Naming,
    progress: ProgressCallback | None = None,
    reference: LoadReference | None = None,
) -> tuple[Subject, RunReport]:
    """Check the gradient entry by entry (full), along random directions (fast), or forward
    mode (jvp); with order 2, the Hessian-vector product once the gradient passes. A subject
    in a low precision (float32, float16) with a `reference` is checked entry by entry against
    that float64 forward at the same quantised inputs (`checks.precision`)."""
    asked.validate(naming)
    subject = load()
    target = target_of(subject)
    inputs = target.inputs
    # BLAS held from the first product on: threads it wakes outside the hold would spin on the
    # cores the check's own pool is about to use.
    with single_threaded_blas():
        low, against = _low_precision(subject, asked, reference, naming)
        if against is None and low is not None:  # no float64 forward to judge against
            unjudged, low = low, None
        else:
            unjudged = None
        # A jvp moves any floating input; the other checks need the backward's gradient.
        gradients: Mapping[str, Array | None] = (
            {name: array for name, array in inputs.items() if floating(array)}
            if asked.mode == "jvp"
            else validate_gradient(target.model, inputs)
            if low is None
            else low.gradients[0]
        )
        # Entries that each name their input choose the checked inputs themselves.
        chosen = (
            []
            if asked.entries.names_inputs and asked.wrt is None
            else resolve_wrt(inputs, gradients, asked.wrt, option=naming.setting("wrt"))
        )
        checked, selection = chosen_entries(
            asked.entries, inputs, chosen, asked.seed, option=naming.setting("entries")
        )
        if not chosen:  # the entries named the inputs: each must be one a check can cover
            resolve_wrt(inputs, gradients, checked, option=naming.setting("entries"))
        del gradients  # a gradient as large as its input: not held through the check
        asked = dataclasses.replace(asked, wrt=tuple(checked))
        if asked.mode == "jvp":
            return subject, _tangent_report(subject, target, "jvp", asked, None)
        if asked.order == 2:
            # Refused before the gradient is checked: the Hessian of an array forward is none.
            tangent_problem(
                "hvp", target.model, subject.functions, inputs, checked, target.output_shape
            )
        if low is not None and against is not None:
            report = _low_precision_check(subject, against, low, asked, selection, naming, progress)
        else:
            report, target = _checked(subject, target, asked, selection, naming, progress)
            if unjudged is not None:
                report = _as_low_precision(report, subject, subject, unjudged, unjudged.dtype, None)
        report = _with_forward_calls(subject, report)
        if asked.order == 2 and report.passed:
            # The Hessian-vector product only means something once the gradient is right.
            report = _tangent_report(subject, target, "hvp", asked, report)
    return subject, report


def _gradient_check(
    subject: Subject,
    target: Target,
    asked: CheckSettings,
    selection: Mapping[str, NDArray[np.intp]] | None,
    naming: Naming,
    progress: ProgressCallback | None,
    low: LowPrecision | None = None,
) -> RunReport:
    """The first-order check: entry by entry, or along random directions (fast)."""
    if asked.mode == "fast":
        return fast_check(target, asked, selections=selection, progress=progress, naming=naming)
    return _full_check(subject, target, asked, selection, naming, progress, low)


def _checked(
    subject: Subject,
    target: Target,
    asked: CheckSettings,
    selection: Mapping[str, NDArray[np.intp]] | None,
    naming: Naming,
    progress: ProgressCallback | None,
    low: LowPrecision | None = None,
) -> tuple[RunReport, Target]:
    """The first-order check, judged again with f's measured rounding noise where it failed
    only for want of it (`_measured_noise`); and the target it was judged on."""
    report = _gradient_check(subject, target, asked, selection, naming, progress, low)
    noisier = _measured_noise(subject, target, report)
    if noisier is not None:
        # f rounds far more than eps |f| (terms that cancel): judged again with that noise.
        target = noisier
        report = _gradient_check(subject, target, asked, selection, naming, progress, low)
    return report, target


def _low_precision_check(
    subject: Subject,
    against: Subject,
    low: LowPrecision,
    asked: CheckSettings,
    selection: Mapping[str, NDArray[np.intp]] | None,
    naming: Naming,
    progress: ProgressCallback | None,
) -> RunReport:
    """The gradient computed in `low.dtype`, judged against the float64 forward `against` at
    the same quantised inputs. When that is the model's own code, its float64 gradient is
    checked first, as any float64 check: an error below what the low precision resolves (1%
    of a bfloat16 term) shows there, and a wrong formula is told apart from a precision
    problem. If it fails, its report is the run's (the low-precision gradient is not judged);
    if it passes, the formula is verified and an entry of a precision too coarse to resolve a
    1% error (bfloat16) may pass where it agrees within its rounding (`LowPrecision.vouches`)."""
    target = target_of(against)
    float64 = None
    if low.reference == OWN_FORWARD and computes_in_float64(against):
        first, _ = _checked(against, target, asked, selection, naming, progress)
        float64 = prerequisite(first)
        if first.verdict == "failed":
            return _as_low_precision(first, subject, against, low, "float64", float64)
        low = dataclasses.replace(low, verified_in_float64=first.verdict == "passed")
    report, _ = _checked(against, target, asked, selection, naming, progress, low)
    return _as_low_precision(report, subject, against, low, low.dtype, float64)


def _low_precision(
    subject: Subject, asked: CheckSettings, reference: LoadReference | None, naming: Naming
) -> tuple[LowPrecision | None, Subject | None]:
    """For a subject in float32 or float16 checked entry by entry: the gradient its code
    computes there with its rounding (`checks.precision`), and the float64 forward it is judged
    against. (None, None) when there is no float64 forward, or the check is not entry by entry
    (fast, jvp, hvp): the whole check then runs in the subject's precision, as before."""
    dtype = check_precision(subject)
    if dtype == BFLOAT16 and (asked.mode != "full" or asked.order != 1 or reference is None):
        raise bfloat16_refused(naming)
    if reference is None or dtype not in UNIT_ROUNDOFF or asked.mode != "full" or asked.order != 1:
        return None, None
    # What cannot be computed in the low precision at all (X @ W overflowing in float32) is
    # refused as in any check, before a reference is bound.
    validate_gradient(subject.models[0], subject.inputs)
    found = reference(subject)
    if found is None and dtype == BFLOAT16:
        raise bfloat16_refused(naming, without_reference=subject.info.name)
    if found is None:  # the whole check in the low precision: its report says why
        return LowPrecision(dtype, unit_roundoff(subject, dtype), (), (), 0, NO_REFERENCE), None
    against, told = found
    unit = unit_roundoff(subject, dtype)
    gradients, spread = low_precision_gradients(subject, unit, seed=asked.seed)
    return LowPrecision(dtype, unit, gradients, spread, DITHERS, told), against


def _as_low_precision(
    report: RunReport,
    subject: Subject,
    against: Subject,
    low: LowPrecision,
    judged: str,
    float64: dict[str, object] | None,
) -> RunReport:
    """A low-precision check's report, as its subject has it: the model's name, the precision
    its entries were `judged` in (their inputs' dtype), the rule the rounding was judged by,
    the float64 check of the same code that came first, the reference's forward calls too."""
    inputs = {
        name: dataclasses.replace(info, dtype=reported_dtype(subject.inputs[name], low.dtype))
        if name in subject.inputs and judged != "float64"
        else info
        for name, info in report.inputs.items()
    }
    settings = dataclasses.replace(
        report.settings,
        dtype=judged,
        low_precision=LowPrecisionSettings(
            precision=low.dtype,
            reference_forward=(
                low.reference if low.reference == NO_REFERENCE else f"{low.reference}, in float64"
            ),
            unit_roundoff=low.unit,
            rounding_rule=low.rule,
            dithers=low.dithers,
        ),
    )
    report = dataclasses.replace(
        report, inputs=inputs, settings=settings, model=subject.info, float64_check=float64
    )
    if (
        against.model_file is not None
        and subject.model_file is not None
        and against.model_file.counter is not subject.model_file.counter
    ):
        subject.model_file.counter.forward += against.model_file.counter.forward
    return report


NOISE_BOUND = 4.0
"""A value of f is taken to be within this many standard deviations of its measured noise (as
it is within 4 eps |f| when the noise is not measured)."""


def _measured_noise(subject: Subject, target: Target, report: RunReport) -> Target | None:
    """Where a black box's check failed, f's rounding noise measured: the target with it when it
    is beyond the eps |f| per value the estimates assumed (terms of f that cancel), else None.
    A correct gradient judged wrong only because f's rounding was underestimated then passes,
    or is inconclusive; a wrong one still fails. Costs a few calls of f, on failure only."""
    if report.verdict != "failed" or subject.model_file is None or target.precision.rounding:
        return None
    inputs = target.inputs
    eps = max(machine_epsilon(working_dtype(inputs)), target.precision.eps or 0.0)
    noise = rounding_noise(
        target.model.value, inputs, [n for n in inputs if floating(inputs[n])], f0=report.f
    )
    if noise is None or noise <= eps * abs(report.f):
        return None
    precision = dataclasses.replace(target.precision, rounding=NOISE_BOUND * noise)
    return dataclasses.replace(target, precision=precision)


def _full_check(
    subject: Subject,
    target: Target,
    asked: CheckSettings,
    selection: Mapping[str, NDArray[np.intp]] | None,
    naming: Naming,
    progress: ProgressCallback | None,
    low: LowPrecision | None = None,
) -> RunReport:
    """The full check, on worker processes when a model file's forward calls would take long
    enough to pay for starting them."""
    inputs = target.inputs
    entries = sum(
        int(np.size(inputs[name])) if selection is None else int(selection[name].size)
        for name in asked.wrt or ()
    )
    calls = 2 * entries * len(target.models)
    if subject.model_file is not None and asked.max_calls and calls > asked.max_calls:
        _refuse_over_budget(subject, entries, calls, asked, naming)
    reference = _reference(subject, asked)
    started = time.perf_counter()
    with np.errstate(all="ignore"):
        f0 = float(np.real(target.model.value(inputs)))
    one_call = time.perf_counter() - started
    # About two forward calls per entry and model on a smooth, correct model; fewer seconds
    # where the model evaluates batches of points (a PyTorch or JAX function under vmap).
    first = next(iter(asked.wrt or ()), None)
    batched = seconds_per_batched_value(target.model, inputs, first) if first else None
    estimated = calls * (one_call if batched is None else min(one_call, batched))
    # A model whose batches run here spreads its per-call cost thin and evaluates each point
    # once for every cotangent, and a worker would import its framework again (seconds) and
    # share points only with itself: its workers start only when --jobs asks for them.
    jobs = 1 if batched is not None and asked.jobs is None else usable_jobs(asked.jobs)
    parallel = subject.parallel(jobs)
    try:
        with workers.running(
            parallel,
            inputs,
            target.models,
            estimated_seconds=estimated,
            tolerance=target.precision.noise,
        ) as jobs:
            return run_check(
                target,
                asked,
                selections=selection,
                reference=reference,
                progress=progress,
                f0=f0,
                jobs=jobs,
                naming=naming,
                low=low,
            )
    except workers.WorkersDisagree:
        # The numbers must not depend on where they are computed: all in this process, as
        # with --jobs 1 (whose determinism probe the forward passed). The report says 1 job.
        return run_check(
            target,
            asked,
            selections=selection,
            reference=reference,
            progress=progress,
            f0=f0,
            jobs=1,
            naming=naming,
            low=low,
        )


def _reference(subject: Subject, asked: CheckSettings) -> list[dict[str, Array]] | None:
    """PyTorch autograd's gradient for --reference torch; refused for a PyTorch or JAX model
    file, whose gradient is the framework's own autograd already (through the user's backward):
    no independent opinion."""
    if asked.reference != "torch":
        return None
    adapted = subject.model_file.adapted if subject.model_file is not None else None
    if adapted is not None:
        assert subject.model_file is not None
        framework = "PyTorch" if adapted.framework == "torch" else "JAX"
        raise InputError(
            f"--reference torch: {subject.model_file.label} is a {framework} function: its "
            f"gradient is {framework}'s autograd already (through its own backward), so there is "
            "no independent reference to add; leave --reference out"
        )
    from gradcheck_cli.adapters.torch_reference import reference_gradients

    return reference_gradients(subject)


def usable_jobs(requested: int | None) -> int:
    """Worker processes to run: as many as asked, at most one per core this process may use
    (more only compete for the same cores); None: one per core."""
    cores = workers.default_jobs()
    return cores if requested is None else min(requested, cores)


def _refuse_over_budget(
    subject: Subject, entries: int, calls: int, asked: CheckSettings, naming: Naming
) -> None:
    """A full check costs about two forward calls per entry and cotangent: say up front when
    that is more than the budget, with the time it would take, rather than run for hours."""
    timings = []
    for _ in range(3):  # the fastest of a few: the first call pays for caches warming up
        started = time.perf_counter()
        with np.errstate(all="ignore"):
            subject.models[0].value(subject.inputs)
        timings.append(time.perf_counter() - started)
    seconds = min(timings) * calls / usable_jobs(asked.jobs)
    raise InputError(
        f"a full check of {entries} entries needs about {calls:.3g} forward calls of "
        f"{subject.info.name}, more than {naming.setting('max_calls', asked.max_calls)} (about "
        f"{_duration(seconds)} at this forward's speed): use {naming.setting('mode', 'fast')} "
        f"(a few directions, then only the wrong entries), "
        f"{naming.setting('entries', 'random:K')}, or raise {naming.setting('max_calls')}"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _with_forward_calls(subject: Subject, report: RunReport) -> RunReport:
    """The report with how many times the user's forward ran (model files and the API), the
    gradients that came with axes of length 1 more or fewer than their inputs, and what the
    side-effect checks found."""
    if subject.model_file is None:
        return report
    report = with_gradient_shapes(subject, report)
    found = subject.side_effects
    settings = dataclasses.replace(report.settings, side_effects=bool(found))
    return dataclasses.replace(
        report,
        forward_calls=subject.model_file.counter.forward,
        side_effects=found,
        settings=settings,
    )


_Report = TypeVar("_Report", RunReport, PerturbReport, SweepReport)


def with_gradient_shapes(subject: Subject, report: _Report) -> _Report:
    """The report's inputs, each with the shape backward gave its gradient in when it differs
    from the input's by axes of length 1 (`InputInfo.gradient_shape`)."""
    shapes = subject.gradient_shapes
    if not shapes:
        return report
    inputs = {
        name: dataclasses.replace(info, gradient_shape=shapes.get(name))
        for name, info in report.inputs.items()
    }
    return dataclasses.replace(report, inputs=inputs)


def _tangent_report(
    subject: Subject,
    target: Target,
    kind: str,
    asked: CheckSettings,
    gradient: RunReport | None,
) -> RunReport:
    """The hvp check (after the gradient's, `gradient`) or the jvp check."""
    checked = list(asked.wrt or ())
    problem = tangent_problem(
        kind, target.model, subject.functions, target.inputs, checked, target.output_shape
    )
    report = tangent_check(
        kind, target, problem, asked, tangent_inputs=checked, gradient_check=gradient
    )
    return _with_forward_calls(subject, report)


def perturb(
    load: LoadSubject,
    asked: CheckSettings,
    *,
    entries: Sequence[Ref],
    dtype: str,
    naming: Naming,
) -> tuple[Subject, PerturbReport]:
    """The seed's experiment at each entry (default: the first entry of the first checked
    input, or of `asked.wrt`); `asked.delta` defaults to the step for `dtype`."""
    asked.validate(naming)
    subject = load()
    target = target_of(subject)
    inputs = target.inputs
    option = naming.setting("entry")
    with single_threaded_blas():
        gradients = validate_gradient(target.model, inputs)
        first = asked.wrt[0] if asked.wrt else resolve_wrt(inputs, gradients, None)[0]
        if first not in inputs:
            raise InputError(
                f"{naming.setting('wrt')} {first}: no input named {first}; the inputs are "
                f"{', '.join(inputs)}"
            )
        located = []
        for name, index in entries or [(first, (0,) * np.ndim(inputs[first]))]:
            where = name or first
            if where not in inputs:
                raise InputError(
                    f"{option} {ref_text((name, index))}: no input named {where}; the inputs "
                    f"are {', '.join(inputs)}"
                )
            flat_index((name, index), where, inputs, option)
            located.append((where, tuple(index)))
        references = _reference(subject, asked)
        # perturb moves f = <forward, v1>: the first cotangent's gradient is its reference.
        reference = None if references is None else references[0]
        if asked.delta is None:
            asked = dataclasses.replace(asked, delta=DEFAULT_DELTA[dtype])
        report = perturb_check(target, asked, entries=located, reference=reference, naming=naming)
    return subject, with_gradient_shapes(subject, report)


def sweep(
    load: LoadSubject,
    *,
    entry: Ref | None,
    random_direction: bool,
    wrt: Sequence[str] | None,
    seed: int,
    deltas: Sequence[float],
    naming: Naming,
) -> tuple[Subject, SweepReport]:
    """The Taylor test along one entry (default: the first of the first checked input) or a
    seeded random direction over the inputs of `wrt` (default: every checked input)."""
    subject = load()
    target = target_of(subject)
    inputs = target.inputs
    with single_threaded_blas():
        gradients = validate_gradient(target.model, inputs)
        vectors: dict[str, Array] = {}
        info: dict[str, object]
        if not random_direction:
            name = entry[0] if entry is not None else None
            where = name or (wrt[0] if wrt else resolve_wrt(inputs, gradients, None)[0])
            if where not in inputs:
                shown = ref_text(entry) if entry is not None else where
                raise InputError(
                    f"{naming.setting('entry')} {shown}: no input named {where}; the inputs "
                    f"are {', '.join(inputs)}"
                )
            index = entry[1] if entry is not None else (0,) * np.ndim(inputs[where])
            flat = flat_index((name, index), where, inputs, naming.setting("entry"))
            unit = np.zeros(np.size(inputs[where]), dtype=inputs[where].dtype)
            unit[flat] = 1
            vectors[where] = unit.reshape(np.shape(inputs[where]))
            info = {"kind": "entry", "wrt": where, "index": list(index)}
        else:
            names = resolve_wrt(
                inputs, gradients, list(wrt) if wrt else None, option=naming.setting("wrt")
            )
            rng = np.random.default_rng(seed)
            for name in names:
                array = inputs[name]
                vectors[name] = rng.standard_normal(np.shape(array)).astype(array.dtype)
            info = {"kind": "random", "wrt": ",".join(names), "seed": seed}
        del gradients
        report = sweep_check(
            target, direction=vectors, direction_info=info, deltas=deltas, naming=naming
        )
    return subject, with_gradient_shapes(subject, report)


def sweep_deltas(largest: float, smallest: float, naming: Naming) -> list[float]:
    """Decades from `largest` down to `smallest` (below it: the command line checks that)."""
    decades = int(np.floor(np.log10(largest) - np.log10(smallest) + 1e-9))
    if decades > MOST_DECADES:
        raise InputError(
            f"{naming.setting('largest')}/{naming.setting('smallest')} span {decades} "
            f"decades; at most {MOST_DECADES}"
        )
    return [largest / 10**k for k in range(decades + 1)]
