"""CI formats: a report document as JUnit XML and as GitHub Actions workflow commands.

The documents are plain dicts in the shape `gradcheck run --format json` prints (schema_version
2, and 1 where noted), so these tests need neither the CLI nor the numerics.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite

from gradcheck_cli.render.github import github_annotations
from gradcheck_cli.render.junit import junit_xml

# --- Documents ----------------------------------------------------------------------------------


def _entry(
    wrt: str,
    index: list[int],
    analytic: float,
    numerical: float,
    tolerance: float = 1e-8,
    reason: str | None = None,
) -> dict[str, Any]:
    """One `checks` entry; it passes when |analytic - numerical| is within `tolerance`."""
    abs_error = abs(analytic - numerical)
    passed = abs_error <= tolerance and reason != "inconclusive"
    return {
        "wrt": wrt,
        "index": index,
        "analytic": analytic,
        "numerical": numerical,
        "abs_error": abs_error,
        "rel_error": abs_error / abs(numerical) if numerical else None,
        "error_estimate": tolerance / 10,
        "tolerance": tolerance,
        "step": 6e-6,
        "reason": reason or ("ok" if passed else "mismatch"),
        "passed": passed,
    }


def _summary(checks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    own = [c for c in checks if c["wrt"] == name]
    unpassed = [c for c in own if not c["passed"]]
    worst = max(own, key=lambda c: c["abs_error"] / c["tolerance"])
    # As the core counts them (schema 2): the wrong and the inconclusive apart.
    unsure = sum(1 for c in unpassed if c["reason"] == "inconclusive")
    return {
        "entries": len(own),
        "failed": len(unpassed) - unsure,
        "inconclusive": unsure,
        "doubtful": 0,
        "max_abs_error": max(c["abs_error"] for c in own),
        "max_rel_error": None,
        "worst_index": worst["index"],
        "listed": len(own),
    }


def _run_document(
    checks: list[dict[str, Any]],
    *,
    model_name: str = "dense-tanh-bug",
    extra_inputs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A schema_version 2 `run` document over the inputs that `checks` name."""
    names = list(dict.fromkeys(c["wrt"] for c in checks))
    inputs: dict[str, dict[str, Any]] = {
        name: {
            "name": name,
            "source": "builtin:seed",
            "shape": [3, 3],
            "dtype": "float64",
            "checked": True,
            "why": None,
        }
        for name in names
    }
    inputs.update(extra_inputs or {})
    wrong = any(not c["passed"] and c["reason"] != "inconclusive" for c in checks)
    unsure = any(c["reason"] == "inconclusive" for c in checks)
    return {
        "schema_version": 2,
        "command": "run",
        "passed": all(c["passed"] for c in checks),
        # As every schema 2 document has it: what the exit code says.
        "verdict": "failed" if wrong else "inconclusive" if unsure else "passed",
        "model": {"name": model_name, "formula": "sum(tanh(X @ W))", "source": "/abs/model.py"},
        "inputs": inputs,
        "settings": {"method": "central", "mode": "full"},
        "checks": checks,
        "summary": {name: _summary(checks, name) for name in names},
        "omitted": 0,
    }


def _failing_run() -> dict[str, Any]:
    """X agrees everywhere; W has two wrong entries, W[2,1] the worst; labels is a constant."""
    checks = [
        _entry("X", [0, 0], 0.5, 0.5),
        _entry("X", [0, 1], 0.25, 0.25 + 1e-12),
        _entry("W", [0, 0], 0.125, 0.125),
        _entry("W", [1, 0], 0.5, 0.75),
        _entry("W", [2, 1], 1.0, 2.0),
    ]
    labels = {
        "name": "labels",
        "shape": [3],
        "dtype": "int64",
        "checked": False,
        "why": "constant: an integer array",
    }
    return _run_document(checks, extra_inputs={"labels": labels})


def _parse(text: str) -> ET.Element:
    # As a CI reader gets it: UTF-8 bytes from a file.
    return ET.fromstring(text.encode("utf-8"))


def _cases(text: str) -> dict[str, ET.Element]:
    return {case.attrib["name"]: case for case in _parse(text).iter("testcase")}


