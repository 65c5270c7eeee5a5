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
