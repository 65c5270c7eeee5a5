"""`gradcheck run`: every entry of every checked input's gradient against finite differences."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gradcheck_cli.commands.options import (
    EntriesSpec,
    NamesSpec,
    PositiveFloat,
    WrtSpec,
    binding_options,
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
    from gradcheck_cli.settings import EntrySelection


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
    help="Entries listed in the JSON: all; worst (the failed, inconclusive and doubtful + the "
    "--top worst); auto (all up to 1000 entries, else worst).",
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
    "--reference-model",
    metavar="FILE.py[:NAME]",
    help="With --dtype float32 or float16: the float64 forward the gradient is judged against, "
    "a function taking the model's inputs by name and returning its output(s) [default: the "
    "model's own forward, when it computes in float64; NAME defaults to its name].",
)
@click.option(
    "--side-effects/--no-side-effects",
    default=True,
    show_default=True,
    help="Check what a model file's code writes into (dout, the cache, its inputs), whether "
    "its backward gives the same result twice, and whether a result reads memory np.empty "
    "left unwritten; each found is a failure (exit 1).",
)
@click.option(
    "--map",
    "maps",
    type=click.Choice(["failing", "all", "none"]),
    default="failing",
    is_flag=False,
    flag_value="all",
    show_default=True,
    help="Error maps in the table: failing (the inputs that did not pass), all (every checked "
    "input; a bare --map means all) or none.",
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
    help="Also write a JUnit XML report (one test case per checked input; one test suite per "
    "layer) for CI.",
)
@click.option(
    "--points",
    type=click.IntRange(min=1, max=1000),
    default=1,
    show_default=True,
    help="Check at the given inputs and K-1 more points drawn with --seed (the file's "
    "sample_inputs(rng), else scaled like the given ones, of both signs); a failing point's "
    "inputs are saved next to --output.",
)
@click.option(
    "--only",
    type=NamesSpec(),
    metavar="NAME[,NAME...]",
    help="With --model FILE.py (a whole file): check only these layers.",
)
@click.option(
    "--skip",
    type=NamesSpec(),
    metavar="NAME[,NAME...]",
    help="With --model FILE.py (a whole file): check every layer but these.",
)
@output_options
def run(
    inputs: dict[str, Any],
    method: str,
    rtol: float | None,
    atol: float | None,
    wrt: tuple[str, ...] | None,
    delta: float | None,
    entries: EntrySelection,
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
    reference_model: str | None,
    side_effects: bool,
    maps: str,
    plot_path: Path | None,
    junit_path: Path | None,
    points: int,
    only: tuple[str, ...] | None,
    skip: tuple[str, ...] | None,
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
      gradcheck run --model fixtures/models/cs231n_layers.py --junit-xml layers.xml
      gradcheck run --model fixtures/models/negative_branch.py:elu --points 5
      gradcheck run --model model.py --input x=x.npy --input b=b.npy --wrt b
    """
    from gradcheck_cli import session
    from gradcheck_cli.commands.project_output import emit_project
    from gradcheck_cli.errors import InputError
    from gradcheck_cli.project import runner
    from gradcheck_cli.project_report import ProjectReport
    from gradcheck_cli.settings import COMMAND_LINE, CheckSettings
    from gradcheck_cli.subject.options import InputOptions

    asked = CheckSettings(
        method=method,
        delta=delta,
        rtol=rtol,
        atol=atol,
        wrt=wrt,
        entries=entries,
        details=details,
        top=top,
        mode=mode,
        order=order,
        tangents=tangents,
        directions=directions,
        seed=seed,
        reference=reference,
        jobs=jobs,
        max_calls=max_calls,
    )
    refuse_output_clash(output_path, output_format)
    if reference_model is not None:
        if inputs["dtype"] == "float64":
            raise click.BadParameter(
                "is for a gradient computed in low precision: give --dtype float32 or float16",
                param_hint="--reference-model",
            )
        if mode != "full" or order != 1:
            raise click.BadParameter(
                "checks entry by entry: it needs --mode full and --order 1",
                param_hint="--reference-model",
            )
    options = InputOptions(
        **inputs,
        cotangents=cotangents,
        seed=seed,
        side_effects=side_effects,
        reference_model=reference_model,
    )
    if plot_path is not None:
        from gradcheck_cli.render.plot import check_plot_available

        check_plot_available()
    paths = prepare_outputs(
        {"--output": output_path, "--junit-xml": junit_path, "--plot": plot_path},
        options.protected_paths(),
    )
    if jobs is not None and session.usable_jobs(jobs) < jobs:
        click.echo(
            f"gradcheck: --jobs {jobs} capped at {session.usable_jobs(jobs)}, the cores this "
            "process may use",
            err=True,
        )
    request = runner.CheckRequest(options, asked, points=points, only=only, skip=skip or ())
    reporter = ProgressReporter(output_format == "table", "checking entries")
    try:
        with user_output_to_stderr():
            plan = runner.plan_run(request, naming=COMMAND_LINE)
            if plan.several and plot_path is not None:
                raise InputError(
                    "--plot draws the error maps of one layer at one point: name one layer "
                    "with --model FILE.py:NAME, without --points"
                )
            outcome = runner.run_plan(plan, naming=COMMAND_LINE, progress=reporter)
    finally:
        reporter.close()
    if isinstance(outcome, ProjectReport):
        return emit_project(
            outcome,
            output_format,
            paths["--output"],
            junit_path=paths["--junit-xml"],
            protected=options.protected_paths(),
            top=top,
            maps=maps,
        )
    subject, report = outcome

    figures = {}
    plot_target = paths["--plot"]
    if plot_target is not None:
        from gradcheck_cli.render.plot import error_map_png

        png = error_map_png(report.error_ratios, title=f"gradcheck: {report.model.name}")
        figures["--plot"] = (plot_target, png)

    def draw(console: Any) -> None:
        from gradcheck_cli.render.table import render_run

        render_run(report, console, top=top, maps=maps)

    return emit(
        report,
        output_format,
        paths["--output"],
        draw,
        junit_path=paths["--junit-xml"],
        annotated_file=str(subject.model_file.path) if subject.model_file else None,
        figures=figures,
    )
