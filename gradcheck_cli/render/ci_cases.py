"""How a report document reads as CI test cases: what `junit.py` and `github.py` both print.

CI systems read JUnit XML and GitHub annotations, not our JSON. Both formats read a report
document (what `--format json` prints, schema_version 1 or 2) and compute nothing new: every
number they print is one the document holds. Pure: standard library only (no click, no rich, no
numpy), so the CLI can call them on the document it already has.

How a document becomes test cases (the same cases drive both formats):

- `run`: one test case per input, named "d" + the input's name (`dX`, `dW`, `dkernel`), with the
  model's name as classname. A case fails when entries of that input disagree; its text lists
  the worst listed entries (furthest past their tolerance, up to 10). An input the document marks
  as not checked (`checked: false`, or absent from `summary`, as `--wrt X` leaves W in version 1)
  is skipped, with the reason. In fast mode (the document has `directions`) there is one more
  case, `directions`, that fails when a top-level random direction disagrees; and a failing
  direction over a single input fails that input's case even when no entry was localised.
- `perturb`: one test case per perturbation, named after the entry and its step
  (`X[0, 0] delta=0.0001`).
- `sweep`: one test case, the Taylor test along its direction (`taylor X[0, 0]`).
- any other command: one test case named after the command, failing when the document's
  `passed` is false.
- whatever the command, a document whose `passed` is false but which itemises no failure gets
  one more failing case, `gradient`, so a failed run never makes a green suite.

"Inconclusive" (an entry, perturbation or sweep that could not be verified, `passed: false`
with reason `inconclusive`) is not "wrong": each format keeps the two apart (a JUnit `<error>`
rather than a `<failure>`, a GitHub `::warning` rather than an `::error`).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

WORST_ENTRIES_LISTED = 10
"""Entries (or directions) a failure's text lists, worst first."""

INCONCLUSIVE: Final = "inconclusive"
"""A `Problem.kind`, and the `reason` of an entry, perturbation or sweep that could not be
verified."""


# --- What a document says, as test cases --------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason a test case did not pass."""

    kind: Literal["wrong", "inconclusive"]
    message: str
    """One line: the count and the worst item with its numbers."""
    details: tuple[str, ...]
    """The worst items, one line each (JUnit's failure text)."""


@dataclass(frozen=True)
class Case:
    """One test case: passed (no problems), did not pass (its problems), or skipped."""

    name: str
    problems: tuple[Problem, ...] = ()
    skipped: str | None = None
    """Why the case was not run; None for a case that ran."""


@dataclass(frozen=True)
class Interpretation:
    """A report document as test cases, with the one-line verdict both formats end on."""

    classname: str
    cases: tuple[Case, ...]
    passed: bool
    verdict: str
    """The one-line summary: "PASSED: ..." or "FAILED: ..."."""


def interpret(document: Mapping[str, Any]) -> Interpretation:
    """The test cases of `document` (see the module docstring) and its summary line."""
    model = as_mapping(document.get("model"))
    classname = as_text(model.get("name", "gradcheck"))
    passed = document.get("passed") is True
    command = as_text(document.get("command", "run"))
    if command == "run":
        cases, verdict = _run_cases(document, passed)
    elif command == "perturb":
        cases, verdict = _perturb_cases(document, passed)
    elif command == "sweep":
        cases, verdict = _sweep_cases(document, passed)
    else:
        cases, verdict = _other_cases(command, passed)
    if not passed and not any(case.problems for case in cases):
        # The document's verdict is the authority; never turn a failed run into a green suite
        # because its failure is of a kind this module does not know how to itemise.
        problem = Problem("wrong", "the report's verdict is FAILED", ())
        cases = [*cases, Case("gradient", (problem,))]
    return Interpretation(classname, tuple(cases), passed, verdict)


@dataclass(frozen=True)
class _Tally:
    """One checked input's counts, for the run's summary line."""

    entries: int
    wrong: int
    inconclusive: int
    doubtful: int


