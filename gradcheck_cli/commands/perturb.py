"""`gradcheck perturb`: the seed's experiment, entry by entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gradcheck_cli.commands.options import (
    EntryRef,
    EntryType,
    PositiveFloat,
    binding_options,
    input_options,
    output_options,
    refuse_low_precision,
    tolerance_options,
)
from gradcheck_cli.commands.reporting import (
    emit,
    prepare_outputs,
    refuse_output_clash,
    user_output_to_stderr,
)


@click.command()
@input_options
@tolerance_options
@click.option(
    "--wrt",
    help="The input whose entry a bare --entry I,J perturbs. Default: the first checked input "
    "(X for the built-in models).",
)
@click.option(
    "--entry",
    "entries",
    type=EntryType(),
    multiple=True,
    help="Entry to perturb: w[0,1], b[3], scale[], or I,J in --wrt (zero-based; repeatable). "
    "Default: the first entry of --wrt.",
)
@click.option(
    "--delta",
    type=PositiveFloat(),
    help="How much to add to the entry [default: 1e-4 in float64, 1e-2 in float32].",
)
@binding_options
@click.option(
    "--reference",
    type=click.Choice(["torch"]),
    help="Add PyTorch autograd's gradient of the entry, as the seed post did (a built-in "
    "model, or a model file whose forward works on torch tensors).",
)
@output_options
def perturb(
    inputs: dict[str, Any],
    method: str,
    rtol: float | None,
    atol: float | None,
    wrt: str | None,
    entries: tuple[EntryRef, ...],
    delta: float | None,
    seed: int,
    cotangents: int,
    reference: str | None,
    output_format: str,
    output_path: Path | None,
    debug: bool,
) -> int:
    """The seed's experiment: add delta to one entry and compare the change in f
    with the change the gradient predicts.

    The verdict is not a fixed tolerance: the difference of a correct gradient is
    the O(delta^2) remainder, estimated from f(x - delta) too, plus round-off.

    \b
    Examples:
      gradcheck perturb --entry 0,0 --delta 1e-4
      gradcheck perturb --wrt W --entry 2,1 --entry 0,0
      gradcheck perturb --model layers.py:affine --entry 'b[1]'
      gradcheck perturb --entry 0,0 --reference torch
    """
    from gradcheck_cli import session
    from gradcheck_cli.settings import COMMAND_LINE, CheckSettings
    from gradcheck_cli.subject.options import InputOptions, load_subject

    refuse_low_precision(inputs["dtype"], "perturb")
    refuse_output_clash(output_path, output_format)
    options = InputOptions(**inputs, cotangents=cotangents, seed=seed)
    paths = prepare_outputs({"--output": output_path}, options.protected_paths())
    asked = CheckSettings(
        method=method,
        delta=delta,
        rtol=rtol,
        atol=atol,
        wrt=None if wrt is None else (wrt,),
        seed=seed,
        reference=reference,
    )
    with user_output_to_stderr():
        subject, report = session.perturb(
            lambda: load_subject(options),
            asked,
            entries=[(entry.name, entry.index) for entry in entries],
            dtype=inputs["dtype"],
            naming=COMMAND_LINE,
        )

    def draw(console: Any) -> None:
        from gradcheck_cli.render.experiments import render_perturb

        render_perturb(report, console)

    return emit(
        report,
        output_format,
        paths["--output"],
        draw,
        annotated_file=str(subject.model_file.path) if subject.model_file else None,
    )
