"""One story everywhere: the table, the JSON, JUnit, the GitHub annotations and the
exit code of any report agree on the verdict, the counts and the worst entry. A property test
renders all four formats from random reports (random mixes of passing, failing, inconclusive
and doubtful entries, cotangents, fast mode with localising stopped early and blocks it could
not localise) built by the real assembly, and reads each back."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
from helpers import examples, gradcheck
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from synthetic import report, verdicts

from gradcheck_cli.exit_codes import EXIT_CODES
from gradcheck_cli.render.github import github_annotations
from gradcheck_cli.render.junit import junit_xml
from gradcheck_cli.render.story import story
from gradcheck_cli.render.table import render_run
from gradcheck_cli.report import (
    SIDE_EFFECT_KINDS,
    DirectionCheck,
    FastEvidence,
    InputSummary,
    RunReport,
    SideEffect,
    UnlocalisedBlock,
    entry_label,
)

# Per entry and cotangent: how it came out.
OUTCOMES = ("ok", "ok", "ok", "wrong", "inconclusive", "kink", "saturated")


def _numbers(outcome: str, value: float) -> tuple[float, float, str]:
    """(analytic, numerical, reason) for one row of the given outcome."""
    if outcome == "wrong":
        return value * 3.0 + 1.0, value, "mismatch"
    if outcome == "inconclusive":
        return value, value, "inconclusive"
    return value, value + 1e-9, outcome


@st.composite
def reports(draw: Any) -> RunReport:
    """A run report with side-effect checks, passed or not, around `gradients`."""
    made: RunReport = draw(gradients())
    effects = draw(
        st.lists(st.tuples(st.sampled_from(sorted(SIDE_EFFECT_KINDS)), st.booleans()), max_size=3)
    )
    found = tuple(
        SideEffect(
            kind,
            f"layer{k}_backward",
            passed,
            () if passed else ("dout",),
            f"layer{k}_backward {'is clean' if passed else 'writes into dout'}",
        )
        for k, (kind, passed) in enumerate(effects)
    )
    return dataclasses.replace(made, side_effects=found)


@st.composite
def gradients(draw: Any) -> RunReport:
    """A run report built by the assembly from random outcomes: full or fast mode, with or
    without cotangents, and in fast mode directions, blocks and a stopped localisation that
    agree with what was found (as fast.py makes them)."""
    count = draw(st.integers(1, 3))
    shapes = {
        f"x{k}": tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
        for k in range(count)
    }
    fast = draw(st.booleans())
    # Fast mode localises only after a direction failed: a clean run has no wrong leaves.
    clean = fast and draw(st.booleans())
    outcomes_drawn = [o for o in OUTCOMES if not (clean and o == "wrong")]
    cotangents = draw(st.sampled_from([None, 2]))
    numbers = [None] if cotangents is None else [1, 2]
    batches = []
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        if fast:
            chosen = sorted(draw(st.sets(st.integers(0, size - 1), max_size=size)))
            if not chosen:
                continue
            flat = np.asarray(chosen, dtype=np.intp)
        else:
            flat = np.arange(size, dtype=np.intp)
        for number in numbers:
            outcomes = draw(
                st.lists(st.sampled_from(outcomes_drawn), min_size=flat.size, max_size=flat.size)
            )
            rows = [_numbers(o, 0.1 + 0.37 * k) for k, o in enumerate(outcomes)]
            batches.append(
                (
                    name,
                    number,
                    flat,
                    verdicts(
                        [r[0] for r in rows], [r[1] for r in rows], 1e-6, [r[2] for r in rows]
                    ),
                )
            )
    if not fast:
        return report(shapes, batches, cotangents=cotangents)
    stopped = set() if clean else draw(st.sets(st.sampled_from(sorted(shapes))))
    made = report(shapes, batches, mode="fast", cotangents=cotangents, lower_bounds=sorted(stopped))
    blocks = tuple(
        UnlocalisedBlock(name, (0,) * len(shapes[name]), tuple(n - 1 for n in shapes[name]), 9)
        for name in (set() if clean else draw(st.sets(st.sampled_from(sorted(shapes)))))
    )
    summary = {}
    for name, shape in shapes.items():
        leaves = made.summary.get(name)
        base = leaves or InputSummary(
            0, 0, 0, 0, 0.0, None, None, 0, failed_at_least=name in stopped
        )
        summary[name] = dataclasses.replace(
            base, entries=int(np.prod(shape)), checked_one_by_one=leaves.entries if leaves else 0
        )
    found_wrong = any(s.failed for s in summary.values()) or bool(blocks) or bool(stopped)
    top = draw(
        st.lists(st.sampled_from(["ok", "mismatch", "inconclusive"]), min_size=1, max_size=4)
    )
    if found_wrong and "mismatch" not in top:
        top[0] = "mismatch"
    directions = [_direction("+".join(shapes), 0, reason) for reason in top]
    directions += [
        _direction(name, 1, draw(st.sampled_from(["ok", "mismatch", "inconclusive"])))
        for name in draw(st.sets(st.sampled_from(sorted(shapes))))
    ]
    evidence = FastEvidence(
        directions=len(top),
        detectable_error=None if "mismatch" in top else 1e-6,
        escape_probability=1e-6,
        unlocalised=blocks,
    )
    return dataclasses.replace(
        made, summary=summary, directions=tuple(directions), fast=evidence, omitted=0
    )


def _direction(wrt: str, depth: int, reason: str) -> DirectionCheck:
    passed = reason == "ok"
    numerical = 1.0 if passed or reason == "inconclusive" else 2.0
    return DirectionCheck(
        wrt,
        10,
        depth,
        1.0,
        numerical,
        abs(numerical - 1.0),
        1e-9,
        1e-8,
        1e-5,
        passed,
        reason=reason,
    )


def _table(made: RunReport, maps: str = "failing") -> list[str]:
    output = io.StringIO()
    console = Console(file=output, width=400, color_system=None, highlight=False)
    render_run(made, console, maps=maps)
    return output.getvalue().splitlines()


def _summary_rows(lines: list[str], names: list[str]) -> dict[str, list[str]]:
    start = [line.strip() for line in lines].index("Summary")
    rows = {}
    for line in lines[start + 3 : start + 3 + len(names)]:
        cells = line.split()
        rows[cells[0]] = cells
    return rows


def _github(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for line in github_annotations(document, file=None).splitlines():
        match = re.match(r"::(\w+) (.*?)::(.*)$", line)
        assert match is not None, line
        found.append((match.group(1), match.group(2), match.group(3)))
    return found


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_every_format_tells_the_same_story(made: RunReport) -> None:
    """Verdict, exit code, counts, worst entries and the final line agree in the table, the
    JSON, JUnit and the GitHub annotations, in full and fast mode."""
    document = made.to_document()
    told = story(document)
    verdict = document["verdict"]
    assert verdict == made.verdict == told.verdict
    assert document["passed"] is (verdict == "passed")
    code = EXIT_CODES[verdict]

    # The table: its final line is the story's; each summary row has the JSON's numbers.
    lines = _table(made)
    assert lines[-1] == told.headline
    assert lines[-1].split(":")[0] == {0: "PASSED", 1: "FAILED", 4: "INCONCLUSIVE"}[code]
    names = list(document["summary"])
    rows = _summary_rows(lines, names)
    for name, counts in document["summary"].items():
        cells = rows[name]
        failed = f"≥{counts['failed']}" if counts["failed_at_least"] else str(counts["failed"])
        assert cells[1:5] == [
            str(counts["entries"]),
            failed,
            str(counts["inconclusive"]),
            str(counts["doubtful"]),
        ]
        worst = counts["worst_index"]
        assert cells[-1] == ("-" if worst is None else entry_label(name, worst))
    # Every count of inconclusive or doubtful entries has rows with their reasons.
    for name, counts in document["summary"].items():
        own = [line for line in lines if line.startswith(f"{name}[")]
        if counts["inconclusive"]:
            assert any("? inconclusive" in line for line in own), name
        if counts["doubtful"]:
            assert any(re.search(r"\bok (kink|saturated)\b", line) for line in own), name
    text = "\n".join(lines)
    # The maps: exactly the inputs that did not pass, each naming the summary's worst entry.
    mapped = {line.split(" (")[0] for line in lines if "|analytic - numerical| / tolerance" in line}
    not_passed = {item.name for item in told.inputs if item.verdict != "passed"}
    assert mapped == not_passed & set(made.error_ratios)
    for name in mapped:
        worst = made.summary[name].worst_index
        assert worst is not None
        assert f"worst {entry_label(name, worst)}," in text

    # JUnit: the suite's failures and errors follow the verdict; each input's case its story.
    root = ET.fromstring(junit_xml(document).encode("utf-8"))
    suite = root.find("testsuite")
    assert suite is not None
    failures, errors = int(suite.attrib["failures"]), int(suite.attrib["errors"])
    assert (failures > 0) is (verdict == "failed")
    assert (errors > 0 and failures == 0) is (verdict == "inconclusive")
    properties = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert (properties["verdict"], properties["summary"]) == (verdict, told.headline)
    cases = {case.attrib["name"]: case for case in suite.iter("testcase")}
    for item in told.inputs:
        case = cases[f"d{item.name}"]
        failure = case.find("failure")
        assert (failure is not None) is (item.verdict == "failed")
        if failure is not None and item.failed:
            lower = "at least " if item.failed_at_least else ""
            assert failure.attrib["message"].startswith(f"{lower}{item.failed} of {item.entries} ")
            assert f"; worst {item.worst}" in failure.attrib["message"]
        if item.verdict == "inconclusive":
            assert case.find("error") is not None

    # Side effects: a failed one fails the run; each has its line, its case and its ::error.
    effects = document["side_effects"]
    if any(not e["passed"] for e in effects):
        assert verdict == "failed"
    for effect in effects:
        said = "passed" if effect["passed"] else "FAILED"
        assert f"side effect ({effect['kind']}): {said}: {effect['message']}" in lines
        case = cases[f"{effect['kind']} of {effect['role']}"]
        assert (case.find("failure") is not None) is (not effect["passed"])

    # GitHub: the summary line is the table's final line, at the verdict's level.
    annotations = _github(document)
    level, _, message = annotations[-1]
    assert level == {"passed": "notice", "failed": "error", "inconclusive": "warning"}[verdict]
    assert message == told.headline
    titles = [
        dict(p.split("=", 1) for p in props.split(","))["title"].replace("%3A", ":")
        for lvl, props, _ in annotations[:-1]
        if lvl == "error"
    ]
    effect_titles = {f"gradcheck: {e['kind']} of {e['role']} wrong" for e in effects}
    assert {t for t in titles if t in effect_titles} == {
        f"gradcheck: {e['kind']} of {e['role']} wrong" for e in effects if not e["passed"]
    }
    wrong = {
        t.removeprefix("gradcheck: d").removesuffix(" wrong")
        for t in titles
        if t not in effect_titles
    }
    wrong.discard("irections")  # fast mode's own case, `directions`
    failing_inputs = {item.name for item in told.inputs if item.verdict == "failed"}
    assert wrong == failing_inputs

    # The diagnosis names the summary's worst entry when it names a worst one.
    for diagnosis in made.diagnosis:
        match = re.search(r"worst (\w+\[[\d,]*\])", diagnosis.message)
        if match and diagnosis.kind == "unexplained" and "no finite" not in diagnosis.message:
            assert match.group(1) == entry_label(
                diagnosis.wrt, made.summary[diagnosis.wrt].worst_index or ()
            )


def test_the_property_reaches_every_verdict_and_mode() -> None:
    """The strategy is not stuck in one corner: all verdicts in both modes come up. (200
    examples in every profile: fewer could miss a corner by chance.)"""
    seen: set[tuple[str, bool]] = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(reports())
    def collect(made: RunReport) -> None:
        seen.add((made.verdict, made.fast is not None))

    collect()
    assert seen == {
        (v, fast) for v in ("passed", "failed", "inconclusive") for fast in (True, False)
    }


# --- Where formats could contradict each other, one by one -------------------------------------


def test_an_inconclusive_sweep_is_a_warning_everywhere() -> None:
    """sweep --largest 1e-12 --smallest 1e-16: INCONCLUSIVE (exit 4) in the table, and so in
    the GitHub annotations (no ::error, no FAILED) and the JSON, which is the verdict's report,
    not an error document: exit 4 is a verdict, and stderr stays empty."""
    args = ("sweep", "--largest", "1e-12", "--smallest", "1e-16")
    table = gradcheck(*args)
    github = gradcheck(*args, "--format", "github")
    json_run = gradcheck(*args, "--format", "json")
    document = json.loads(json_run.stdout)
    assert table.exit_code == github.exit_code == json_run.exit_code == 4
    assert json_run.stderr == ""
    assert table.stdout.strip().splitlines()[-1].startswith("INCONCLUSIVE:")
    assert document["verdict"] == "inconclusive"
    assert "::error" not in github.stdout
    assert "FAILED" not in github.stdout
    assert (
        github.stdout.strip().splitlines()[-1].startswith("::warning title=gradcheck::INCONCLUSIVE")
    )


def _fast_report(top: list[str], leaves: list[str], blocks: int = 0) -> RunReport:
    values = [0.5 + k for k in range(len(leaves))]
    rows = [_numbers(o, v) for o, v in zip(leaves, values, strict=True)]
    batches = []
    if leaves:
        batch = verdicts([r[0] for r in rows], [r[1] for r in rows], 1e-6, [r[2] for r in rows])
        batches.append(("w", None, np.arange(len(leaves), dtype=np.intp), batch))
    made = report({"w": (4, 4)}, batches, mode="fast")
    leaf = made.summary.get("w")
    base = leaf or InputSummary(0, 0, 0, 0, 0.0, None, None, 0)
    summary = {"w": dataclasses.replace(base, entries=16, checked_one_by_one=len(leaves))}
    evidence = FastEvidence(
        len(top),
        None if "mismatch" in top else 1e-6,
        1e-6,
        tuple(UnlocalisedBlock("w", (0, 0), (3, 3), 16) for _ in range(blocks)),
    )
    return dataclasses.replace(
        made,
        summary=summary,
        directions=tuple(_direction("w", 0, reason) for reason in top),
        fast=evidence,
    )


def test_an_inconclusive_direction_is_no_failure_in_ci() -> None:
    """Fast mode, one of four directions unverified and nothing wrong: INCONCLUSIVE in the table,
    a JUnit <error> (not a <failure>), a ::warning, and no "disagrees" anywhere."""
    made = _fast_report(["ok", "inconclusive", "ok", "ok"], [])
    assert made.verdict == "inconclusive"
    document = made.to_document()
    table = _table(made)
    assert table[-1].startswith("INCONCLUSIVE: nothing disagrees, but 1 of 4 random directions")
    xml = junit_xml(document)
    assert "<failure" not in xml
    assert '<error type="inconclusive"' in xml
    annotations = github_annotations(document, file=None)
    assert "random direction disagree" not in annotations
    assert "::error" not in annotations


def test_a_kink_is_named_wherever_a_sweep_passes_with_it() -> None:
    """A sweep that passes because of a kink says so in the table's words in CI too."""
    document = {
        "schema_version": 3,
        "command": "sweep",
        "passed": True,
        "verdict": "passed",
        "model": {"name": "relu-sum"},
        "direction": {"kind": "entry", "wrt": "X", "index": [0, 0]},
        "slope": 1.0,
        "reason": "kink",
    }
    line = github_annotations(document, file=None).strip()
    assert line.startswith("::notice title=gradcheck::PASSED: the residual falls like delta")
    assert "f has a kink along v" in line
    assert "slope 1.00 along X[0,0]" in line


