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
    tolerance_options,
)
from gradcheck_cli.commands.reporting import (
    emit,
    prepare_outputs,
    refuse_output_clash,
    user_output_to_stderr,
)

DEFAULT_DELTA = {"float64": 1e-4, "float32": 1e-2}
"""The seed's 1e-4 in float64. float32's round-off (eps 1.2e-7) would swamp a change of f that
small, so its default is a step where the O(delta^2) remainder and round-off balance."""


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
    from gradcheck_cli.checks import core as checks
    from gradcheck_cli.subject.entry_specs import flat_index
    from gradcheck_cli.subject.options import InputOptions, load_subject

    refuse_output_clash(output_path, output_format)
    options = InputOptions(**inputs, cotangents=cotangents, seed=seed)
    paths = prepare_outputs({"--output": output_path}, options.protected_paths())
    with user_output_to_stderr():
        subject = load_subject(options)
        gradients = checks.validate_gradient(subject.models[0], subject.inputs)
        target = wrt or checks.resolve_wrt(subject.inputs, gradients, None)[0]
        if target not in subject.inputs:
            raise click.BadParameter(
                f"no input named {target}; the inputs are {', '.join(subject.inputs)}",
                param_hint="--wrt",
            )
        chosen = entries or (EntryRef(target, (0,) * subject.inputs[target].ndim),)
        located = []
        for entry in chosen:
            name = entry.name or target
            if name not in subject.inputs:
                from gradcheck_cli.errors import InputError

                raise InputError(
                    f"--entry {entry}: no input named {name}; the inputs are "
                    f"{', '.join(subject.inputs)}"
                )
            flat_index((entry.name, entry.index), name, subject.inputs, "--entry")
            located.append((name, entry.index))
        reference_gradients = None
        if reference == "torch":
            from gradcheck_cli.adapters.torch_reference import (
                reference_gradients as torch_reference,
            )

            reference_gradients = torch_reference(subject)
        report = checks.perturb_check(
            subject.models[0],
            subject.inputs,
            model_info=subject.info,
            sources=subject.sources,
            entries=located,
            delta=DEFAULT_DELTA[inputs["dtype"]] if delta is None else delta,
            method=method,
            rtol=rtol,
            atol=atol,
            precision=subject.precision,
            output_shape=subject.output_shape,
            reference=reference_gradients,
        )

    def draw(console: Any) -> None:
        from gradcheck_cli.render.table import render_perturb

        render_perturb(report, console)

    return emit(
        report,
        output_format,
        paths["--output"],
        draw,
        annotated_file=str(subject.model_file.path) if subject.model_file else None,
    )
