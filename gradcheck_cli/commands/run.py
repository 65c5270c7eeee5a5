"""`gradcheck run`: every entry of every checked input's gradient against finite differences."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gradcheck_cli.commands.options import (
    EntriesSpec,
    PositiveFloat,
    WrtSpec,
    binding_options,
    entries_text,
    input_options,
    output_options,
    tolerance_options,
)
from gradcheck_cli.commands.reporting import (
    ProgressReporter,
    emit,
    prepare_outputs,
    refuse_output_clash,
    user_output_to_stderr,
)

if TYPE_CHECKING:
    from gradcheck_cli.report import RunReport
    from gradcheck_cli.subject.options import InputOptions, Subject


@click.command()
@input_options
@tolerance_options
@click.option(
    "--wrt",
    type=WrtSpec(),
    help="The inputs to check, e.g. w,b (both = X,W). Default: every floating input the "
    "backward gives a gradient for.",
)
@click.option(
    "--delta",
    type=PositiveFloat(),
    help="Step for every entry (default: a step per entry, e.g. eps^(1/3)*max(1,|x|) for central).",
)
@click.option(
    "--entries",
    "entries_spec",
    type=EntriesSpec(),
    default="all",
    show_default=True,
    help='Entries to check: all, "w[0,1];b[2]" (a bare "I,J" in each input of --wrt) or '
    "random:K (K per input, seeded).",
)
@click.option(
    "--details",
    type=click.Choice(["auto", "all", "worst"]),
    default="auto",
    show_default=True,
    help="Entries listed in the JSON: all; worst (the failed + the --top worst);"
    " auto (all up to 1000 entries, else worst).",
)
@click.option(
    "--mode",
    type=click.Choice(["full", "fast", "jvp"]),
    default="full",
    show_default=True,
    help="full: every selected entry; fast: random directions, then bisection to the wrong "
    "entries (for big black-box models); jvp: the model's forward-mode jvp(..., tangents) "
    "against central differences of forward along --tangents random tangents.",
)
@click.option(
    "--order",
    type=click.IntRange(min=1, max=2),
    default=1,
    show_default=True,
    help="2: after the gradient, check the model's Hessian-vector product hvp(..., tangents) "
    "against central differences of the gradient along --tangents random tangents.",
)
@click.option(
    "--tangents",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="--order 2 and --mode jvp: seeded random tangents to check along.",
)
@click.option(
    "--directions",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="--mode fast: random directions to test.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Rows in the table of worst entries.",
)
@binding_options
@click.option(
    "--reference",
    type=click.Choice(["torch"]),
    help="Add PyTorch autograd's gradient as a column (a built-in model, or a model file whose "
    "forward works on torch tensors).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Worker processes for a model file's forward calls [default: one per core]; 1 runs "
    "in this process. Started only when the check would take more than about two seconds; the "
    "results are the same for every number.",
)
@click.option(
    "--max-calls",
    type=click.IntRange(min=0),
    default=1_000_000,
    show_default=True,
    help="Refuse, up front and with the estimated time, a full check of a model file that "
    "would need more forward calls than this (0: no limit); --mode fast and --entries "
    "random:K check in far fewer.",
)
@click.option(
    "--map",
    "show_map",
    is_flag=True,
    help="Print the error map of every checked input (a failing run always does).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Also draw the error maps with matplotlib (plot extra).",
)
@click.option(
    "--junit-xml",
    "junit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write a JUnit XML report (one test case per checked input) for CI.",
)
@output_options
def run(
    inputs: dict[str, Any],
    method: str,
    rtol: float | None,
    atol: float | None,
    wrt: tuple[str, ...] | None,
    delta: float | None,
    entries_spec: tuple[str, Any],
    details: str,
    mode: str,
    order: int,
    tangents: int,
    directions: int,
    top: int,
    seed: int,
    cotangents: int,
    reference: str | None,
    jobs: int | None,
    max_calls: int,
    show_map: bool,
    plot_path: Path | None,
    junit_path: Path | None,
    output_format: str,
    output_path: Path | None,
    debug: bool,
) -> int:
    """Compare the analytic gradient with finite differences, entry by entry.

    A model file (--model FILE.py) is Python code: gradcheck imports and runs it, as
    'python FILE.py' would. Run only files you trust.

    \b
    Examples:
      gradcheck run
      gradcheck run --x X.csv --w W.npy --wrt X --method five-point
      gradcheck run --model fixtures/models/dense_tanh.py --format json
      gradcheck run --model fixtures/models/layers.py:affine
      gradcheck run --model model.py --input x=x.npy --input b=b.npy --wrt b
    """
    from gradcheck_cli.subject.options import InputOptions

    if mode == "fast" and delta is not None:
        raise click.UsageError("--mode fast picks its own step per direction; drop --delta")
    if mode != "full" and reference is not None:
        raise click.UsageError("--reference needs --mode full")
    if mode == "jvp" and order == 2:
        raise click.UsageError(
            "use just one of --mode jvp (first order, forward mode) or --order 2"
        )
    if mode == "jvp" and delta is not None:
        raise click.UsageError("--mode jvp picks its own step per tangent; drop --delta")
    if (mode == "jvp" or order == 2) and entries_spec[0] != "all":
        raise click.UsageError(
            "--order 2 and --mode jvp check every element along random tangents; drop --entries"
        )
    refuse_output_clash(output_path, output_format)
    options = InputOptions(**inputs, cotangents=cotangents, seed=seed)
    if plot_path is not None:
        from gradcheck_cli.render.plot import check_plot_available

        check_plot_available()
    paths = prepare_outputs(
        {"--output": output_path, "--junit-xml": junit_path, "--plot": plot_path},
        options.protected_paths(),
    )
    with user_output_to_stderr():
        subject, report = _run_report(
            options,
            method=method,
            rtol=rtol,
            atol=atol,
            wrt=wrt,
            delta=delta,
            entries_spec=entries_spec,
            details=details,
            mode=mode,
            order=order,
            tangents=tangents,
            directions=directions,
            top=top,
            seed=seed,
            reference=reference,
            jobs=jobs,
            max_calls=max_calls,
            progress=output_format == "table",
        )

    plot_target = paths["--plot"]
    if plot_target is not None:
        from gradcheck_cli.render.plot import write_error_map_plot

        write_error_map_plot(
            report.error_ratios, plot_target, title=f"gradcheck: {report.model.name}"
        )

    def draw(console: Any) -> None:
        from gradcheck_cli.render.table import render_run

        render_run(report, console, top=top, show_map=show_map)

    return emit(
        report,
        output_format,
        paths["--output"],
        draw,
        junit_path=paths["--junit-xml"],
        annotated_file=str(subject.model_file.path) if subject.model_file else None,
    )


def _run_report(
    options: InputOptions,
    *,
    method: str,
    rtol: float | None,
    atol: float | None,
    wrt: tuple[str, ...] | None,
    delta: float | None,
    entries_spec: tuple[str, Any],
    details: str,
    mode: str,
    order: int,
    tangents: int,
    directions: int,
    top: int,
    seed: int,
    reference: str | None,
    jobs: int | None,
    max_calls: int,
    progress: bool,
) -> tuple[Subject, RunReport]:
    from gradcheck_cli.checks import core as checks
    from gradcheck_cli.subject.entry_specs import entries_of_spec
    from gradcheck_cli.subject.options import load_subject

    subject = load_subject(options)
    gradients = checks.validate_gradient(subject.models[0], subject.inputs)
    named = entries_spec[0] == "list" and all(e.name is not None for e in entries_spec[1])
    # Named entries without --wrt choose the checked inputs themselves.
    chosen = [] if named and wrt is None else checks.resolve_wrt(subject.inputs, gradients, wrt)
    del gradients  # a gradient as large as its input: not held through the check
    checked, selection = entries_of_spec(entries_spec, subject.inputs, chosen, seed)
    if mode == "full" and subject.model_file is not None and max_calls:
        _refuse_over_budget(subject, checked, selection, max_calls, jobs)
    reference_gradients = None
    if reference == "torch":
        from gradcheck_cli.adapters.torch_reference import reference_gradients as torch_reference

        reference_gradients = torch_reference(subject)
    if mode == "jvp":
        report = _tangent_report(
            subject, "jvp", checked, tangents, seed, top, details, None, rtol=rtol, atol=atol
        )
        return subject, report
    if order == 2:
        # Refused before the gradient is checked: the Hessian of an array forward is not one.
        from gradcheck_cli.checks.tangents import tangent_problem

        tangent_problem(
            "hvp",
            subject.models[0],
            subject.functions,
            subject.inputs,
            checked,
            subject.output_shape,
        )
    reporter = ProgressReporter(progress, "checking entries")
    settings: dict[str, object] = {"entries": entries_text(entries_spec), "seed": seed}
    common: dict[str, Any] = {
        "model_info": subject.info,
        "sources": subject.sources,
        "wrt": checked,
        "entries": selection,
        "method": method,
        "rtol": rtol,
        "atol": atol,
        "top": top,
        "progress": reporter,
        "precision": subject.precision,
        "output_shape": subject.output_shape,
    }
    try:
        report = checks.check_in_mode(
            mode,
            subject.models,
            subject.inputs,
            directions=directions,
            seed=seed,
            delta=delta,
            details=details,
            parallel=subject.parallel(jobs),
            reference=reference_gradients,
            extra_settings=settings if mode == "fast" else {**settings, "reference": reference},
            **common,
        )
    finally:
        reporter.close()
    if subject.model_file is not None:
        import dataclasses

        report = dataclasses.replace(report, forward_calls=subject.model_file.counter.forward)
    if order == 2 and report.passed:
        # The Hessian-vector product only means something once the gradient is right.
        report = _tangent_report(
            subject, "hvp", checked, tangents, seed, top, details, report, rtol=rtol, atol=atol
        )
    return subject, report


def _refuse_over_budget(
    subject: Subject,
    checked: list[str],
    selection: dict[str, Any] | None,
    max_calls: int,
    jobs: int | None,
) -> None:
    """A full check costs about two forward calls per entry and cotangent: say up front when
    that is more than --max-calls, with the time it would take, rather than run for hours."""
    import time

    import numpy as np

    from gradcheck_cli.errors import InputError
    from gradcheck_cli.numerics.workers import default_jobs

    entries = sum(
        int(np.size(subject.inputs[name])) if selection is None else int(selection[name].size)
        for name in checked
    )
    calls = 2 * entries * len(subject.models)
    if calls <= max_calls:
        return
    timings = []
    for _ in range(3):  # the fastest of a few: the first call pays for caches warming up
        started = time.perf_counter()
        with np.errstate(all="ignore"):
            subject.models[0].value(subject.inputs)
        timings.append(time.perf_counter() - started)
    seconds = min(timings) * calls / (jobs or default_jobs())
    raise InputError(
        f"a full check of {entries} entries needs about {calls:.3g} forward calls of "
        f"{subject.info.name}, more than --max-calls {max_calls} (about {_duration(seconds)} "
        "at this forward's speed): use --mode fast (a few directions, then only the wrong "
        "entries), --entries random:K, or raise --max-calls"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _tangent_report(
    subject: Subject,
    kind: str,
    checked: list[str],
    tangents: int,
    seed: int,
    top: int,
    details: str,
    gradient: RunReport | None,
    *,
    rtol: float | None,
    atol: float | None,
) -> RunReport:
    import dataclasses

    from gradcheck_cli.checks.tangents import tangent_check, tangent_problem

    problem = tangent_problem(
        kind,
        subject.models[0],
        subject.functions,
        subject.inputs,
        checked,
        subject.output_shape,
    )
    report = tangent_check(
        kind,
        subject.models[0],
        problem.function,
        problem.analytic,
        subject.inputs,
        names=problem.names,
        tangent_inputs=checked,
        count=tangents,
        seed=seed,
        rtol=rtol,
        atol=atol,
        model_info=subject.info,
        sources=subject.sources,
        top=top,
        details=details,
        precision=subject.precision,
        output_shapes=problem.shapes,
        output_shape=subject.output_shape,
        gradient_check=gradient,
    )
    if subject.model_file is not None:
        report = dataclasses.replace(report, forward_calls=subject.model_file.counter.forward)
    return report
