"""The `gradcheck` program's entry point: a guard around the import of the real command line.

Exit codes are a promise to CI scripts: 1 means "a gradient is wrong". If gradcheck itself is
broken (a module missing from an install, an exception that escapes before the command line's
own error handling), Python's default would be a traceback and exit 1; here it is one line on
stderr and exit 3, "internal error". This module imports nothing of gradcheck at its top, so
that it still runs when the rest of the package cannot be imported.
"""

from __future__ import annotations

import sys

from gradcheck_cli.exit_codes import EXIT_INTERNAL, EXIT_INTERRUPTED


def main() -> None:
    """Run the command line; whatever escapes it becomes exit 3 with one line (exit 130 for a
    Ctrl-C that arrives before the command line's own signal handling is in place)."""
    try:
        from gradcheck_cli.cli import main as command_line

        command_line()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except BaseException as error:  # the last guard: nothing may escape as exit 1
        if "--debug" in sys.argv[1:]:
            import traceback

            traceback.print_exc()
        detail = " ".join(f"{type(error).__name__}: {error}".split())
        _say(
            f"internal error: {detail} (a bug in gradcheck or a broken install; "
            "--debug shows the traceback)"
        )
        sys.exit(EXIT_INTERNAL)


def _say(message: str) -> None:
    try:
        sys.stderr.write(f"gradcheck: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # stderr closed or gone: the exit code still tells
