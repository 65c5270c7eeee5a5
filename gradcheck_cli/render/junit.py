"""A report document as JUnit XML, in the form pytest's `--junit-xml` writes (`junit_xml`).

The test cases are `ci_cases.interpret`'s. "Inconclusive" is a JUnit `<error>`, not a
`<failure>`: a JUnit error is a test that could not run to a verdict, which is what this is;
keeping it apart lets a CI dashboard count wrong gradients (failures) separately from checks to
retry (errors); both still fail the build. A case with wrong entries as well gets one
`<failure>` whose text also lists the inconclusive ones. A run that ended in an error (exit 2
or 3) is one `<error>` case. The suite's properties carry the verdict and the final line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gradcheck_cli.render.ci_cases import (
    INCONCLUSIVE,
    Interpretation,
    as_text,
    ci_printable,
    interpret,
)
from gradcheck_cli.render.layer_cases import layer_suites
from gradcheck_cli.render.story import as_mapping


def junit_xml(
    document: Mapping[str, Any],
    *,
    suite_name: str = "gradcheck",
    timestamp: datetime | None = None,
    elapsed_seconds: float | None = None,
) -> str:
    """The report `document` as JUnit XML text, in the form pytest's `--junit-xml` writes.

    One `<testsuite>` (named `suite_name`) inside `<testsuites>`; the test cases are described
    in `ci_cases`'s docstring. A document of several layers has one `<testsuite>` per layer,
    named as `--model` names the layer alone (`layer_cases`). `timestamp` (default: now, local
    time with its UTC offset, as pytest writes it) and `elapsed_seconds` (the suite's `time`,
    left out when None) are the only things the document does not hold.
    """
    when = timestamp if timestamp is not None else datetime.now().astimezone()
    time = "" if elapsed_seconds is None else f' time="{elapsed_seconds:.3f}"'
    if "layers" in document:
        return _layer_suites(document, suite_name, when, time)
    reading = interpret(document)
    model = as_mapping(document.get("model"))
    properties = [
        ("command", document.get("command", "run")),
        ("model", model.get("name")),
        ("formula", model.get("formula")),
        ("model_source", model.get("source")),
        ("schema_version", document.get("schema_version")),
        ("verdict", reading.verdict),
        ("summary", reading.headline),
    ]
    counts, lines = _suite(reading, suite_name, properties, when, time)
    return "\n".join(
        [
            '<?xml version="1.0" encoding="utf-8"?>',
            f'<testsuites name="{_attr(suite_name)}" {_counts(counts)}{time}>',
            *lines,
            "</testsuites>",
            "",
        ]
    )


def _layer_suites(document: Mapping[str, Any], name: str, when: datetime, time: str) -> str:
    suites, verdict, headline = layer_suites(document)
    totals = [0, 0, 0, 0]
    lines: list[str] = []
    for suite in suites:
        report = as_mapping(suite.layer.report)
        model = as_mapping(report.get("model"))
        properties = [
            ("command", document.get("command", "run")),
            ("layer", suite.layer.name),
            ("model", model.get("name")),
            ("formula", model.get("formula")),
            ("model_source", model.get("source") or document.get("source")),
            ("schema_version", document.get("schema_version")),
            ("verdict", suite.reading.verdict),
            ("summary", suite.reading.headline),
        ]
        counts, suite_lines = _suite(suite.reading, suite.name, properties, when, "")
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        lines += suite_lines
    summary = [("verdict", verdict), ("summary", headline)]
    head = "\n".join(
        f"  <!-- {key}: {_xml_text(value).replace('--', '- -')} -->" for key, value in summary
    )
    return "\n".join(
        [
            '<?xml version="1.0" encoding="utf-8"?>',
            f'<testsuites name="{_attr(name)}" {_counts(totals)}{time}>',
            head,
            *lines,
            "</testsuites>",
            "",
        ]
    )


def _counts(counts: list[int]) -> str:
    tests, failures, errors, skipped = counts
    return f'tests="{tests}" failures="{failures}" errors="{errors}" skipped="{skipped}"'


def _suite(
    reading: Interpretation,
    suite_name: str,
    properties: list[tuple[str, Any]],
    when: datetime,
    time: str,
) -> tuple[list[int], list[str]]:
    """One `<testsuite>`: its counts (tests, failures, errors, skipped) and its lines."""
    failures = errors = skipped = 0
    case_lines: list[str] = []
    for case in reading.cases:
        start = f'    <testcase classname="{_attr(reading.classname)}" name="{_attr(case.name)}"'
        wrong = [p for p in case.problems if p.kind == "wrong"]
        inconclusive = [p for p in case.problems if p.kind in (INCONCLUSIVE, "error")]
        if case.skipped is not None:
            skipped += 1
            body = f'<skipped message="{_attr(case.skipped)}" />'
        elif wrong:
            failures += 1
            # One result element per case keeps the suite's counts per case, as pytest counts.
            # The text repeats each message above its listing, so it reads alone too.
            lines = [
                line for problem in case.problems for line in (problem.message, *problem.details)
            ]
            body = _result_element("failure", "wrong-gradient", wrong[0].message, lines)
        elif inconclusive:
            errors += 1
            lines = [
                line for problem in inconclusive for line in (problem.message, *problem.details)
            ]
            kind = inconclusive[0].kind
            body = _result_element("error", kind, inconclusive[0].message, lines)
        else:
            case_lines.append(start + " />")
            continue
        case_lines += [start + ">", f"      {body}", "    </testcase>"]

    counts = [len(reading.cases), failures, errors, skipped]
    property_lines = [
        f'      <property name="{name}" value="{_attr(as_text(value))}" />'
        for name, value in properties
        if value is not None
    ]
    return counts, [
        f'  <testsuite name="{_attr(suite_name)}" {_counts(counts)}{time} '
        f'timestamp="{_attr(when.isoformat())}">',
        "    <properties>",
        *property_lines,
        "    </properties>",
        *case_lines,
        "  </testsuite>",
    ]


def _result_element(tag: str, kind: str, message: str, lines: Iterable[str]) -> str:
    text = "\n".join(lines)
    return f'<{tag} type="{kind}" message="{_attr(message)}">{_xml_text(text)}</{tag}>'


def _attr(value: str) -> str:
    """`value` for a double-quoted XML attribute: line breaks and tabs survive as references
    (a parser would otherwise normalise them to spaces)."""
    return _xml_text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def _xml_text(value: str) -> str:
    # `\r` as a reference, since parsers turn a literal one into `\n`; `>` as one too, since
    # text may not hold a literal `]]>`.
    return (
        ci_printable(value)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")
    )
