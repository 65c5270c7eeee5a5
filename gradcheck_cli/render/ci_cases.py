"""How a report document reads as CI test cases: what `junit.py` and `github.py` both print.

CI systems read JUnit XML and GitHub annotations, not our JSON. Both formats read a report
document (what `--format json` prints, schema_version 1 to 3) and compute nothing new: every
number they print is one the document holds, and every verdict is the document's own
(`story.py`: the table's final line, the annotations' summary and the exit code are one story).
Pure: standard library only (no click, no rich, no numpy), so the CLI can call them on the
document it already has.

How a document becomes test cases (the same cases drive both formats):

- `run`: one test case per side-effect check the document holds (schema 4), named after its kind
  and function (`dout-modified of relu_backward`), failing with its message when the check found
  one; then one test case per input, named "d" + the input's name (`dX`, `dW`, `dkernel`), with
  the model's name as classname. A case fails when entries of that input disagree; its text
  lists the worst listed entries (each entry once, at its worst cotangent, furthest past its
  tolerance, up to 10) and the input's diagnosis. An input the document marks as not checked
  (`checked: false`, or absent from `summary`, as `--wrt X` leaves W in version 1) is skipped,
  with the reason. In fast mode (the document has `directions`) there is one more case,
  `directions`, that fails when a top-level random direction disagrees and is inconclusive when
  one could not be verified; a failing direction over a single input, or a failing block of it
  too large to check one by one, fails that input's case even when no entry was localised.
- `perturb`: one test case per perturbation, named after the entry and its step
  (`X[0,0] delta=0.0001`).
- `sweep`: one test case, the Taylor test along its direction (`taylor X[0,0]`).
- an error document (exit 2 or 3): one test case named after the command, an error.
- any other command: one test case named after the command.
- whatever the command, a document whose verdict is failed (inconclusive) but which itemises no
  failure (nothing unverified) gets one more case, `gradient`, so that the suite never tells
  another story than the verdict.

"Inconclusive" (an entry, direction, perturbation or sweep that could not be verified) is not
"wrong": each format keeps the two apart (a JUnit `<error>` rather than a `<failure>`, a GitHub
`::warning` rather than an `::error`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from gradcheck_cli.render.story import (
    InputStory,
    SideEffectStory,
    agreement,
    as_float,
    as_mapping,
    as_sequence,
    count,
    direction_verdict,
    directions_of,
    is_top_level,
    label,
    plural,
    story,
)

WORST_ENTRIES_LISTED = 10
"""Entries (or directions) a failure's text lists, worst first."""

INCONCLUSIVE: Final = "inconclusive"
"""A `Problem.kind`, and the `reason` of an entry, perturbation or sweep that could not be
verified."""

ProblemKind = Literal["wrong", "inconclusive", "error"]


# --- What a document says, as test cases --------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason a test case did not pass."""

    kind: ProblemKind
    message: str
    """One line: the count and the worst item with its numbers (and the diagnosis)."""
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
    verdict: str
    """The document's: passed, failed, inconclusive or error (the exit code's)."""
    headline: str
    """The one-line summary, the table's final line: "PASSED: ..." or "FAILED: ..."."""

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


def interpret(document: Mapping[str, Any]) -> Interpretation:
    """The test cases of `document` (see the module docstring) and its summary line."""
    model = as_mapping(document.get("model"))
    classname = as_text(model.get("name", "gradcheck"))
    told = story(document)
    command = as_text(document.get("command", "run"))
    headline = told.headline
    if command == "sweep" and told.verdict != "error":
        # The table shows the slope and the direction above its final line; CI has this line.
        headline = f"{headline.removesuffix('.')} ({_sweep_detail(document)})."
    if told.verdict == "error":
        problem = Problem("error", told.headline, ())
        cases = [Case(command, (problem,))]
    elif command == "run":
        cases = [_side_effect_case(effect) for effect in told.side_effects]
        cases += _run_cases(document, told.inputs)
    elif command == "perturb":
        cases = _perturb_cases(document)
    elif command == "sweep":
        cases = _sweep_cases(document, told.verdict, headline)
    else:
        cases = [_other_case(command, told.verdict)]
    kinds = {problem.kind for case in cases for problem in case.problems}
    if told.verdict == "failed" and "wrong" not in kinds:
        # The document's verdict is the authority; never turn a failed run into a green suite
        # because its failure is of a kind this module does not know how to itemise.
        cases = [*cases, Case("gradient", (Problem("wrong", headline, ()),))]
    elif told.verdict == INCONCLUSIVE and not kinds:
        cases = [*cases, Case("gradient", (Problem(INCONCLUSIVE, headline, ()),))]
    return Interpretation(classname, tuple(cases), told.verdict, headline)