def _run_cases(document: Mapping[str, Any], passed: bool) -> tuple[list[Case], str]:
    inputs = as_mapping(document.get("inputs"))
    summary = as_mapping(document.get("summary"))
    checks = [entry for entry in _sequence(document.get("checks")) if isinstance(entry, Mapping)]
    directions = [d for d in _sequence(document.get("directions")) if isinstance(d, Mapping)]
    names = [*map(str, inputs), *(str(name) for name in summary if name not in inputs)]

    cases: list[Case] = []
    tallies: list[_Tally] = []
    for name in names:
        info = as_mapping(inputs.get(name))
        if info.get("checked") is False:
            why = info.get("why")
            reason = as_text(why) if why is not None else "no reason given"
            cases.append(Case(f"d{name}", skipped=f"{name} not checked: {reason}"))
        elif "summary" in document and name not in summary:
            # Version 1 lists every input but summarises only the checked ones (`--wrt X`).
            reason = "not selected for this run"
            cases.append(Case(f"d{name}", skipped=f"{name} not checked: {reason}"))
        else:
            own_entries = [entry for entry in checks if as_text(entry.get("wrt")) == name]
            own_directions = [d for d in directions if as_text(d.get("wrt")) == name]
            case, tally = _input_case(
                name, own_entries, as_mapping(summary.get(name)), own_directions
            )
            cases.append(case)
            tallies.append(tally)

    top_level = [d for d in directions if _count(d.get("depth"), 0) == 0]
    failing_top = [d for d in top_level if d.get("passed") is False]
    if directions:
        cases.append(_directions_case(directions, top_level, failing_top))

    entries = sum(tally.entries for tally in tallies)
    wrong = sum(tally.wrong for tally in tallies)
    inconclusive = sum(tally.inconclusive for tally in tallies)
    doubtful = sum(tally.doubtful for tally in tallies)
    if passed:
        verdict = f"PASSED: all {_plural(entries, 'entry', 'entries')} agree"
        if top_level:
            verdict += f" along {_plural(len(top_level), 'random direction')}"
        if doubtful:
            verdict += f" ({doubtful} doubtful: see the report's reasons)"
        return cases, verdict
    parts: list[str] = []
    if wrong:
        parts.append(_agreement(wrong, entries, "entry", "entries"))
    if inconclusive:
        parts.append(
            f"{inconclusive} of {_plural(entries, 'entry', 'entries')} could not be verified"
        )
    if failing_top and not wrong:
        parts.append(
            f"{_agreement(len(failing_top), len(top_level), 'random direction')} "
            "and no single entry was localised"
        )
    return cases, "FAILED: " + ("; ".join(parts) or "the report's verdict is FAILED")


def _distinct(rows: Sequence[Mapping[str, Any]]) -> int:
    return len({tuple(row.get("index") or ()) for row in rows})


def _input_case(
    name: str,
    listed: Sequence[Mapping[str, Any]],
    counts: Mapping[str, Any],
    directions: Sequence[Mapping[str, Any]],
) -> tuple[Case, _Tally]:
    """The test case `d<name>` from the input's listed entries, summary counts and directions."""
    listed_wrong = [entry for entry in listed if _is_wrong(entry)]
    listed_inconclusive = [entry for entry in listed if _is_inconclusive(entry)]
    # An entry is listed once per cotangent (or tangent): count entries, not rows.
    wrong_entries = _distinct(listed_wrong)
    unsure_entries = _distinct(listed_inconclusive)
    entries = _count(counts.get("entries"), _distinct(listed))
    failed = _count(counts.get("failed"), wrong_entries + unsure_entries)
    inconclusive = max(_count(counts.get("inconclusive"), 0), unsure_entries)
    if "inconclusive" in counts:
        # Schema 2 counts the wrong and the inconclusive entries apart.
        wrong = max(failed, wrong_entries)
    else:
        # Schema 1's `failed` counted every entry that did not pass.
        wrong = max(failed - inconclusive, wrong_entries)

    problems: list[Problem] = []
    failing_directions = [d for d in directions if d.get("passed") is False]
    if wrong:
        worst_index = counts.get("worst_index")
        problems.append(_entries_problem("wrong", name, listed_wrong, wrong, entries, worst_index))
    elif failing_directions:
        # Fast mode found this input wrong along a direction but localised no entry: without
        # this the case would pass while the run fails.
        message = (
            f"a random direction over {name} disagrees and no single entry was localised: "
            f"{_direction_text(failing_directions[0])}"
        )
        problems.append(Problem("wrong", message, _listing(failing_directions, _direction_text)))
    if inconclusive:
        problems.append(
            _entries_problem(INCONCLUSIVE, name, listed_inconclusive, inconclusive, entries, None)
        )
    doubtful = _count(counts.get("doubtful"), 0)
    return Case(f"d{name}", tuple(problems)), _Tally(entries, wrong, inconclusive, doubtful)


def _directions_case(
    directions: Sequence[Mapping[str, Any]],
    top_level: Sequence[Mapping[str, Any]],
    failing_top: Sequence[Mapping[str, Any]],
) -> Case:
    """Fast mode's own case: it fails when a top-level random direction disagrees."""
    if not failing_top:
        return Case("directions")
    message = (
        f"{_agreement(len(failing_top), len(top_level), 'random direction')}; "
        f"first: {_direction_text(failing_top[0])}"
    )
    failing = [d for d in directions if d.get("passed") is False]
    return Case("directions", (Problem("wrong", message, _listing(failing, _direction_text)),))


