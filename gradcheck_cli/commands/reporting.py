"""What every command does around its check: keep the user's output off stdout, show progress,
write the report (table, JSON, GitHub annotations, --output, --junit-xml) and pick the exit code.

Exit codes live here and in cli.py (which catches what goes wrong):
0 passed, 1 a gradient is wrong, 2 bad usage or input, 3 internal error, 4 inconclusive (no
entry failed but some could not be verified), 129/130/143 hang-up, Ctrl-C, terminated,
141 the reader of stdout went away (a broken pipe).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from gradcheck_cli.report import AnyReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INCONCLUSIVE = 0, 1, 2, 3, 4
EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 129, 130, 141, 143
EXIT_CODES = {"passed": EXIT_OK, "failed": EXIT_FAILED, "inconclusive": EXIT_INCONCLUSIVE}


@contextlib.contextmanager
def user_output_to_stderr() -> Iterator[None]:
    """While user code runs (importing a model file, forward, backward), whatever it prints goes
    to stderr, so that stdout holds the report alone: `print` through sys.stdout, and a C
    extension's or a subprocess's writes through file descriptor 1, which points at stderr
    meanwhile."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        try:
            sys.__stdout__.flush() if sys.__stdout__ is not None else None
            saved = os.dup(1)
            os.dup2(2, 1)
        except (OSError, ValueError):  # no descriptor 1 or 2 (started with >&-): nothing to move
            saved = None

        def restore() -> None:
            if saved is not None:
                with contextlib.suppress(OSError):
                    os.dup2(saved, 1)
                os.close(saved)

        stack.callback(restore)
        yield


def refuse_output_clash(output_path: Path | None, output_format: str) -> None:
    if output_path is not None and str(output_path) == "-" and output_format != "json":
        raise click.UsageError(
            f"--output - writes the JSON report to stdout, where --format {output_format} "
            "writes too: use --format json, or give --output a file"
        )


def prepare_outputs(
    outputs: dict[str, Path | None], protected: dict[Path, str]
) -> dict[str, Path | None]:
    """Check every output path before any work (and before any user code can move the working
    directory); return them resolved. An output may not be one of the inputs."""
    from gradcheck_cli.output import OutputError, check_output_path, is_stdout

    resolved: dict[str, Path | None] = {}
    for option, path in outputs.items():
        if path is None:
            resolved[option] = None
            continue
        try:
            resolved[option] = (
                path if is_stdout(path) else check_output_path(path, protected=protected)
            )
        except OutputError as error:
            raise OutputError(f"{option} {error}") from None
    return resolved


def emit(
    report: AnyReport,
    output_format: str,
    output_path: Path | None,
    draw: Callable[[Any], None],
    *,
    junit_path: Path | None = None,
    annotated_file: str | None = None,
) -> int:
    """Write the report files (if asked), print the table, JSON or annotations, and return the
    exit code, which tells the same story as both."""
    from gradcheck_cli.output import (
        OutputError,
        is_stdout,
        to_json_text,
        write_atomically,
        write_stdout,
    )

    document = report.to_document()
    text = to_json_text(document)
    if output_path is not None and not is_stdout(output_path):
        try:
            write_atomically(output_path, text + "\n")
        except OutputError as error:
            raise OutputError(f"--output {error}") from None
    if junit_path is not None:
        from gradcheck_cli.ci_formats import junit_xml

        try:
            write_atomically(junit_path, junit_xml(document))
        except OutputError as error:
            raise OutputError(f"--junit-xml {error}") from None
    if output_format == "json":
        write_stdout(text + "\n")
    elif output_format == "github":
        from gradcheck_cli.ci_formats import github_annotations

        write_stdout(github_annotations(document, file=annotated_file))
    else:
        from gradcheck_cli.render import stdout_console

        console = stdout_console()
        with console.capture() as captured:
            draw(console)
        write_stdout(captured.get())
    return EXIT_CODES[report.verdict]


class ProgressReporter:
    """A rich progress bar on stderr, shown only for checks that last more than about a second,
    only on a terminal, and never in JSON mode."""

    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.description = description
        self.started = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, done: float, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.started < 1.0:
                return
            from gradcheck_cli.render import progress_bar

            self.bar = progress_bar()
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