def _run_cases(document: Mapping[str, Any], inputs: Sequence[InputStory]) -> list[Case]:
    described = as_mapping(document.get("inputs"))
    checks = [entry for entry in as_sequence(document.get("checks")) if isinstance(entry, Mapping)]
    directions = directions_of(document)
    diagnoses = [d for d in as_sequence(document.get("diagnosis")) if isinstance(d, Mapping)]
    blocks = [
        b
        for b in as_sequence(as_mapping(document.get("fast")).get("unlocalised"))
        if isinstance(b, Mapping)
    ]
    by_name = {item.name: item for item in inputs}
    names = [*map(str, described), *(name for name in by_name if name not in described)]

    cases: list[Case] = []
    for name in names:
        info = as_mapping(described.get(name))
        if info.get("checked") is False:
            why = info.get("why")
            reason = as_text(why) if why is not None else "no reason given"
            cases.append(Case(f"d{name}", skipped=f"{name} not checked: {reason}"))
        elif name not in by_name:
            # Version 1 lists every input but summarises only the checked ones (`--wrt X`).
            if "summary" in document:
                reason = "not selected for this run"
                cases.append(Case(f"d{name}", skipped=f"{name} not checked: {reason}"))
        else:
            own = _Own(
                entries=[entry for entry in checks if as_text(entry.get("wrt")) == name],
                directions=[d for d in directions if as_text(d.get("wrt")) == name],
                diagnoses=[d for d in diagnoses if as_text(d.get("wrt")) == name],
                blocks=[b for b in blocks if as_text(b.get("wrt")) == name],
            )
            cases.append(_input_case(by_name[name], own))
    if directions:
        cases.append(_directions_case(directions))
    return cases


def _side_effect_case(effect: SideEffectStory) -> Case:
    """A side-effect check as a test case: passed, or wrong with what it found."""
    if effect.passed:
        return Case(effect.name)
    return Case(effect.name, (Problem("wrong", effect.message, (effect.message,)),))


@dataclass(frozen=True)
class _Own:
    """What the document holds of one input."""

    entries: list[Mapping[str, Any]]
    directions: list[Mapping[str, Any]]
    diagnoses: list[Mapping[str, Any]]
    blocks: list[Mapping[str, Any]]


def _input_case(item: InputStory, own: _Own) -> Case:
    """The test case `d<name>` from the input's story, listed entries, directions, diagnosis
    and failing blocks."""
    name = item.name
    problems: list[Problem] = []
    diagnosis = [
        f"diagnosis ({as_text(d.get('kind'))}): {as_text(d.get('message'))}" for d in own.diagnoses
    ]
    block_lines = [_block_text(block) for block in own.blocks]
    if item.verdict == "failed":
        wrong = [entry for entry in own.entries if _is_wrong(entry)]
        if item.failed:
            headline = agreement(
                item.failed,
                item.entries,
                "entry",
                "entries",
                of=name,
                at_least=item.failed_at_least,
            )
            notes = diagnosis + block_lines
            problems.append(
                _entries_problem("wrong", headline, wrong, item.worst, item.failed, notes)
            )
        elif own.blocks:
            message = block_lines[0]
            if len(own.blocks) > 1:
                message += f" (and {len(own.blocks) - 1} more)"
            problems.append(Problem("wrong", message, tuple(block_lines)))
        else:
            failing = [d for d in own.directions if direction_verdict(d) == "failed"]
            stopped = (
                "; localising stopped before reaching its entries" if item.failed_at_least else ""
            )
            first = f": {_direction_text(failing[0])}" if failing else ""
            message = (
                f"a random direction over {name} disagrees and no single entry was localised"
                f"{stopped}{first}"
            )
            problems.append(Problem("wrong", message, _listing(failing, _direction_text)))
    if item.inconclusive or (item.verdict == INCONCLUSIVE and not problems):
        unsure = [entry for entry in own.entries if _is_inconclusive(entry)]
        if item.inconclusive:
            headline = (
                f"{item.inconclusive} of {plural(item.entries, 'entry', 'entries')} of {name} "
                "could not be verified"
            )
            problems.append(
                _entries_problem(INCONCLUSIVE, headline, unsure, None, item.inconclusive, [])
            )
        else:
            unsure_directions = [d for d in own.directions if direction_verdict(d) == INCONCLUSIVE]
            message = f"a random direction over {name} could not be verified"
            if unsure_directions:
                message += f": {_direction_text(unsure_directions[0])}"
            problems.append(
                Problem(INCONCLUSIVE, message, _listing(unsure_directions, _direction_text))
            )
    return Case(f"d{name}", tuple(problems))


