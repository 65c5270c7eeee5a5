"""What every command does around its check: keep the user's output off stdout, show progress,
write the report (table, JSON, GitHub annotations, --output, --junit-xml) and pick the exit code;
and, when a run ends in an error instead (exit 2 or 3), write the CI outputs the user asked for
anyway (`emit_failure`), so that a CI job reading them is never left with nothing.

The exit codes are in exit_codes.py; cli.py catches what goes wrong.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.exit_codes import EXIT_CODES

if TYPE_CHECKING:
    from gradcheck_cli.report import AnyReport


@contextlib.contextmanager
def user_output_to_stderr() -> Iterator[None]:
    """Around user code (importing a model file, forward, backward): keep stdout for the report
    and the process for gradcheck.

    - Whatever the user's code prints goes to stderr: `print` through sys.stdout, and a C
      extension's or a subprocess's writes through file descriptor 1, which points at stderr
      meanwhile.
    - The tool's own dependencies are imported first (`import_own_dependencies`), so that a
      module of the user's named like one of them (`rich.py` next to the model file, which is
      on sys.path while the file is imported) cannot take its place.
    - `os._exit` called by the user's code in this process raises `ExitRefused` (exit code 2)
      instead of ending gradcheck on the spot, with no report and the user's exit code (0
      would read as "passed"); see `refuse_os_exit`.
    """
    import_own_dependencies()
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
        stack.enter_context(refuse_os_exit())
        yield


def import_own_dependencies() -> None:
    """Import now what the rest of the command will import: the table renderer (rich) for a
    table, the CI formats for --format github or --junit-xml, matplotlib for --plot.

    Python caches a module by its name, so once ours are imported a user's module of the same
    name can no longer replace them (the user's code gets ours instead). A JSON run stays free
    of rich.
    """
    context = click.get_current_context(silent=True)
    params = context.params if context is not None else {}
    output_format = params.get("output_format", "table")
    if output_format == "table":
        import gradcheck_cli.render.errormap
        import gradcheck_cli.render.experiments
        import gradcheck_cli.render.layers_table
        import gradcheck_cli.render.table
        import gradcheck_cli.render.terminal
    if output_format == "github" or params.get("junit_path") is not None:
        import gradcheck_cli.render.github
        import gradcheck_cli.render.junit  # noqa: F401
    if params.get("plot_path") is not None:
        with contextlib.suppress(ImportError):  # check_plot_available has said what to do
            import matplotlib

            matplotlib.use("Agg")  # as gradcheck_cli.render.plot does: no window, no display needed
            import matplotlib.colors
            import matplotlib.pyplot
            import matplotlib.ticker
    import threadpoolctl  # noqa: F401  (the check holds BLAS threads with it)


class ExitRefused(UserCodeError):
    """The user's code called os._exit in gradcheck's own process.

    The code that calls the user's functions names the file and line it came from; the CLI
    makes it exit code 2.
    """

    def __init__(self, status: object) -> None:
        super().__init__(
            f"os._exit({status}) would end gradcheck's process before it reports; "
            "a model must return a value or raise"
        )


@contextlib.contextmanager
def refuse_os_exit() -> Iterator[None]:
    """While the user's code runs, a call to os._exit in this process raises `ExitRefused`.

    os._exit ends the process on the spot: no `finally`, no exit code of ours, empty stdout.
    Only a call through the `os` module in this process is caught: a child the user's code
    forks still exits, and a C extension calling _exit itself cannot be stopped.
    """
    real_exit = os._exit
    parent = os.getpid()

    def refused(status: int) -> NoReturn:
        if os.getpid() != parent:  # a child the user's code forked: let it exit
            real_exit(status)
        raise ExitRefused(status)

    os._exit = refused
    try:
        yield
    finally:
        os._exit = real_exit


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
    directory); return them resolved. An output may not be one of the inputs, nor the file of
    another output (the second write would replace the first)."""
    from gradcheck_cli.render.output import OutputError, check_output_path, is_stdout

    resolved: dict[str, Path | None] = {}
    written: dict[Path, str] = {}
    _checked_outputs.clear()
    for option, path in outputs.items():
        if path is not None and is_stdout(path) and option != "--output":
            raise OutputError(
                f"{option} -: only --output may be - (stdout); name a file (./- for a file "
                "called -)"
            )
        if path is None or is_stdout(path):
            resolved[option] = path
            continue
        try:
            target = check_output_path(path, protected=protected)
        except OutputError as error:
            raise OutputError(f"{option} {error}") from None
        if target in written and not _is_device(target):
            raise OutputError(
                f"{option} {path}: is also the file given to {written[target]}; each report "
                "needs a file of its own"
            )
        written[target] = option
        resolved[option] = target
    _checked_outputs.update(resolved)
    return resolved


def _is_device(path: Path) -> bool:
    """Whether `path` exists and is not a regular file: /dev/null may take every report."""
    return path.exists() and not path.is_file()


def emit(
    report: AnyReport,
    output_format: str,
    output_path: Path | None,
    draw: Callable[[Any], None],
    *,
    junit_path: Path | None = None,
    annotated_file: str | None = None,
    figures: Mapping[str, tuple[Path, bytes]] | None = None,
) -> int:
    """Write the report files (if asked: --output, --junit-xml and the `figures` by option,
    all together), print the table, JSON or annotations, and return the exit code, which tells
    the same story as both."""
    from gradcheck_cli.render.output import is_stdout, to_json_text, write_stdout, write_together

    document = report.to_document()
    text = to_json_text(document)
    files: list[tuple[str, Path, bytes]] = []
    if output_path is not None and not is_stdout(output_path):
        files.append(("--output", output_path, (text + "\n").encode("utf-8")))
    if junit_path is not None:
        from gradcheck_cli.render.junit import junit_xml

        files.append(("--junit-xml", junit_path, junit_xml(document).encode("utf-8")))
    for option, (path, data) in (figures or {}).items():
        files.append((option, path, data))
    # All of them or none: a JUnit file that cannot be written leaves --output's as it was.
    write_together(files)
    if output_format == "json":
        write_stdout(text + "\n")
    elif output_format == "github":
        from gradcheck_cli.render.github import github_annotations

        write_stdout(github_annotations(document, file=annotated_file))
    else:
        from gradcheck_cli.render.terminal import stdout_console

        console = stdout_console()
        # Drawn in memory, with stdout's width and colours: stdout is written once, by
        # write_stdout, which sees a full disk (rich's own writes would not say so).
        drawn = io.StringIO()
        console.file = drawn
        draw(console)
        write_stdout(drawn.getvalue())
    return EXIT_CODES[report.verdict]


_checked_outputs: dict[str, Path | None] = {}
"""The output paths of the running command once `prepare_outputs` has checked them: an error
after that point may write its JUnit file there."""

CI_COMMANDS = ("run", "perturb", "sweep", "check")
"""The commands whose outputs a CI job reads (--format json|github, --junit-xml)."""


def forget_outputs() -> None:
    """A new invocation: no output path is known to be checked yet."""
    _checked_outputs.clear()


def emit_failure(command: click.Command, args: Sequence[str], code: int, message: str) -> None:
    """After exit 2 (bad usage or input) or 3 (a bug in gradcheck), before or during the check:
    the error in the CI formats `command`'s arguments `args` asked for. `--format json` prints
    an error document (schema `error`: verdict "error", the one-line `message`, the exit code),
    `--format github` an `::error` annotation with the line, `--junit-xml FILE` a JUnit file
    whose one test case is an `<error>`, written atomically. stderr has already said the line.

    Only for the commands a CI job reads (`CI_COMMANDS`); never over an input or another output
    (a path not yet checked by `prepare_outputs` is checked here, against every path on the
    command line), never to the JUnit path the error is about; and a failure here changes
    nothing: the exit code stays `code`, no file is left half-written.
    """
    if command.name not in CI_COMMANDS:
        return
    try:
        context = command.make_context(str(command.name), list(args), resilient_parsing=True)
        params = context.params
        output_format = params.get("output_format") or "table"
        junit = _safe_junit(params, args, command.name == "check")
        from gradcheck_cli.report import error_document

        document = error_document(str(command.name), message, code)
        if junit is not None and "--junit-xml" not in message:
            _write_quietly(junit, document)
        if output_format in ("json", "github"):
            from gradcheck_cli.render.output import to_json_text, write_stdout

            if output_format == "json":
                text = to_json_text(document) + "\n"
            else:
                from gradcheck_cli.render.github import github_annotations

                text = github_annotations(document, file=_model_file(params))
            write_stdout(text)
    except Exception:
        # The error itself has been said on stderr; its exit code stands whatever happens here.
        _discard_quietly()


def _model_file(params: dict[str, Any]) -> str | None:
    """The model file of `--model FILE.py[:LAYER]`, when it is one, for the annotation."""
    spec = params.get("model_spec")
    if not isinstance(spec, str):
        return None
    path = spec.partition(":")[0] if ".py:" in spec else spec
    return path if path.endswith(".py") and Path(path).is_file() else None


def _safe_junit(params: dict[str, Any], words: Sequence[str], config: bool = False) -> Path | None:
    """The --junit-xml path to write the error to: as `prepare_outputs` checked it, or checked
    now against every file the command line names (inputs, the model, the other outputs). A
    config's inputs are named in the config, which may not have been read: before the config's
    files are known, only a file that does not exist yet is written."""
    if "--junit-xml" in _checked_outputs:
        return _checked_outputs["--junit-xml"]
    given = params.get("junit_path")
    if not isinstance(given, Path) or (config and given.exists()):
        return None
    from gradcheck_cli.render.output import OutputError, check_output_path, is_stdout

    if is_stdout(given):
        return None
    protected: dict[Path, str] = {}
    for word in words:
        for part in {word, word.partition("=")[2], word.partition(":")[0]}:
            if part and part != str(given) and Path(part).exists():
                protected[Path(part)] = "an input"
    for other in ("output_path", "plot_path"):
        path = params.get(other)
        if isinstance(path, Path) and not is_stdout(path):
            protected[path] = "another output"
    if sum(1 for word in words if word == str(given) or word.endswith(f"={given}")) > 1:
        return None  # the same path given twice: an input or another output
    try:
        return check_output_path(given, protected=protected)
    except OutputError:
        return None


def _write_quietly(path: Path, document: dict[str, Any]) -> None:
    from gradcheck_cli.render.junit import junit_xml
    from gradcheck_cli.render.output import OutputError, write_atomically

    with contextlib.suppress(OutputError, OSError):
        write_atomically(path, junit_xml(document))


def _discard_quietly() -> None:
    with contextlib.suppress(Exception):
        from gradcheck_cli.render.output import discard_stdout

        discard_stdout()


class ProgressReporter:
    """A rich progress bar on stderr, shown only for checks that last more than about a second,
    only on a terminal, and never in JSON mode. A run of several layers or points calls `step`
    as each starts: the bar then counts steps, and says which layer and point it is on."""

    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.description = description
        self.started = time.monotonic()
        self.bar: Any = None
        self.task: Any = None
        self.steps: tuple[int, int] | None = None

    def __call__(self, done: float, total: int) -> None:
        if not self.enabled:
            return
        if self.steps is not None:
            number, steps = self.steps
            fraction = done / total if total else 0.0
            self._show(number - 1 + min(fraction, 1.0), steps)
        else:
            self._show(done, total)

    def step(self, number: int, steps: int, label: str) -> None:
        """A layer (at a point) starts: step `number` of `steps`."""
        self.steps = (number, steps)
        self.description = label
        if self.enabled:
            self._show(number - 1, steps)

    def _show(self, completed: float, total: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < 1.0:
                return
            from gradcheck_cli.render.terminal import progress_bar

            self.bar = progress_bar()
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=completed, total=total, description=self.description)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
