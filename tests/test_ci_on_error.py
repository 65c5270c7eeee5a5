"""CI formats on every exit: when a run ends in bad usage or input (exit 2) or a bug
in gradcheck (exit 3), before or during the check, `--format json` prints an error document in
the schema, `--format github` an ::error with the one-line reason, `--junit-xml FILE` a file
with one <error> test case; stderr keeps its one line; never for --help or --version, never over
an input, never half-written, and a failure to write them leaves the exit code alone."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from helpers import gradcheck


def one_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gradcheck: ")
    return lines[0]


BAD = {
    "parse": ("run", "--cotangents", "0"),  # refused by click while parsing
    "entries": ("run", "--entries", "9,9"),  # refused by the session, before the check
    "model": ("run", "--model", "no_such_model.py"),  # the model cannot be loaded
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_json_is_an_error_document_in_the_schema(
    report_validator: Any,
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exit 2 with --format json: stdout is one JSON document, valid against the schema, whose
    `error` is stderr's line without its prefix."""
    monkeypatch.chdir(tmp_path)
    result = gradcheck(*BAD[case], "--format", "json")
    assert result.exit_code == 2
    line = one_line(result)
    document = json.loads(result.stdout)
    report_validator.validate(document)
    assert document == {
        "schema_version": 4,
        "command": "run",
        "passed": False,
        "verdict": "error",
        "error": line.removeprefix("gradcheck: error: "),
        "exit_code": 2,
    }


@pytest.mark.parametrize("command", ["run", "perturb", "sweep"])
def test_github_is_one_error_annotation(command: str) -> None:
    """Exit 2 with --format github: one ::error line, the reason, for every CI command."""
    result = gradcheck(command, "--x", "missing.csv", "--format", "github")
    assert result.exit_code == 2
    line = one_line(result)
    assert result.stdout == (
        f"::error title=gradcheck::ERROR: {line.removeprefix('gradcheck: error: ')}\n"
    )


def test_junit_is_a_file_with_one_error_case(tmp_path: Path) -> None:
    """Exit 2 with --junit-xml: the file exists, parses, and holds one <error> test case."""
    report = tmp_path / "gradcheck.xml"
    result = gradcheck("run", "--entries", "9,9", "--junit-xml", str(report))
    assert result.exit_code == 2
    line = one_line(result).removeprefix("gradcheck: error: ")
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert (suite.attrib["tests"], suite.attrib["errors"], suite.attrib["failures"]) == (
        "1",
        "1",
        "0",
    )
    (case,) = suite.iter("testcase")
    error = case.find("error")
    assert error is not None
    assert error.attrib["message"] == f"ERROR: {line}"
    assert [p.name for p in tmp_path.iterdir()] == ["gradcheck.xml"]  # no temporary file left


def test_an_internal_error_is_exit_3_in_every_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in gradcheck during the check (simulated): exit 3, its line in the JSON, the
    annotation and the JUnit file alike."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("gradcheck_cli.session.run_check", broken)
    report = tmp_path / "r.xml"
    result = gradcheck("run", "--format", "json", "--junit-xml", str(report))
    assert result.exit_code == 3
    line = one_line(result)
    assert line.startswith("gradcheck: internal error: RuntimeError: simulated bug")
    document = json.loads(result.stdout)
    assert (document["verdict"], document["exit_code"]) == ("error", 3)
    assert document["error"] == line.removeprefix("gradcheck: ")
    error = ET.parse(report).getroot().find("testsuite/testcase/error")
    assert error is not None
    github = gradcheck("run", "--format", "github")
    assert github.exit_code == 3
    assert github.stdout.startswith("::error title=gradcheck::ERROR: internal error: RuntimeError")


def test_help_and_version_print_no_error_document() -> None:
    for args in (("run", "--help", "--format", "json"), ("--version",)):
        result = gradcheck(*args)
        assert result.exit_code == 0
        assert "verdict" not in result.stdout


def test_the_junit_path_the_error_is_about_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--junit-xml naming an input: refused (exit 2), the input untouched, no JUnit anywhere;
    the JSON error document still on stdout."""
    monkeypatch.chdir(tmp_path)
    x = tmp_path / "x.csv"
    x.write_text("1,2\n3,4\n", encoding="utf-8")
    before = x.read_bytes()
    result = gradcheck("run", "--x", "x.csv", "--junit-xml", "x.csv", "--format", "json")
    assert result.exit_code == 2
    assert x.read_bytes() == before
    assert json.loads(result.stdout)["verdict"] == "error"
    dash = gradcheck("run", "--junit-xml", "-", "--format", "json")
    assert dash.exit_code == 2
    assert not (tmp_path / "-").exists()


def test_an_error_before_the_paths_are_checked_never_writes_over_an_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parse error comes before any path is checked: the JUnit path is checked then, against
    every file on the command line, so naming an input there writes nothing over it."""
    monkeypatch.chdir(tmp_path)
    w = tmp_path / "w.csv"
    w.write_text("1,2\n3,4\n5,6\n", encoding="utf-8")
    before = w.read_bytes()
    result = gradcheck("run", "--w", "w.csv", "--cotangents", "0", "--junit-xml", "./w.csv")
    assert result.exit_code == 2
    assert w.read_bytes() == before
    fresh = gradcheck("run", "--w", "w.csv", "--cotangents", "0", "--junit-xml", "j.xml")
    assert fresh.exit_code == 2
    assert ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/error") is not None


def test_an_existing_output_file_is_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--output FILE is written only when a check completes (docs/errors.md): an error leaves
    it as it was, while --format json and --junit-xml say what happened."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.json").write_text("old", encoding="utf-8")
    result = gradcheck("run", "--entries", "9,9", "--output", "out.json", "--format", "json")
    assert result.exit_code == 2
    assert (tmp_path / "out.json").read_text(encoding="utf-8") == "old"
    assert json.loads(result.stdout)["exit_code"] == 2


def test_a_failure_to_write_the_ci_outputs_keeps_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdout and the JUnit file both refuse the error (simulated disk full): exit 2 with the
    one line, no temporary file left, nothing half-written."""
    from gradcheck_cli.render import output

    def full(*args: object, **kwargs: object) -> None:
        raise output.OutputError("cannot write the report: No space left on device")

    monkeypatch.setattr(output, "write_stdout", full)
    monkeypatch.setattr(output, "write_atomically", full)
    monkeypatch.chdir(tmp_path)
    result = gradcheck("run", "--entries", "9,9", "--format", "json", "--junit-xml", "r.xml")
    assert result.exit_code == 2
    one_line(result)
    assert list(tmp_path.iterdir()) == []