def _directions_case(directions: Sequence[Mapping[str, Any]]) -> Case:
    """Fast mode's own case: it fails when a top-level random direction disagrees, and is
    inconclusive when none disagrees but one could not be verified."""
    top_level = [d for d in directions if is_top_level(d)]
    failing = [d for d in top_level if direction_verdict(d) == "failed"]
    unsure = [d for d in top_level if direction_verdict(d) == INCONCLUSIVE]
    if failing:
        message = (
            f"{agreement(len(failing), len(top_level), 'random direction')}; "
            f"first: {_direction_text(failing[0])}"
        )
        every = [d for d in directions if direction_verdict(d) == "failed"]
        return Case("directions", (Problem("wrong", message, _listing(every, _direction_text)),))
    if unsure:
        message = (
            f"{len(unsure)} of {plural(len(top_level), 'random direction')} could not be "
            f"verified; first: {_direction_text(unsure[0])}"
        )
        return Case(
            "directions", (Problem(INCONCLUSIVE, message, _listing(unsure, _direction_text)),)
        )
    return Case("directions")


def _entries_problem(
    kind: Literal["wrong", "inconclusive"],
    headline: str,
    listed: Sequence[Mapping[str, Any]],
    worst: str | None,
    total: int,
    notes: Sequence[str],
) -> Problem:
    """The count, the worst entry (for wrong ones the summary's: the one the table and the
    diagnosis name) with its numbers, the first note (the diagnosis); the text lists each entry
    once, worst first, then the notes."""
    worst_first = _each_entry_once(listed)
    if worst is not None:
        shown = next((e for e in worst_first if _entry_label(e) == worst), None)
        if shown is not None:
            headline += f"; worst {_entry_text(shown)}"
        else:
            headline += f"; worst {worst} (its numbers are not in the report)"
    elif worst_first:
        headline += f"; worst {_entry_text(worst_first[0])}"
    if notes:
        headline += f"; {notes[0]}"
    lines = (*_listing(worst_first, _entry_text, total=max(total, len(worst_first))), *notes)
    return Problem(kind, headline, lines)