def _entries_problem(
    kind: Literal["wrong", "inconclusive"],
    name: str,
    listed: Sequence[Mapping[str, Any]],
    count: int,
    entries: int,
    worst_index: Any,
) -> Problem:
    worst_first = sorted(listed, key=_excess, reverse=True)
    if kind == "wrong":
        headline = _agreement(count, entries, "entry", "entries", of=name)
    else:
        headline = (
            f"{count} of {_plural(entries, 'entry', 'entries')} of {name} could not be verified"
        )
    if worst_first:
        headline += f"; worst {_entry_text(worst_first[0])}"
    elif worst_index is not None:
        headline += f"; worst {_label(name, worst_index)} (its numbers are not in the report)"
    return Problem(kind, headline, _listing(worst_first, _entry_text, total=count))


def _perturb_cases(document: Mapping[str, Any], passed: bool) -> tuple[list[Case], str]:
    perturbations = [p for p in _sequence(document.get("perturbations")) if isinstance(p, Mapping)]
    cases: list[Case] = []
    for perturbation in perturbations:
        label = _label(as_text(perturbation.get("wrt", "?")), perturbation.get("index"))
        name = f"{label} delta={_number(perturbation.get('delta'))}"
        problems: tuple[Problem, ...] = ()
        if perturbation.get("passed") is False:
            kind: Literal["wrong", "inconclusive"] = (
                INCONCLUSIVE if _is_inconclusive(perturbation) else "wrong"
            )
            problems = (Problem(kind, _perturbation_text(label, perturbation), ()),)
        cases.append(Case(name, problems))
    count = len(perturbations)
    if passed:
        return cases, f"PASSED: all {_plural(count, 'perturbation')} agree"
    wrong = sum(1 for case in cases if any(p.kind == "wrong" for p in case.problems))
    inconclusive = sum(1 for case in cases if any(p.kind == INCONCLUSIVE for p in case.problems))
    parts = []
    if wrong:
        parts.append(_agreement(wrong, count, "perturbation"))
    if inconclusive:
        parts.append(f"{inconclusive} of {_plural(count, 'perturbation')} could not be verified")
    return cases, "FAILED: " + ("; ".join(parts) or "the report's verdict is FAILED")


def _sweep_cases(document: Mapping[str, Any], passed: bool) -> tuple[list[Case], str]:
    direction = _direction_label(as_mapping(document.get("direction")))
    reason = as_text(document.get("reason", ""))
    slope = _as_float(document.get("slope"))
    slope_text = "undefined" if slope is None else f"{slope:.2f}"
    if reason == "round-off":
        outcome = f"all residuals at round-off level along {direction}"
    elif reason == INCONCLUSIVE:
        outcome = f"too few residuals above round-off to fit a slope along {direction}"
    else:
        outcome = f"Taylor residual slope {slope_text} along {direction}"
    if passed:
        return [Case(f"taylor {direction}")], f"PASSED: {outcome}"
    if reason != INCONCLUSIVE:
        outcome += " (a correct gradient gives 2, a wrong one 1)"
    message = (
        f"{outcome}; ⟨g, v⟩ {_number(document.get('directional_derivative'))}, "
        f"noise floor {_number(document.get('noise_floor'))}"
    )
    rows = tuple(
        f"delta {_number(row.get('delta'))}: residual {_number(row.get('residual'))}"
        + (" (in the fit)" if row.get("in_fit") is True else "")
        for row in _sequence(document.get("rows"))
        if isinstance(row, Mapping)
    )
    kind: Literal["wrong", "inconclusive"] = INCONCLUSIVE if reason == INCONCLUSIVE else "wrong"
    problem = Problem(kind, message, rows)
    return [Case(f"taylor {direction}", (problem,))], f"FAILED: {outcome}"


def _other_cases(command: str, passed: bool) -> tuple[list[Case], str]:
    if passed:
        return [Case(command)], f"PASSED: {command}"
    problem = Problem("wrong", f"{command}: the report's verdict is FAILED", ())
    return [Case(command, (problem,))], f"FAILED: {command}"


# --- Reading the document -----------------------------------------------------------------------


def as_mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one: a document from elsewhere may lack a key."""
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else ()


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _count(value: Any, default: int) -> int:
    return (
        int(value)
        if not isinstance(value, bool) and isinstance(value, numbers.Integral)
        else default
    )


def _is_inconclusive(item: Mapping[str, Any]) -> bool:
    return item.get("passed") is False and item.get("reason") == INCONCLUSIVE


def _is_wrong(item: Mapping[str, Any]) -> bool:
    return item.get("passed") is False and item.get("reason") != INCONCLUSIVE


def _excess(entry: Mapping[str, Any]) -> float:
    """How far past its tolerance an entry is; a missing (non-finite) error ranks worst."""
    abs_error = _as_float(entry.get("abs_error"))
    tolerance = _as_float(entry.get("tolerance"))
    if abs_error is None or not math.isfinite(abs_error):
        return math.inf
    if tolerance is None or not math.isfinite(tolerance) or tolerance <= 0:
        return math.inf if abs_error > 0 else 0.0
    return abs_error / tolerance


# --- Wording --------------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """A document's value as text; a list as its items joined by ", "."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return ", ".join(as_text(item) for item in value)
    return str(value)