# --- JUnit XML: run -----------------------------------------------------------------------------


def test_junit_failing_run_has_one_case_per_input() -> None:
    """One testsuite in testsuites; dX passes, dW fails, the constant input is skipped."""
    root = _parse(junit_xml(_failing_run()))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.attrib["name"] == "gradcheck"
    counts = {key: suite.attrib[key] for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "3", "failures": "1", "errors": "0", "skipped": "1"}
    names = [case.attrib["name"] for case in suite.iter("testcase")]
    assert names == ["dX", "dW", "dlabels"]
    assert {case.attrib["classname"] for case in suite.iter("testcase")} == {"dense-tanh-bug"}
    dx, dw, dlabels = suite.iter("testcase")
    assert list(dx) == []
    assert [child.tag for child in dw] == ["failure"]
    assert [child.tag for child in dlabels] == ["skipped"]


def test_junit_failure_names_the_worst_entry_with_its_numbers() -> None:
    """The failure message counts the wrong entries and gives the worst one's values."""
    failure = _cases(junit_xml(_failing_run()))["dW"].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == (
        "2 of 3 entries of W disagree; worst W[2,1]: analytic 1.0, numerical 2.0, "
        "abs error 1.0, tolerance 1e-08, reason mismatch"
    )
    assert failure.attrib["type"] == "wrong-gradient"
    lines = (failure.text or "").split("\n")
    assert lines[1:] == [
        "W[2,1]: analytic 1.0, numerical 2.0, abs error 1.0, tolerance 1e-08, reason mismatch",
        "W[1,0]: analytic 0.5, numerical 0.75, abs error 0.25, tolerance 1e-08, reason mismatch",
    ]


def test_junit_skipped_input_gives_its_reason() -> None:
    """An input marked `checked: false` is a skipped case whose message is the `why`."""
    skipped = _cases(junit_xml(_failing_run()))["dlabels"].find("skipped")
    assert skipped is not None
    assert skipped.attrib["message"] == "labels not checked: constant: an integer array"


def test_junitparser_reads_the_same_counts_and_results() -> None:
    """A JUnit reader library sees the suite's counts and each case's result type."""
    xml = JUnitXml.fromstring(junit_xml(_failing_run()).encode("utf-8"))
    (suite,) = list(xml)
    assert isinstance(suite, TestSuite)
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == (
        "gradcheck",
        3,
        1,
        0,
        1,
    )
    results = {case.name: [type(r) for r in case.result] for case in suite}
    assert results == {"dX": [], "dW": [Failure], "dlabels": [Skipped]}
    (failure,) = next(case for case in suite if case.name == "dW").result
    assert failure.message is not None
    assert failure.message.startswith("2 of 3 entries of W disagree; worst W[2,1]")


def test_junit_lists_the_ten_worst_entries_worst_first() -> None:
    """Twelve wrong entries: the text lists the ten furthest past tolerance, then "2 more"."""
    # Entry k is off by k+1, so the worst is the last one.
    checks = [_entry("W", [k], 0.0, float(k + 1)) for k in range(12)]
    failure = _cases(junit_xml(_run_document(checks)))["dW"].find("failure")
    assert failure is not None
    lines = (failure.text or "").split("\n")
    listed = [line.split(":")[0] for line in lines[1:-1]]
    assert listed == [f"W[{k}]" for k in range(11, 1, -1)]
    assert lines[-1] == "... and 2 more"
    assert failure.attrib["message"].startswith("12 of 12 entries of W disagree; worst W[11]")


def test_junit_passing_run_has_no_failures() -> None:
    """A passing document: every case passes and the suite counts zero failures and errors."""
    checks = [_entry("X", [0, 0], 0.5, 0.5), _entry("W", [1, 1], 0.25, 0.25)]
    (suite,) = list(JUnitXml.fromstring(junit_xml(_run_document(checks)).encode("utf-8")))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (2, 0, 0, 0)
    assert all(case.result == [] for case in suite)


