"""The command line: the group that dispatches to the commands (gradcheck_cli/commands/) and
turns whatever goes wrong into one line on stderr and the documented exit code.

Exit codes: 0 every check passed; 1 a gradient check failed; 2 bad usage or bad input (one line
on stderr, no traceback); 3 an internal error (a bug in gradcheck); 4 inconclusive (no entry
failed, but some could not be verified); 129, 130, 143 hang-up, Ctrl-C, terminated; 141 the
reader of stdout went away.

Start-up stays cheap: only click is imported here at module level; numpy is imported when a
command runs and rich only when a table is drawn, so `--help`, `--version` and JSON runs pay
for neither.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from gradcheck_cli import __version__
from gradcheck_cli.commands.info import models, schema
from gradcheck_cli.commands.options import METHODS
from gradcheck_cli.commands.perturb import perturb
from gradcheck_cli.commands.reporting import (
    EXIT_BROKEN_PIPE,
    EXIT_HANGUP,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
)
from gradcheck_cli.commands.run import run
from gradcheck_cli.commands.sweep import SWEEP_RANGE, sweep

__all__ = ["METHODS", "SWEEP_RANGE", "cli", "main"]


class Stopped(BaseException):
    """A signal asked us to stop (SIGINT, SIGTERM, SIGHUP). A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way (ours, or around user code)
    turns it into an error message."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_CODES = {
    signal.SIGINT: EXIT_INTERRUPTED,
    signal.SIGTERM: EXIT_TERMINATED,
    getattr(signal, "SIGHUP", signal.SIGTERM): EXIT_HANGUP,
}
STOP_WORDS = {
    EXIT_INTERRUPTED: "interrupted",
    EXIT_TERMINATED: "terminated",
    EXIT_HANGUP: "hang-up",
}


@contextlib.contextmanager
def signals_stop_work() -> Iterator[None]:
    """SIGTERM and SIGHUP (CI cancels a job with SIGTERM) stop the run the way Ctrl-C does."""

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    saved = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is None:
            continue
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            saved[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _stop_quietly() -> None:
    """The first signal wins: ignore the next ones while we clean up (a second Ctrl-C would
    otherwise print a traceback from the middle of the cleanup), stop our threads, and remove
    any half-written report."""
    if GradcheckGroup.owns_process:
        # The process is about to exit: no handler needs restoring, no tile needs finishing.
        for signum in STOP_CODES:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, signal.SIG_IGN)
        if "gradcheck_cli.kernels" in sys.modules:
            sys.modules["gradcheck_cli.kernels"].cancel()
    if "gradcheck_cli.output" in sys.modules:
        sys.modules["gradcheck_cli.output"].remove_temporary_files()


def _one_line(text: str) -> str:
    from gradcheck_cli.sanitize import printable

    return printable(" ".join(str(text).split()))


class GradcheckGroup(click.Group):
    """Turns every failure into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Past click, which would print a blank line of its own and raise Abort.
            raise Stopped(signal.SIGINT) from None

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **kw: Any
    ) -> Any:
        standalone = kw.pop("standalone_mode", True)
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        stopped_by: int | None = None
        try:
            with signals_stop_work() if standalone else contextlib.nullcontext():
                result = super().main(argv, prog_name, standalone_mode=False, **kw)
            code = result if isinstance(result, int) else EXIT_OK
        except click.exceptions.Exit as done:
            code = done.exit_code
        except click.exceptions.NoArgsIsHelpError as shown:
            # Bare `gradcheck`: the help, in full, as a first step rather than an error.
            click.echo(shown.ctx.get_help())
            code = EXIT_OK
        except (KeyboardInterrupt, click.exceptions.Abort):
            stopped_by = signal.SIGINT
            code = EXIT_INTERRUPTED
        except Stopped as stop:
            stopped_by = stop.signum
            code = STOP_CODES.get(stop.signum, EXIT_TERMINATED)
        except BrokenPipeError:
            # The reader went away (`gradcheck run | head -1`): nothing to say, and nobody to
            # say it to. Not 1, which would mean "a gradient is wrong".
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            code = EXIT_BROKEN_PIPE
        except click.ClickException as error:
            hint = ""
            if isinstance(error, click.UsageError) and error.ctx is not None:
                hint = f" (see '{error.ctx.command_path} --help')"
            click.echo(f"gradcheck: error: {_one_line(error.format_message())}{hint}", err=True)
            code = EXIT_USAGE
        except MemoryError as error:
            if debug:
                import traceback

                traceback.print_exc()
            detail = f": {_one_line(str(error))}" if str(error) else ""
            click.echo(
                f"gradcheck: error: out of memory{detail} (the inputs need more memory than "
                "this machine has free: check fewer entries with --entries random:K, or use "
                "--mode fast)",
                err=True,
            )
            code = EXIT_USAGE
        except Exception as error:
            from gradcheck_cli.errors import InputError

            if debug:
                import traceback

                traceback.print_exc()
            if isinstance(error, InputError):
                click.echo(f"gradcheck: error: {_one_line(str(error))}", err=True)
                code = EXIT_USAGE
            else:
                click.echo(
                    f"gradcheck: internal error: {type(error).__name__}: {_one_line(str(error))} "
                    "(a bug in gradcheck; --debug shows the traceback)",
                    err=True,
                )
                code = EXIT_INTERNAL
        if stopped_by is not None:
            _stop_quietly()
            click.echo(f"gradcheck: {STOP_WORDS[code]}", err=True)
        if standalone:
            if stopped_by is not None and self.owns_process:
                # Our worker threads may be mid-tile: do not wait for them at exit.
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os._exit(code)
            sys.exit(code)
        return code

    owns_process = False
    """True when started as the `gradcheck` program (main()), not called in-process (tests,
    CliRunner): only then may a stop end the process without waiting for its threads."""


@click.group(cls=GradcheckGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="gradcheck")
def cli() -> None:
    """Tell, with numbers, whether a hand-written gradient is right.

    With no --model/--x/--w every command runs on the seed example:
    f(X, W) = sum(sigmoid(X @ W)), X 3x3, W 3x2. A model file (--model
    FILE.py) is Python code that gradcheck runs, as 'python FILE.py' would.

    \b
    Exit codes: 0 all checks passed, 1 a gradient is wrong,
                2 bad usage or bad input, 3 internal error,
                4 inconclusive (nothing failed, some entries unverified),
                130/143/129 interrupted, terminated, hang-up,
                141 stdout closed by its reader (broken pipe).
    """


for command in (run, perturb, sweep, models, schema):
    cli.add_command(command)


def main() -> None:
    GradcheckGroup.owns_process = True
    cli.main(prog_name="gradcheck")
