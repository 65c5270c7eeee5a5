"""`gradcheck check`: every check a project's config lists ([tool.gradcheck] in pyproject.toml),
in one run, with the outputs of a whole-file run."""

from __future__ import annotations

from pathlib import Path

import click

from gradcheck_cli.commands.options import output_options
from gradcheck_cli.commands.reporting import (
    ProgressReporter,
    prepare_outputs,
    refuse_output_clash,
    user_output_to_stderr,
)


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The TOML file whose [tool.gradcheck] table lists the checks [default: the nearest "
    "pyproject.toml with one, from the working directory upward].",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Worker processes for each check's forward calls, over the config's jobs [default: "
    "the config's, else one per core].",
)
@click.option(
    "--junit-xml",
    "junit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write a JUnit XML report: one test suite per layer.",
)
@output_options
def check(
    config_path: Path | None,
    jobs: int | None,
    junit_path: Path | None,
    output_format: str,
    output_path: Path | None,
    debug: bool,
) -> int:
    """Run every gradient check of a project's config, as CI does.

    The checks are the [[tool.gradcheck.checks]] tables of pyproject.toml (each a model:
    a whole file or FILE.py:NAME, its inputs, params and settings; the [tool.gradcheck]
    table's settings are every check's defaults). Paths are relative to the config file.
    Model files are Python code that gradcheck runs: run only files you trust.

    \b
    Examples:
      gradcheck check
      gradcheck check --config ci/gradcheck.toml --format github --junit-xml gradcheck.xml
    """
    import dataclasses

    from gradcheck_cli.commands.project_output import emit_project
    from gradcheck_cli.project import config, runner
    from gradcheck_cli.settings import CONFIG

    refuse_output_clash(output_path, output_format)
    path = config_path if config_path is not None else config.find_config(Path.cwd())
    read = config.read_config(path)
    requests = read.requests
    if jobs is not None:
        requests = tuple(
            dataclasses.replace(r, asked=dataclasses.replace(r.asked, jobs=jobs)) for r in requests
        )
    protected = read.protected_paths()
    paths = prepare_outputs({"--output": output_path, "--junit-xml": junit_path}, protected)
    reporter = ProgressReporter(output_format == "table", "checking")
    try:
        with user_output_to_stderr():
            report = runner.run_checks(
                requests, source=str(read.path), naming=CONFIG, progress=reporter
            )
    finally:
        reporter.close()
    return emit_project(
        report,
        output_format,
        paths["--output"],
        junit_path=paths["--junit-xml"],
        protected=protected,
    )