def test_junit_zero_dimensional_input_label() -> None:
    """A 0-D input's entry is labelled `scale[]`."""
    document = _run_document([_entry("scale", [], 1.0, 3.0)])
    failure = _cases(junit_xml(document))["dscale"].find("failure")
    assert failure is not None
    assert "worst scale[]: analytic 1.0, numerical 3.0" in failure.attrib["message"]


def test_junit_version_1_document() -> None:
    """Version 1: no `checked`/`inconclusive` fields; an input absent from summary is skipped."""
    document = _failing_run()
    document["schema_version"] = 1
    del document["inputs"]["labels"]
    for info in document["inputs"].values():
        for key in ("name", "checked", "why"):
            del info[key]
    for counts in document["summary"].values():
        del counts["inconclusive"]
    # What `--wrt W` leaves in a version 1 document: X among the inputs, not in the summary.
    document["checks"] = [c for c in document["checks"] if c["wrt"] == "W"]
    del document["summary"]["X"]
    cases = _cases(junit_xml(document))
    assert list(cases) == ["dX", "dW"]
    skipped = cases["dX"].find("skipped")
    assert skipped is not None
    assert skipped.attrib["message"] == "X not checked: not selected for this run"
    failure = cases["dW"].find("failure")
    assert failure is not None
    assert failure.attrib["message"].startswith("2 of 3 entries of W disagree")


def test_junit_inconclusive_alone_is_an_error() -> None:
    """Entries that could not be verified, and none wrong: an <error>, not a <failure>."""
    checks = [
        _entry("X", [0, 0], 0.5, 0.5),
        _entry("X", [1, 2], 0.5, 0.5 + 1e-3, reason="inconclusive"),
    ]
    document = _run_document(checks)
    root = _parse(junit_xml(document))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.attrib["failures"], suite.attrib["errors"]) == ("0", "1")
    (read,) = list(JUnitXml.fromstring(junit_xml(document).encode("utf-8")))
    assert [[type(r) for r in case.result] for case in read] == [[Error]]
    error = _cases(junit_xml(document))["dX"].find("error")
    assert error is not None
    assert error.attrib["type"] == "inconclusive"
    assert error.attrib["message"] == (
        "1 of 2 entries of X could not be verified; worst X[1,2]: analytic 0.5, "
        "numerical 0.501, abs error 0.0010000000000000009, tolerance 1e-08, reason inconclusive"
    )


def test_junit_wrong_and_inconclusive_entries_make_one_failure() -> None:
    """A case with both: one <failure> about the wrong entries whose text lists both kinds."""
    checks = [
        _entry("X", [0, 0], 0.5, 1.5),
        _entry("X", [0, 1], 0.5, 0.5 + 1e-3, reason="inconclusive"),
        _entry("X", [0, 2], 0.5, 0.5),
    ]
    case = _cases(junit_xml(_run_document(checks)))["dX"]
    assert [child.tag for child in case] == ["failure"]
    failure = case[0]
    assert failure.attrib["message"].startswith("1 of 3 entries of X disagrees; worst X[0,0]")
    text = failure.text or ""
    assert "1 of 3 entries of X could not be verified; worst X[0,1]" in text
    assert "X[0,1]: analytic 0.5, numerical 0.501" in text


def test_junit_counts_come_from_the_summary_when_entries_are_omitted() -> None:
    """Entries not listed (`omitted`) still count: the message gives the summary's totals."""
    document = _run_document([_entry("W", [0, 0], 1.0, 2.0)])
    document["summary"]["W"].update(entries=4096, failed=37, listed=1)
    document["omitted"] = 4095
    failure = _cases(junit_xml(document))["dW"].find("failure")
    assert failure is not None
    assert failure.attrib["message"].startswith("37 of 4096 entries of W disagree; worst W[0,0]")
    assert (failure.text or "").split("\n")[-1] == "... and 36 more"


# --- JUnit XML: fast mode -----------------------------------------------------------------------


def _direction(wrt: str, depth: int, analytic: float, numerical: float) -> dict[str, Any]:
    abs_error = abs(analytic - numerical)
    return {
        "wrt": wrt,
        "entries": 8192,
        "depth": depth,
        "analytic": analytic,
        "numerical": numerical,
        "abs_error": abs_error,
        "error_estimate": 1e-10,
        "tolerance": 1e-9,
        "step": 1e-5,
        "passed": abs_error <= 1e-9,
    }


