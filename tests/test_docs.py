"""The README tells the truth: its first two commands, every option, every JSON field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest

from gradcheck_cli.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_blocks() -> list[str]:
    return re.findall(r"```(?:sh|bash|console)\n(.*?)```", README, flags=re.DOTALL)


def test_readme_opens_with_install_and_run_then_install_and_test() -> None:
    """The first shell block holds the newcomer's two commands: run the built-in example,
    then install the test dependencies and run the tests."""
    first = [line for line in _shell_blocks()[0].splitlines() if line.strip()]
    assert len(first) == 2
    assert "pip install" in first[0]
    assert first[0].endswith("gradcheck run")
    assert "[test]" in first[1]
    assert first[1].endswith("pytest")


def test_ci_runs_both_readme_commands_verbatim_in_order() -> None:
    """.ci/run runs exactly the README's two commands, as whole lines, the install-and-run one
    first, so CI proves the README right (the non-editable install included)."""
    commands = [line for line in _shell_blocks()[0].splitlines() if line.strip()]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    positions = [ci_lines.index(command) for command in commands]
    assert positions == sorted(positions)


def test_ci_starts_each_readme_command_in_a_clean_environment() -> None:
    """Before each README command, .ci/run removes the virtual environment the other left."""
    commands = [line for line in _shell_blocks()[0].splitlines() if line.strip()]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    starts = [ci_lines.index(command) for command in commands]
    for previous, start in zip([0, *starts], starts, strict=False):
        assert any(line.startswith("rm -rf .venv") for line in ci_lines[previous:start])


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_readme_documents_every_option(name: str) -> None:
    """Each command and each of its options appears in the README."""
    command = cli.commands[name]
    assert f"gradcheck {name}" in README
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            long_names = [o for o in param.opts if o.startswith("--") and o != "--help"]
            for option in long_names:
                assert option in README, f"{name} {option} is not in the README"


def _schema_fields(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            found.add(key)
            _schema_fields(value, found)
        for value in node.values():
            _schema_fields(value, found)
    elif isinstance(node, list):
        for value in node:
            _schema_fields(value, found)
    return found


def test_readme_documents_every_json_field() -> None:
    """Every field the JSON Schema names is explained in the README."""
    schema = json.loads((ROOT / "gradcheck_cli" / "schema.json").read_text(encoding="utf-8"))
    missing = sorted(f for f in _schema_fields(schema, set()) if f"`{f}`" not in README)
    assert not missing, f"README does not mention the JSON fields {missing}"


def test_readme_lists_the_exit_codes() -> None:
    """The exit codes CI scripts rely on are in the README."""
    for code in ("0", "1", "2", "130"):
        assert re.search(rf"\|\s*`?{code}`?\s*\|", README), f"exit code {code} not documented"
