"""Start-up stays cheap: --help and --version load neither numpy nor rich, a JSON run no rich."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, json, sys
from gradcheck_cli.cli import cli
with contextlib.redirect_stdout(io.StringIO()):
    code = cli.main({args!r}, standalone_mode=False)
print(json.dumps({{"code": code, "numpy": "numpy" in sys.modules, "rich": "rich" in sys.modules}}))
"""


def loaded(args: list[str]) -> dict[str, object]:
    """Run the CLI in a fresh interpreter and report which heavy modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["run", "--help"]])
def test_help_and_version_import_neither_numpy_nor_rich(args: list[str]) -> None:
    """--help and --version answer from click alone."""
    assert loaded(args) == {"code": 0, "numpy": False, "rich": False}


def test_json_run_imports_no_rich() -> None:
    """A JSON run needs numpy but never the table renderer."""
    assert loaded(["run", "--format", "json"]) == {"code": 0, "numpy": True, "rich": False}


def test_table_run_does_use_rich() -> None:
    """The probe can tell: a table run does import rich."""
    assert loaded(["run"])["rich"] is True


def test_an_exception_that_escapes_the_command_line_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The program's entry point turns whatever escapes the command line's own handling into
    exit 3 and one line naming it, never Python's traceback and exit 1."""
    import gradcheck_cli.cli
    from gradcheck_cli import entry

    def broken() -> None:
        raise RuntimeError("escaped\nover two lines")

    monkeypatch.setattr(gradcheck_cli.cli, "main", broken)
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert stopped.value.code == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "gradcheck: internal error: RuntimeError: escaped over two lines (a bug in gradcheck "
        "or a broken install; --debug shows the traceback)\n"
    )


def test_the_entry_point_passes_the_command_lines_exit_code_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A SystemExit from the command line (every ordinary ending) leaves the guard untouched."""
    import gradcheck_cli.cli
    from gradcheck_cli import entry

    def verdict() -> None:
        sys.exit(4)

    monkeypatch.setattr(gradcheck_cli.cli, "main", verdict)
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert stopped.value.code == 4
