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
import errno
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import click

from gradcheck_cli import __version__
from gradcheck_cli.commands.check import check
from gradcheck_cli.commands.info import models, schema
from gradcheck_cli.commands.perturb import perturb
from gradcheck_cli.commands.reporting import emit_failure, forget_outputs
from gradcheck_cli.commands.run import run
from gradcheck_cli.commands.sweep import sweep
from gradcheck_cli.exit_codes import (
    EXIT_BROKEN_PIPE,
    EXIT_HANGUP,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
)

__all__ = ["cli", "main"]


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
    """SIGINT, SIGTERM and SIGHUP (CI cancels a job with SIGTERM) stop the run alike: the first
    raises `Stopped`, which unwinds the check (closing its worker processes) and removes any
    half-written report on the way out; a second one while that happens ends the process at
    once, with the same one line and no traceback (a program) or raises again (in-process)."""
    first: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if first and GradcheckGroup.owns_process:
            _exit_now(first[0])
        first.append(signum)
        raise Stopped(signum)

    saved = {}
    for signum in STOP_CODES:
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            saved[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, handler)


_hard_exit = os._exit
"""Taken at import: while user code runs, os._exit is replaced by a guard that raises
(commands.reporting.refuse_os_exit); a signal handler must still be able to end the process."""


def _exit_now(signum: int) -> None:
    """End the process now, as the first signal would have, without unwinding any further."""
    code = STOP_CODES.get(signum, EXIT_TERMINATED)
    _stop_quietly()
    with contextlib.suppress(Exception):
        sys.stderr.write(f"gradcheck: {STOP_WORDS[code]}\n")
        sys.stderr.flush()
    _hard_exit(code)


def _stop_quietly() -> None:
    """The first signal wins: ignore the next ones while we clean up, stop our threads and
    worker processes, and remove any half-written report."""
    if GradcheckGroup.owns_process:
        # The process is about to exit: no handler needs restoring, no tile needs finishing.
        for signum in STOP_CODES:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, signal.SIG_IGN)
        if "gradcheck_cli.numerics.kernels" in sys.modules:
            sys.modules["gradcheck_cli.numerics.kernels"].cancel()
        if "multiprocessing" in sys.modules:
            _stop_worker_processes()
    if "gradcheck_cli.render.output" in sys.modules:
        sys.modules["gradcheck_cli.render.output"].remove_temporary_files()


def _stop_worker_processes() -> None:
    """Kill the worker processes still alive and release what they shared, before os._exit.

    The check's worker pool closes itself on the way out; this catches the workers of a pool
    stopped while it was starting, and the semaphores of its queues, which multiprocessing
    frees at a normal exit only: os._exit skips that, and its resource tracker would then
    print a warning about "leaked semaphore objects" after our one line.
    """
    import multiprocessing
    import multiprocessing.util

    for child in multiprocessing.active_children():
        with contextlib.suppress(Exception):
            child.kill()
    # The finalizers multiprocessing runs first at exit (priority >= 0: closing queues,
    # unlinking semaphores), without the later ones that wait for threads and processes.
    run_finalizers = getattr(multiprocessing.util, "_run_finalizers", None)
    if run_finalizers is not None:
        with contextlib.suppress(Exception):
            run_finalizers(0)


def _one_line(text: str) -> str:
    from gradcheck_cli.sanitize import printable

    return printable(" ".join(str(text).split()))


class ReaderGone(BaseException):
    """The reader of stdout went away (`gradcheck run | head -1`). A BaseException: click
    answers an EPIPE of its own accord, with exit code 1, which here means "a gradient is
    wrong"."""


_STDOUT_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG, errno.EIO}
"""What writing stdout meets when it leads to a full or failing disk (`> /dev/full`)."""