def test_junit_fast_mode_unlocalised_direction_fails_its_input() -> None:
    """A failing direction over W with no wrong entry listed still fails dW, with its numbers."""
    checks = [_entry("X", [0, 0], 0.5, 0.5), _entry("W", [0, 0], 0.5, 0.5)]
    document = _run_document(checks)
    document["passed"] = False
    document["verdict"] = "failed"
    document["directions"] = [
        _direction("both", 0, 0.25, 0.5),
        _direction("X", 1, 0.125, 0.125),
        _direction("W", 1, 0.125, 0.375),
    ]
    cases = _cases(junit_xml(document))
    assert list(cases) == ["dX", "dW", "directions"]
    assert list(cases["dX"]) == []
    failure = cases["dW"].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == (
        "a random direction over W disagrees and no single entry was localised: "
        "direction over W (8192 entries, depth 1): analytic ⟨g, v⟩ 0.125, numerical 0.375, "
        "abs error 0.25, tolerance 1e-09"
    )
    directions = cases["directions"].find("failure")
    assert directions is not None
    assert directions.attrib["message"].startswith(
        "1 of 1 random direction disagrees; first: direction over both (8192 entries, depth 0)"
    )


def test_junit_fast_mode_directions_case_passes_when_all_agree() -> None:
    """In fast mode the `directions` case exists and passes when every direction agrees."""
    document = _run_document([_entry("X", [0, 0], 0.5, 0.5)])
    document["directions"] = [_direction("X", 0, 0.25, 0.25), _direction("X", 0, 0.5, 0.5)]
    cases = _cases(junit_xml(document))
    assert list(cases) == ["dX", "directions"]
    assert list(cases["directions"]) == []


# --- JUnit XML: other commands, verdict, suite attributes ---------------------------------------


def _perturbation(index: list[int], gradient: float, numerical: float) -> dict[str, Any]:
    abs_error = abs(gradient - numerical) * 1e-4
    return {
        "wrt": "X",
        "index": index,
        "delta": 0.0001,
        "f": 1.0,
        "f_perturbed": 1.0 + numerical * 1e-4,
        "actual_change": numerical * 1e-4,
        "predicted_change": gradient * 1e-4,
        "gradient": gradient,
        "abs_error": abs_error,
        "rel_error": 0.5,
        "remainder_estimate": 0.0,
        "numerical": numerical,
        "error_estimate": 1e-10,
        "tolerance": 1e-9,
        "reason": "ok" if abs_error <= 1e-9 else "mismatch",
        "passed": abs_error <= 1e-9,
    }


def test_junit_perturb_has_one_case_per_perturbation() -> None:
    """perturb: a case per perturbed entry, named with its step; the wrong one fails."""
    document = {
        "schema_version": 2,
        "command": "perturb",
        "passed": False,
        "model": {"name": "m", "formula": "f", "source": "builtin"},
        "perturbations": [_perturbation([0, 0], 0.5, 0.5), _perturbation([1, 2], 0.5, 1.0)],
    }
    cases = _cases(junit_xml(document))
    assert list(cases) == ["X[0,0] delta=0.0001", "X[1,2] delta=0.0001"]
    assert list(cases["X[0,0] delta=0.0001"]) == []
    failure = cases["X[1,2] delta=0.0001"].find("failure")
    assert failure is not None
    assert failure.attrib["message"].startswith(
        "X[1,2] + 0.0001: actual change 0.0001, predicted change 5e-05; analytic 0.5, numerical 1.0"
    )


def _sweep_document(reason: str, slope: float | None, passed: bool) -> dict[str, Any]:
    return {
        "schema_version": 2,
        "command": "sweep",
        "passed": passed,
        "verdict": "passed" if passed else "inconclusive" if reason == "inconclusive" else "failed",
        "model": {"name": "m", "formula": "f", "source": "builtin"},
        "rows": [
            {"delta": 0.1, "residual": 0.01, "in_fit": True},
            {"delta": 0.01, "residual": 0.001, "in_fit": True},
        ],
        "direction": {"kind": "entry", "wrt": "X", "index": [0, 0]},
        "directional_derivative": 0.25,
        "slope": slope,
        "noise_floor": 1e-15,
        "reason": reason,
    }


