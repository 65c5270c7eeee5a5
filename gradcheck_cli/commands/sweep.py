"""`gradcheck sweep`: the Taylor test along an entry or a random direction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gradcheck_cli.commands.options import (
    EntryRef,
    EntryType,
    PositiveFloat,
    WrtSpec,
    binding_options,
    input_options,
    output_options,
    refuse_low_precision,
)
from gradcheck_cli.commands.reporting import (
    emit,
    prepare_outputs,
    refuse_output_clash,
    user_output_to_stderr,
)


@click.command()
@input_options
@click.option(
    "--wrt",
    type=WrtSpec(),
    help="The input(s) the direction moves: a bare --entry's input, or those a random "
    "direction moves (both = X,W). Default: the first checked input for an entry, every "
    "checked input for a random direction.",
)
@click.option("--entry", type=EntryType(), help="Move along one entry: w[0,1] or I,J in --wrt.")
@click.option(
    "--direction",
    type=click.Choice(["entry", "random"]),
    default="entry",
    show_default=True,
    help="entry: along --entry; random: a seeded random direction.",
)
@binding_options
@click.option(
    "--largest",
    type=PositiveFloat(),
    help="The largest delta [default: 1e-1 for float64, 1 for float32].",
)
@click.option(
    "--smallest",
    type=PositiveFloat(),
    help="The smallest delta; deltas go down by decades "
    "[default: 1e-10 for float64, 1e-4 for float32, whose round-off hides smaller ones].",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Also draw the log-log plot with matplotlib (plot extra).",
)
@output_options
def sweep(
    inputs: dict[str, Any],
    wrt: tuple[str, ...] | None,
    entry: EntryRef | None,
    direction: str,
    seed: int,
    cotangents: int,
    largest: float | None,
    smallest: float | None,
    plot_path: Path | None,
    output_format: str,
    output_path: Path | None,
    debug: bool,
) -> int:
    """The Taylor test: |f(x + d v) - f(x) - d <g, v>| over decades of d.

    A correct gradient leaves an O(d^2) residual (slope 2 on log-log axes);
    a wrong one an O(d) residual (slope 1, exit 1). A kink of f along v also
    leaves slope 1, with residuals of the same sign on both sides of x when
    the gradient lies between its one-sided slopes (passes as a kink).

    \b
    Examples:
      gradcheck sweep --entry 0,0
      gradcheck sweep --direction random --wrt both --seed 3 --plot taylor.png
    """
    from gradcheck_cli import session
    from gradcheck_cli.settings import COMMAND_LINE
    from gradcheck_cli.subject.options import InputOptions, load_subject

    if direction == "random" and entry is not None:
        raise click.UsageError("use just one of --entry or --direction random")
    if direction == "entry" and wrt is not None and len(wrt) > 1:
        raise click.UsageError(
            f"--wrt {','.join(wrt)} needs --direction random (an entry lies in one input)"
        )
    refuse_low_precision(inputs["dtype"], "sweep")
    refuse_output_clash(output_path, output_format)
    default_largest, default_smallest = session.SWEEP_RANGE[inputs["dtype"]]
    largest = default_largest if largest is None else largest
    smallest = default_smallest if smallest is None else smallest
    if smallest >= largest:
        raise click.BadParameter(f"must be below --largest {largest:g}", param_hint="--smallest")
    options = InputOptions(**inputs, cotangents=cotangents, seed=seed)
    if plot_path is not None:
        from gradcheck_cli.render.plot import check_plot_available

        check_plot_available()
    paths = prepare_outputs(
        {"--output": output_path, "--plot": plot_path}, options.protected_paths()
    )
    deltas = session.sweep_deltas(largest, smallest, COMMAND_LINE)
    with user_output_to_stderr():
        subject, report = session.sweep(
            lambda: load_subject(options),
            entry=None if entry is None else (entry.name, entry.index),
            random_direction=direction == "random",
            wrt=wrt,
            seed=seed,
            deltas=deltas,
            naming=COMMAND_LINE,
        )
    figures = {}
    plot_target = paths["--plot"]
    if plot_target is not None:
        from gradcheck_cli.render.plot import sweep_png

        figures["--plot"] = (plot_target, sweep_png(report))

    def draw(console: Any) -> None:
        from gradcheck_cli.render.experiments import render_sweep

        render_sweep(report, console)

    return emit(
        report,
        output_format,
        paths["--output"],
        draw,
        annotated_file=str(subject.model_file.path) if subject.model_file else None,
        figures=figures,
    )