def _number(value: Any) -> str:
    """Full precision, as the JSON has it: a wrong gradient can differ in the 8th digit."""
    if value is None:
        return "undefined"
    if not isinstance(value, bool) and isinstance(value, numbers.Integral):
        return str(int(value))
    number = _as_float(value)
    return repr(number) if number is not None else as_text(value)


def _label(name: str, index: Any) -> str:
    """`W[2, 1]`; `scale[]` for a 0-D input."""
    return f"{name}[{', '.join(as_text(i) for i in _sequence(index))}]"


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _agreement(
    failed: int, total: int, singular: str, plural: str | None = None, *, of: str | None = None
) -> str:
    """`3 of 15 entries disagree`, `1 of 9 entries of X disagrees`."""
    verb = "disagrees" if failed == 1 else "disagree"
    scope = "" if of is None else f" of {of}"
    return f"{failed} of {_plural(total, singular, plural)}{scope} {verb}"


def _entry_text(entry: Mapping[str, Any]) -> str:
    label = _label(as_text(entry.get("wrt", "?")), entry.get("index"))
    return (
        f"{label}: analytic {_number(entry.get('analytic'))}, "
        f"numerical {_number(entry.get('numerical'))}, "
        f"abs error {_number(entry.get('abs_error'))}, "
        f"tolerance {_number(entry.get('tolerance'))}, reason {as_text(entry.get('reason'))}"
    )


def _direction_text(direction: Mapping[str, Any]) -> str:
    return (
        f"direction over {as_text(direction.get('wrt', '?'))} "
        f"({_plural(_count(direction.get('entries'), 0), 'entry', 'entries')}, "
        f"depth {_count(direction.get('depth'), 0)}): "
        f"analytic ⟨g, v⟩ {_number(direction.get('analytic'))}, "
        f"numerical {_number(direction.get('numerical'))}, "
        f"abs error {_number(direction.get('abs_error'))}, "
        f"tolerance {_number(direction.get('tolerance'))}"
    )


def _perturbation_text(label: str, perturbation: Mapping[str, Any]) -> str:
    return (
        f"{label} + {_number(perturbation.get('delta'))}: "
        f"actual change {_number(perturbation.get('actual_change'))}, "
        f"predicted change {_number(perturbation.get('predicted_change'))}; "
        f"analytic {_number(perturbation.get('gradient'))}, "
        f"numerical {_number(perturbation.get('numerical'))}, "
        f"abs error {_number(perturbation.get('abs_error'))}, "
        f"tolerance {_number(perturbation.get('tolerance'))}, "
        f"reason {as_text(perturbation.get('reason'))}"
    )


def _direction_label(direction: Mapping[str, Any]) -> str:
    if direction.get("kind") == "random":
        wrt, seed = as_text(direction.get("wrt")), as_text(direction.get("seed"))
        return f"random direction (wrt {wrt}, seed {seed})"
    return _label(as_text(direction.get("wrt", "?")), direction.get("index"))


def _listing(
    items: Sequence[Mapping[str, Any]],
    describe: Callable[[Mapping[str, Any]], str],
    *,
    total: int | None = None,
) -> tuple[str, ...]:
    """The first WORST_ENTRIES_LISTED items, one line each, and how many more there are."""
    lines = [describe(item) for item in items[:WORST_ENTRIES_LISTED]]
    more = (len(items) if total is None else total) - len(lines)
    if more > 0:
        lines.append(f"... and {more} more")
    return tuple(lines)


# --- Text both formats print ---------------------------------------------------------------------

# XML 1.0 `Char`: tab, newline, carriage return, and the ranges below. Everything else (most C0
# controls, lone surrogates, U+FFFE/U+FFFF) is invalid even as a character reference. DEL and
# the C1 controls are legal XML but can move a terminal's cursor or end a line (U+0085) in a CI
# log, so they are made visible too.
_NOT_PRINTABLE = re.compile("[^\t\n\r\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def ci_printable(text: str) -> str:
    """`text` with characters XML 1.0 forbids (and terminal controls) spelled out as `\\x1b`."""
    return _NOT_PRINTABLE.sub(lambda match: ascii(match.group())[1:-1], text)