def test_ci_names_the_diagnosis_and_fast_modes_blocks() -> None:
    """The diagnosis is in JUnit's failure and GitHub's error; a block fast mode could not
    localise is named in both, with its index range."""
    wrong = [_numbers("wrong", 0.5 + k) for k in range(4)]
    batch = verdicts([r[0] for r in wrong], [r[1] for r in wrong])
    made = report({"b": (4,)}, [("b", None, np.arange(4, dtype=np.intp), batch)])
    (diagnosis,) = made.diagnosis
    document = made.to_document()
    assert f"diagnosis ({diagnosis.kind}): {diagnosis.message}" in junit_xml(document)
    assert f"diagnosis ({diagnosis.kind})" in github_annotations(document, file=None)

    blocked = _fast_report(["mismatch"], [], blocks=1).to_document()
    expected = "failing block: 16 entries of w from w[0,0] to w[3,3]"
    assert expected in junit_xml(blocked)
    assert expected in github_annotations(blocked, file=None)
    assert story(blocked).headline.startswith(
        "FAILED: 1 of 1 random direction disagrees; the error lies in 1 failing block"
    )


def test_one_label_and_one_wording_everywhere(model_path: Any) -> None:
    """W[2,0] in the table, the diagnosis, JUnit and GitHub; "the one entry agrees" in the table
    and in CI alike."""
    spec = model_path("dense_column_bug")
    table = gradcheck("run", "--model", spec).stdout
    document = json.loads(gradcheck("run", "--model", spec, "--format", "json").stdout)
    worst = entry_label("w", document["summary"]["w"]["worst_index"])
    assert _summary_rows(table.splitlines(), ["x", "w", "b"])["w"][-1] == worst
    assert re.search(r"\w\[\d+, \d+\]", document["diagnosis"][0]["message"]) is None
    assert f"worst {worst}" in junit_xml(document)
    assert f"worst {worst}" in github_annotations(document, file=None)
    assert f"worst {worst}, ratio" in table

    one = report({"s": (1,)}, [("s", None, np.arange(1, dtype=np.intp), verdicts([0.5], [0.5]))])
    headline = story(one.to_document()).headline
    assert headline == "PASSED: the one entry agrees."
    assert _table(one)[-1] == headline
    assert (
        github_annotations(one.to_document(), file=None)
        == f"::notice title=gradcheck::{headline}\n"
    )