@pytest.mark.parametrize(
    ("reason", "slope", "passed", "tag", "message"),
    [
        ("slope-2", 2.001, True, None, None),
        (
            "slope-1",
            1.0,
            False,
            "failure",
            "FAILED: the residual falls like delta: the gradient is wrong along v (slope 1.00 "
            "along X[0,0]); ⟨g, v⟩ 0.25, noise floor 1e-15",
        ),
        (
            "inconclusive",
            None,
            False,
            "error",
            "INCONCLUSIVE: too few residuals above round-off to fit a slope; widen "
            "--largest/--smallest (slope undefined along X[0,0]); ⟨g, v⟩ 0.25, noise floor 1e-15",
        ),
    ],
)
def test_junit_sweep_is_one_case(
    reason: str, slope: float | None, passed: bool, tag: str | None, message: str | None
) -> None:
    """sweep: one `taylor X[0,0]` case; slope 1 fails, inconclusive is an error."""
    case = _cases(junit_xml(_sweep_document(reason, slope, passed)))["taylor X[0,0]"]
    if tag is None:
        assert list(case) == []
        return
    (result,) = list(case)
    assert result.tag == tag
    assert result.attrib["message"] == message
    assert (result.text or "").split("\n")[1:] == [
        "delta 0.1: residual 0.01 (in the fit)",
        "delta 0.01: residual 0.001 (in the fit)",
    ]


def test_junit_unknown_command_is_one_case() -> None:
    """A command this module does not know is one case that follows the document's verdict."""
    document = {"schema_version": 2, "command": "audit", "passed": False, "model": {"name": "m"}}
    failure = _cases(junit_xml(document))["audit"].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == "audit: the report's verdict is FAILED"


def test_junit_failed_verdict_without_a_failing_entry_still_fails() -> None:
    """`passed: false` with nothing itemised adds a failing case: the suite is never green."""
    document = _run_document([_entry("X", [0, 0], 0.5, 0.5)])
    document["passed"] = False
    document["verdict"] = "failed"
    suite = _parse(junit_xml(document)).find("testsuite")
    assert suite is not None
    assert (suite.attrib["tests"], suite.attrib["failures"]) == ("2", "1")


def test_junit_suite_attributes_timestamp_time_and_name() -> None:
    """suite_name, timestamp and elapsed time appear as pytest writes them."""
    when = datetime(2025, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=1)))
    text = junit_xml(_failing_run(), suite_name="grads", timestamp=when, elapsed_seconds=1.23456)
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>\n')
    suite = _parse(text).find("testsuite")
    assert suite is not None
    assert suite.attrib["name"] == "grads"
    assert suite.attrib["timestamp"] == "2025-03-01T12:30:00+01:00"
    assert suite.attrib["time"] == "1.235"
    properties = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert properties["model"] == "dense-tanh-bug"
    assert properties["model_source"] == "/abs/model.py"


# --- JUnit XML: escaping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "read_back"),
    [
        ("""<&"'> model""", """<&"'> model"""),
        ("a]]>b", "a]]>b"),
        ("line\nbreak\rand\ttab", "line\nbreak\rand\ttab"),
        ("nul\x00 esc\x1b vt\x0b", "nul\\x00 esc\\x1b vt\\x0b"),
        ("surrogate \ud800 nonchar \ufffe", "surrogate \\ud800 nonchar \\ufffe"),
        ("naïve ∂f/∂x 😀", "naïve ∂f/∂x 😀"),
    ],
)
def test_junit_hostile_names_stay_valid_xml(name: str, read_back: str) -> None:
    """Markup and line breaks read back exactly; characters XML forbids are spelled out."""
    checks = [_entry(name, [0], 0.0, 1.0)]
    text = junit_xml(_run_document(checks, model_name=name), suite_name=name)
    root = _parse(text)
    case = root.find("testsuite/testcase")
    assert case is not None
    assert case.attrib["classname"] == read_back
    assert case.attrib["name"] == "d" + read_back
    failure = case.find("failure")
    assert failure is not None
    assert f"worst {read_back}[0]" in failure.attrib["message"]
    assert (failure.text or "").endswith(
        f"\n{read_back}[0]: analytic 0.0, numerical 1.0, abs error 1.0, tolerance 1e-08, "
        "reason mismatch"
    )
    assert JUnitXml.fromstring(text.encode("utf-8")) is not None


