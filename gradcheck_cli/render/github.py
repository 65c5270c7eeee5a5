"""A report document as GitHub Actions workflow commands (`github_annotations`).

The test cases are `ci_cases.interpret`'s: an `::error` per failing case (at most 9: GitHub shows
10 error annotations per step, and the 10th is the summary, which counts the ones left out), a
`::warning` per case with inconclusive findings (inconclusive is not wrong), then the one-line
summary, the table's final line: `::error` when the verdict is failed (or the run ended in an
error), `::warning` when it is inconclusive, `::notice` when it passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradcheck_cli.render.ci_cases import ci_printable, interpret
from gradcheck_cli.render.layer_cases import layer_suites

GITHUB_ANNOTATIONS_PER_STEP = 10
"""GitHub shows at most 10 error and 10 warning annotations per step and drops the rest; the
per-input errors stop one short of that so the summary line is never the one dropped."""


def github_annotations(document: Mapping[str, Any], *, file: str | None) -> str:
    """The report `document` as GitHub Actions workflow commands, one per line.

    An `::error` per failing test case (title `gradcheck: dW wrong`, message: the count, the
    worst entry with its numbers, the diagnosis), a `::warning` per case with inconclusive
    findings, then one summary line: `::error title=gradcheck::FAILED: ...`,
    `::warning title=gradcheck::INCONCLUSIVE: ...` or `::notice title=gradcheck::PASSED: ...`.
    `file` (the model file's path, when there is one) is attached to the per-case lines.
    """
    if "layers" in document:
        return _layer_annotations(document, file)
    reading = interpret(document)
    location = {"file": file} if file else {}
    errors: list[str] = []
    warnings: list[str] = []
    for case in reading.cases:
        for problem in case.problems:
            if problem.kind == "error":
                continue  # an error document's one line is the summary below
            command, bucket = (
                ("error", errors) if problem.kind == "wrong" else ("warning", warnings)
            )
            properties = {**location, "title": f"gradcheck: {case.name} {problem.kind}"}
            bucket.append(_workflow_command(command, properties, problem.message))
    headline = reading.headline
    room = GITHUB_ANNOTATIONS_PER_STEP - 1
    if len(errors) > room:
        more = f" ({len(errors) - room} more failing cases: see the report)"
        headline = f"{headline.removesuffix('.')}{more}."
        errors = errors[:room]
    level = {"passed": "notice", "inconclusive": "warning"}.get(reading.verdict, "error")
    # An error (exit 2 or 3) has no case of its own: its one line carries the file.
    where = location if reading.verdict == "error" else {}
    summary = _workflow_command(level, {**where, "title": "gradcheck"}, headline)
    # The summary is never the annotation GitHub drops: the others of its level stop short.
    warnings = warnings[: GITHUB_ANNOTATIONS_PER_STEP - (level == "warning")]
    return "\n".join([*errors, *warnings, summary]) + "\n"


def _layer_annotations(document: Mapping[str, Any], file: str | None) -> str:
    """A document of several layers: one `::error` per layer with a wrong gradient or that
    could not be checked (its line: the count, the point, the worst entry, the diagnosis), a
    `::warning` per layer that could not be verified, then the summary line."""
    suites, verdict, headline = layer_suites(document)
    errors: list[str] = []
    warnings: list[str] = []
    for suite in suites:
        layer = suite.layer
        if layer.verdict == "passed":
            continue
        command, bucket = (
            ("warning", warnings)
            if layer.verdict == "inconclusive"
            else (
                "error",
                errors,
            )
        )
        message = layer.line
        problems = [p for case in suite.reading.cases for p in case.problems]
        wrong = [p for p in problems if p.kind == "wrong"]
        if wrong:
            message = f"{message} {wrong[0].message}"
        details = [d for p in problems[:1] for d in p.details if d.startswith(("inputs", "point"))]
        if details:
            message = f"{message} {details[-1]}"
        where = _layer_file(layer.model) or file
        properties = {**({"file": where} if where else {}), "title": f"gradcheck: {layer.name}"}
        properties["title"] += f" {layer.verdict}"
        bucket.append(_workflow_command(command, properties, message))
    room = GITHUB_ANNOTATIONS_PER_STEP - 1
    if len(errors) > room:
        headline = f"{headline.removesuffix('.')} ({len(errors) - room} more: see the report)."
        errors = errors[:room]
    level = {"passed": "notice", "inconclusive": "warning"}.get(verdict, "error")
    warnings = warnings[: GITHUB_ANNOTATIONS_PER_STEP - (level == "warning")]
    summary = _workflow_command(level, {"title": "gradcheck"}, headline)
    return "\n".join([*errors, *warnings, summary]) + "\n"


def _layer_file(model: str) -> str | None:
    """The model file of a layer's `FILE.py:NAME`."""
    head, colon, _ = model.rpartition(":")
    path = head if colon and head.endswith(".py") else model
    return path if path.endswith(".py") else None


def _workflow_command(command: str, properties: Mapping[str, str], message: str) -> str:
    """`::command key=value,key=value::message`, escaped as GitHub's runner unescapes it."""
    listed = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items())
    head = f"::{command} {listed}" if listed else f"::{command}"
    return f"{head}::{_escape_data(message)}"


def _escape_data(value: str) -> str:
    # `%` first, or the `%` of every later escape would be escaped again.
    return ci_printable(value).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    # `:` and `,` separate properties from each other and from the message.
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")