class GradcheckGroup(click.Group):
    """Turns every failure into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Past click, which would print a blank line of its own and raise Abort.
            raise Stopped(signal.SIGINT) from None
        except BrokenPipeError:
            raise ReaderGone from None

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **kw: Any
    ) -> Any:
        standalone = kw.pop("standalone_mode", True)
        argv = list(sys.argv[1:] if args is None else args)
        # The handlers stay in place until the exit code is known: a signal while an error is
        # being reported is a stop like any other, and a second one ends the process quietly.
        with signals_stop_work() if standalone else contextlib.nullcontext():
            try:
                code = self._outcome(argv, prog_name, **kw)
                if standalone:
                    code = _flush_stdout(code)
            except (Stopped, KeyboardInterrupt, click.exceptions.Abort) as stop:
                signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
                code = STOP_CODES.get(signum, EXIT_TERMINATED)
                _stop_quietly()
                click.echo(f"gradcheck: {STOP_WORDS[code]}", err=True)
                if standalone and self.owns_process:
                    # Our worker threads may be mid-tile: do not wait for them at exit.
                    with contextlib.suppress(Exception):
                        sys.stderr.flush()
                    _hard_exit(code)
        if standalone:
            sys.exit(code)
        return code

    def _outcome(self, argv: list[str], prog_name: str | None, **kw: Any) -> int:
        """Run the command; the exit code for how it ended, with its one line on stderr (and,
        for exit 2 and 3, in the CI formats the command line asked for)."""
        debug = "--debug" in argv
        forget_outputs()
        try:
            result = super().main(argv, prog_name, standalone_mode=False, **kw)
            return result if isinstance(result, int) else EXIT_OK
        except click.exceptions.Exit as done:
            return done.exit_code
        except click.exceptions.NoArgsIsHelpError as shown:
            # Bare `gradcheck`: the help, in full, as a first step rather than an error.
            click.echo(shown.ctx.get_help())
            return EXIT_OK
        except (ReaderGone, BrokenPipeError):
            # Nothing to say, and nobody to say it to. Not 1, which would mean "a gradient is
            # wrong".
            _discard_stdout()
            return EXIT_BROKEN_PIPE
        except click.ClickException as error:
            hint = ""
            if isinstance(error, click.UsageError) and error.ctx is not None:
                hint = f" (see '{error.ctx.command_path} --help')"
            return self._failed(argv, EXIT_USAGE, f"{_one_line(error.format_message())}{hint}")
        except MemoryError as error:
            _traceback(debug)
            detail = f": {_one_line(str(error))}" if str(error) else ""
            return self._failed(
                argv,
                EXIT_USAGE,
                f"out of memory{detail} (the inputs need more memory than this machine has "
                "free: check fewer entries with --entries random:K, or use --mode fast)",
            )
        except OSError as error:
            _traceback(debug)
            if error.errno in _STDOUT_ERRNOS and error.filename is None:
                # A write to stdout outside the report (click's --help, say): the disk is full.
                _discard_stdout()
                reason = _one_line(error.strerror or str(error))
                return self._failed(argv, EXIT_USAGE, f"cannot write to stdout: {reason}")
            return self._failed(argv, EXIT_INTERNAL, _internal_error(error))
        except Exception as error:
            from gradcheck_cli.errors import InputError

            _traceback(debug)
            if isinstance(error, InputError):
                return self._failed(argv, EXIT_USAGE, _one_line(str(error)))
            return self._failed(argv, EXIT_INTERNAL, _internal_error(error))

    def _failed(self, argv: list[str], code: int, line: str) -> int:
        """Say what went wrong in one line on stderr, then in the CI formats asked for."""
        prefix = "" if code == EXIT_INTERNAL else "error: "
        click.echo(f"gradcheck: {prefix}{line}", err=True)
        words = [k for k, word in enumerate(argv) if not word.startswith("-")]
        if words and argv[words[0]] in self.commands:
            emit_failure(self.commands[argv[words[0]]], argv[words[0] + 1 :], code, line)
        return code

    owns_process = False
    """True when started as the `gradcheck` program (main()), not called in-process (tests,
    CliRunner): only then may a stop end the process without waiting for its threads."""


def _traceback(debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()


def _internal_error(error: BaseException) -> str:
    return (
        f"internal error: {type(error).__name__}: {_one_line(str(error))} "
        "(a bug in gradcheck; --debug shows the traceback)"
    )


def _flush_stdout(code: int) -> int:
    """Flush stdout before exiting, so that a write that fails here is reported, not lost in
    the interpreter's own flush at exit (which would print a traceback and exit 120)."""
    stream: TextIO | None = sys.stdout  # None when the process started with stdout closed
    if stream is None:
        return code
    try:
        stream.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except (OSError, ValueError) as error:
        _discard_stdout()
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        click.echo(f"gradcheck: error: cannot write to stdout: {_one_line(str(reason))}", err=True)
        return EXIT_USAGE
    return code


def _discard_stdout() -> None:
    """Point file descriptor 1 at /dev/null: whatever is still buffered for stdout goes there
    at exit, instead of failing a second time."""
    from gradcheck_cli.render.output import discard_stdout

    discard_stdout()


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


for command in (run, check, perturb, sweep, models, schema):
    cli.add_command(command)


def main() -> None:
    GradcheckGroup.owns_process = True
    cli.main(prog_name="gradcheck")