@given(name=st.text(alphabet=st.characters(exclude_categories=()), max_size=30))
def test_junit_any_name_gives_parsable_xml(name: str) -> None:
    """Any text, surrogates and controls included, as model and input name parses as XML."""
    document = _run_document([_entry(name, [0], 0.0, 1.0)], model_name=name)
    root = _parse(junit_xml(document))
    case = root.find("testsuite/testcase")
    assert case is not None
    assert case.find("failure") is not None


# --- GitHub workflow commands -------------------------------------------------------------------

COMMAND_GRAMMAR = re.compile(
    r"^::(error|warning|notice)(?: ([a-z]+=[^,:]*(?:,[a-z]+=[^,:]*)*))?::(.*)$"
)


def _unescape(text: str, *, is_property: bool) -> str:
    """GitHub's runner's unescaping: data knows %25, %0D, %0A; properties also %3A and %2C."""
    codes = {"%25": "%", "%0D": "\r", "%0A": "\n"}
    if is_property:
        codes |= {"%3A": ":", "%2C": ","}
    return re.sub("|".join(codes), lambda match: codes[match.group()], text)


def _commands(output: str) -> list[tuple[str, dict[str, str], str]]:
    """Each line as (command, properties, message), unescaped; every line must parse."""
    assert output.endswith("\n")
    parsed = []
    for line in output[:-1].split("\n"):
        match = COMMAND_GRAMMAR.match(line)
        assert match is not None, line
        command, listed, message = match.groups()
        properties = {}
        for pair in (listed or "").split(",") if listed else []:
            key, value = pair.split("=", 1)
            properties[key] = _unescape(value, is_property=True)
        parsed.append((command, properties, _unescape(message, is_property=False)))
    return parsed


def test_github_failing_run() -> None:
    """An ::error per failing input with the worst entry, then the ::error summary line."""
    output = github_annotations(_failing_run(), file="models/dense.py")
    assert output == (
        "::error file=models/dense.py,title=gradcheck%3A dW wrong::2 of 3 entries of W disagree; "
        "worst W[2,1]: analytic 1.0, numerical 2.0, abs error 1.0, tolerance 1e-08, "
        "reason mismatch\n"
        "::error title=gradcheck::FAILED: 2 of 5 entries disagree.\n"
    )


def test_github_passing_run_is_one_notice() -> None:
    """A passing run prints one ::notice line and nothing else."""
    checks = [_entry("X", [k], 0.5, 0.5) for k in range(9)]
    checks += [_entry("W", [k], 0.5, 0.5) for k in range(6)]
    output = github_annotations(_run_document(checks), file="models/dense.py")
    assert output == "::notice title=gradcheck::PASSED: all 15 entries agree.\n"


def test_github_no_file_property_without_a_file() -> None:
    """file=None (a built-in model) leaves the file property out."""
    (first, _summary_line) = _commands(github_annotations(_failing_run(), file=None))
    assert first[1] == {"title": "gradcheck: dW wrong"}


def test_github_inconclusive_is_a_warning() -> None:
    """Inconclusive entries are a ::warning, and so is the summary: the verdict is inconclusive
    (exit 4), as the table and the JSON say, not FAILED."""
    checks = [
        _entry("X", [0, 0], 0.5, 0.5),
        _entry("X", [1, 2], 0.5, 0.5 + 1e-3, reason="inconclusive"),
    ]
    commands = _commands(github_annotations(_run_document(checks), file=None))
    assert [(command, props["title"]) for command, props, _ in commands] == [
        ("warning", "gradcheck: dX inconclusive"),
        ("warning", "gradcheck"),
    ]
    assert commands[0][2].startswith("1 of 2 entries of X could not be verified; worst X[1,2]")
    assert commands[1][2].startswith(
        "INCONCLUSIVE: no entry disagrees, but 1 of 2 entries could not be verified"
    )