def _each_entry_once(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """An entry is listed once per cotangent (or tangent): keep its worst row, worst first."""
    best: dict[str, Mapping[str, Any]] = {}
    for row in sorted(rows, key=_excess, reverse=True):
        best.setdefault(_entry_label(row), row)
    return list(best.values())


def _entry_label(entry: Mapping[str, Any]) -> str:
    return label(as_text(entry.get("wrt", "?")), entry.get("index"))


def _block_text(block: Mapping[str, Any]) -> str:
    name = as_text(block.get("wrt", "?"))
    return (
        f"failing block: {plural(count(block.get('entries')), 'entry', 'entries')} of {name} "
        f"from {label(name, block.get('first'))} to {label(name, block.get('last'))} "
        "(row-major order): a direction over it fails, every half of it passes"
    )


def _perturb_cases(document: Mapping[str, Any]) -> list[Case]:
    perturbations = [
        p for p in as_sequence(document.get("perturbations")) if isinstance(p, Mapping)
    ]
    cases: list[Case] = []
    for perturbation in perturbations:
        where = label(as_text(perturbation.get("wrt", "?")), perturbation.get("index"))
        name = f"{where} delta={_number(perturbation.get('delta'))}"
        problems: tuple[Problem, ...] = ()
        verdict = direction_verdict(perturbation)
        if verdict != "passed":
            kind: Literal["wrong", "inconclusive"] = (
                INCONCLUSIVE if verdict == INCONCLUSIVE else "wrong"
            )
            problems = (Problem(kind, _perturbation_text(where, perturbation), ()),)
        cases.append(Case(name, problems))
    return cases


def _sweep_detail(document: Mapping[str, Any]) -> str:
    slope = as_float(document.get("slope"))
    slope_text = "undefined" if slope is None else f"{slope:.2f}"
    return f"slope {slope_text} along {_direction_label(as_mapping(document.get('direction')))}"


def _sweep_cases(document: Mapping[str, Any], verdict: str, headline: str) -> list[Case]:
    name = f"taylor {_direction_label(as_mapping(document.get('direction')))}"
    if verdict == "passed":
        return [Case(name)]
    message = (
        f"{headline.removesuffix('.')}; ⟨g, v⟩ {_number(document.get('directional_derivative'))}"
        f", noise floor {_number(document.get('noise_floor'))}"
    )
    rows = tuple(
        f"delta {_number(row.get('delta'))}: residual {_number(row.get('residual'))}"
        + (" (in the fit)" if row.get("in_fit") is True else "")
        for row in as_sequence(document.get("rows"))
        if isinstance(row, Mapping)
    )
    kind: Literal["wrong", "inconclusive"] = INCONCLUSIVE if verdict == INCONCLUSIVE else "wrong"
    return [Case(name, (Problem(kind, message, rows),))]


def _other_case(command: str, verdict: str) -> Case:
    if verdict == "passed":
        return Case(command)
    kind: Literal["wrong", "inconclusive"] = INCONCLUSIVE if verdict == INCONCLUSIVE else "wrong"
    message = f"{command}: the report's verdict is {verdict.upper()}"
    return Case(command, (Problem(kind, message, ()),))


# --- Reading the document -----------------------------------------------------------------------


def _is_inconclusive(item: Mapping[str, Any]) -> bool:
    return direction_verdict(item) == INCONCLUSIVE


def _is_wrong(item: Mapping[str, Any]) -> bool:
    return direction_verdict(item) == "failed"


def _excess(entry: Mapping[str, Any]) -> float:
    """How far past its tolerance an entry is; a missing (non-finite) error ranks worst."""
    abs_error = as_float(entry.get("abs_error"))
    tolerance = as_float(entry.get("tolerance"))
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
    if not isinstance(value, bool) and isinstance(value, int):
        return str(value)
    number = as_float(value)
    return repr(number) if number is not None else as_text(value)


def _entry_text(entry: Mapping[str, Any]) -> str:
    where = _entry_label(entry)
    for tag, prefix in (("cotangent", "v"), ("tangent", "t")):
        if count(entry.get(tag), 0):
            where += f" {prefix}{count(entry.get(tag))}"
    return (
        f"{where}: analytic {_number(entry.get('analytic'))}, "
        f"numerical {_number(entry.get('numerical'))}, "
        f"abs error {_number(entry.get('abs_error'))}, "
        f"tolerance {_number(entry.get('tolerance'))}, reason {as_text(entry.get('reason'))}"
    )


def _direction_text(direction: Mapping[str, Any]) -> str:
    return (
        f"direction over {as_text(direction.get('wrt', '?'))} "
        f"({plural(count(direction.get('entries'), 0), 'entry', 'entries')}, "
        f"depth {count(direction.get('depth'), 0)}): "
        f"analytic ⟨g, v⟩ {_number(direction.get('analytic'))}, "
        f"numerical {_number(direction.get('numerical'))}, "
        f"abs error {_number(direction.get('abs_error'))}, "
        f"tolerance {_number(direction.get('tolerance'))}"
    )


def _perturbation_text(where: str, perturbation: Mapping[str, Any]) -> str:
    return (
        f"{where} + {_number(perturbation.get('delta'))}: "
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
    return label(as_text(direction.get("wrt", "?")), direction.get("index"))


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