def test_maps_for_failing_inputs_only_unless_asked(model_path: Any) -> None:
    """A failing run maps only the inputs that did not pass; --map (= --map all) maps every
    checked input, --map none none."""
    spec = model_path("dense_column_bug")
    title = "|analytic - numerical| / tolerance per entry"

    def mapped(*extra: str) -> set[str]:
        lines = gradcheck("run", "--model", spec, *extra).stdout.splitlines()
        return {line.split(" (")[0] for line in lines if title in line}

    assert mapped() == {"w"}
    assert mapped("--map") == mapped("--map", "all") == {"x", "w", "b"}
    assert mapped("--map", "none") == set()
    passing = gradcheck("run").stdout
    assert title not in passing
    assert title in gradcheck("run", "--map").stdout


def test_inconclusive_entries_are_marked_in_the_map() -> None:
    """An inconclusive entry is a ? in the map, not the · of a verified one."""
    outcomes = ["ok", "inconclusive", "ok", "ok"]
    rows = [_numbers(o, 0.5) for o in outcomes]
    batch = verdicts([r[0] for r in rows], [r[1] for r in rows], 1e-6, [r[2] for r in rows])
    made = report({"b": (4,)}, [("b", None, np.arange(4, dtype=np.intp), batch)])
    lines = _table(made)
    (cells,) = [line.split("│ ")[1] for line in lines if line.startswith("0 │ ")]
    assert cells.split() == ["·", "?", "·", "·"]
    assert any("1 inconclusive (?)" in line for line in lines)
    assert lines[-1].startswith("INCONCLUSIVE")


def test_fast_modes_count_is_at_least_n_in_every_format() -> None:
    """Localising stopped: the table's cell reads ≥N, JUnit and GitHub "at least N", the final
    line "at least N wrong entries found"."""
    leaves = ["wrong"] * 8
    made = _fast_report(["mismatch"], leaves)
    made = dataclasses.replace(
        made, summary={"w": dataclasses.replace(made.summary["w"], failed_at_least=True)}
    )
    document = made.to_document()
    rows = _summary_rows(_table(made), ["w"])
    assert rows["w"][2] == "≥8"
    assert "at least 8 of 16 entries of w disagree" in junit_xml(document)
    assert "at least 8 of 16 entries of w disagree" in github_annotations(document, file=None)
    assert "at least 8 wrong entries found" in story(document).headline