def test_github_fast_mode_unlocalised_direction() -> None:
    """Fast mode, no entry localised: the direction's numbers carry the error lines."""
    document = _run_document([_entry("X", [0, 0], 0.5, 0.5)])
    document["passed"] = False
    document["verdict"] = "failed"
    document["directions"] = [_direction("X", 0, 0.25, 0.5)]
    commands = _commands(github_annotations(document, file=None))
    assert [props["title"] for _, props, _ in commands] == [
        "gradcheck: dX wrong",
        "gradcheck: directions wrong",
        "gradcheck",
    ]
    assert "analytic ⟨g, v⟩ 0.25, numerical 0.5" in commands[0][2]
    assert commands[2][2] == (
        "FAILED: 1 of 1 random direction disagrees; no single entry was found wrong: small "
        "errors spread over many entries add up along v."
    )


def test_github_errors_stop_short_of_the_per_step_limit() -> None:
    """Twelve failing inputs: nine error lines, and the summary (10th) says three more failed."""
    checks = [_entry(f"w{k}", [0], 0.0, 1.0) for k in range(12)]
    commands = _commands(github_annotations(_run_document(checks), file=None))
    assert len(commands) == 10
    assert commands[-1][2] == (
        "FAILED: 12 of 12 entries disagree (3 more failing cases: see the report)."
    )


def test_github_sweep_and_perturb_summaries() -> None:
    """sweep and perturb documents end in their own summary line."""
    sweep = _commands(github_annotations(_sweep_document("slope-2", 1.9994, True), file=None))
    assert sweep == [
        (
            "notice",
            {"title": "gradcheck"},
            "PASSED: the residual falls like delta^2, as for a correct gradient (slope 2.00 "
            "along X[0,0]).",
        )
    ]
    perturb = {
        "schema_version": 2,
        "command": "perturb",
        "passed": False,
        "model": {"name": "m"},
        "perturbations": [_perturbation([0, 0], 0.5, 0.5), _perturbation([1, 2], 0.5, 1.0)],
    }
    *_, summary = _commands(github_annotations(perturb, file=None))
    assert summary[2] == "FAILED: 1 of 2 perturbations disagrees."


@pytest.mark.parametrize(
    "hostile",
    [
        "a,b:c",
        "100% sure",
        "two\nlines\r\nand ::error::injected",
        "%0A already escaped-looking %25",
        "esc\x1b[31mred",
    ],
)
def test_github_hostile_text_keeps_one_line_per_command_and_round_trips(hostile: str) -> None:
    """Any input name or file path stays on its line and unescapes back to itself."""
    file = f"/work/{hostile}.py"
    document = _run_document([_entry(hostile, [0], 0.0, 1.0)], model_name=hostile)
    commands = _commands(github_annotations(document, file=file))
    assert len(commands) == 2
    printable = hostile.replace("\x1b", "\\x1b")
    command, properties, message = commands[0]
    assert command == "error"
    assert properties == {
        "file": f"/work/{printable}.py",
        "title": f"gradcheck: d{printable} wrong",
    }
    assert message.startswith(f"1 of 1 entry of {printable} disagrees; worst {printable}[0]")


@given(text=st.text(alphabet=st.characters(exclude_categories=()), max_size=30))
def test_github_any_text_matches_the_grammar(text: str) -> None:
    """Any input name and file path give lines that match the workflow-command grammar."""
    document = _run_document([_entry(text, [0], 0.0, 1.0)], model_name=text)
    commands = _commands(github_annotations(document, file=text or None))
    assert [command for command, _, _ in commands] == ["error", "error"]


def test_documents_are_not_modified() -> None:
    """Both functions only read the document."""
    document = _failing_run()
    before = copy.deepcopy(document)
    junit_xml(document)
    github_annotations(document, file="m.py")
    assert document == before
