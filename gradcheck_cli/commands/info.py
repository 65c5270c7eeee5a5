"""`gradcheck models` and `gradcheck schema`: what the tool knows, for people and scripts."""

from __future__ import annotations

import click

from gradcheck_cli.exit_codes import EXIT_OK


@click.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
def models(output_format: str) -> int:
    """List the built-in models with their formulas and analytic gradients.

    \b
    Name a model as ACTIVATION-REDUCTION, e.g. --model tanh-mean.
    """
    from gradcheck_cli.numerics.models import builtin_model, builtin_model_names
    from gradcheck_cli.render.output import write_stdout

    rows = []
    for name in builtin_model_names():
        model = builtin_model(name)
        rows.append(
            {
                "name": name,
                "formula": model.formula,
                "activation": model.activation.formula,
                "derivative": model.activation.derivative_formula,
                "gradient": model.gradient_formula,
                "complex_step": model.complex_analytic,
            }
        )
    if output_format == "json":
        from gradcheck_cli.render.output import to_json_text

        write_stdout(to_json_text({"models": rows}) + "\n")
    else:
        from gradcheck_cli.render.model_list import render_models
        from gradcheck_cli.render.terminal import stdout_console

        console = stdout_console()
        with console.capture() as captured:
            render_models(rows, console)
        write_stdout(captured.get())
    return EXIT_OK


@click.command()
def schema() -> int:
    """Print the JSON Schema of the reports (--format json, --output).

    \b
    Example:
      gradcheck schema > gradcheck.schema.json
    """
    from importlib.resources import files

    from gradcheck_cli.render.output import write_stdout

    write_stdout(files("gradcheck_cli").joinpath("schema.json").read_text(encoding="utf-8"))
    return EXIT_OK
