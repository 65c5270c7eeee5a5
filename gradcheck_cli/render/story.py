"""The one story a report tells, read from its document: the verdict, the counts and the worst
entry of every input, and the final line. The terminal table, the GitHub annotations and the
JUnit XML all print what this module says, so that no part of the output can contradict another
or the exit code (issue 24).

Everything derives from the document's `verdict` (the exit code's: passed 0, failed 1,
inconclusive 4, error 2 or 3) and from the same per-input counts; documents of schema 1 and 2,
which may lack a field, are read with the defaults their version implies. Pure: the standard
library only (no click, no rich, no numpy), so the CI formats and the table can both use it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

VERDICTS = ("passed", "failed", "inconclusive", "error")
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class InputStory:
    """One checked input: its counts, its worst entry, and whether it passed."""

    name: str
    entries: int
    failed: int
    failed_at_least: bool
    """Fast mode stopped localising before this input's wrong entries were all found."""
    inconclusive: int
    doubtful: int
    worst: str | None
    """Its worst entry, `W[0,1]`, as every format names it."""
    verdict: str
    """passed, failed or inconclusive, for this input alone."""
    checked_one_by_one: int | None


@dataclass(frozen=True)
class SideEffectStory:
    """One side-effect check of the user's code: its kind, the function, what it found."""

    kind: str
    role: str
    passed: bool
    message: str
    names: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How every format names the check: `dout-modified of relu_backward`."""
        return f"{self.kind} of {self.role}"

    @property
    def found(self) -> str:
        """What a failed check found, in a few words: `relu_backward writes into dout`."""
        written = " and ".join(self.names) or "its arguments"
        return {
            "dout-modified": f"{self.role} writes into {written}",
            "cache-modified": f"{self.role} writes into {written}, what forward saved",
            "input-modified": f"{self.role} writes into its input {written}",
            "not-reentrant": f"{self.role} is not re-entrant",
            "uninitialised-memory": f"{self.role} reads memory it never wrote",
        }.get(self.kind, f"{self.role}: {self.kind}")


@dataclass(frozen=True)
class Story:
    verdict: str
    """The document's: passed, failed, inconclusive (or error)."""
    headline: str
    """The final line, the same in the table, the annotations and JUnit: "FAILED: ..."."""
    inputs: tuple[InputStory, ...]
    side_effects: tuple[SideEffectStory, ...] = ()
    """Every side-effect check the document holds, in its order; a failed one fails the run."""

    @property
    def failed(self) -> int:
        return sum(item.failed for item in self.inputs)

    @property
    def entries(self) -> int:
        return sum(item.entries for item in self.inputs)


# --- Reading a document ---------------------------------------------------------------------------


def as_mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one: a document from elsewhere may lack a key."""
    return value if isinstance(value, Mapping) else {}


def as_sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else ()


def count(value: Any, default: int = 0) -> int:
    if not isinstance(value, bool) and isinstance(value, numbers.Integral):
        return int(value)
    return default


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def verdict_of(document: Mapping[str, Any]) -> str:
    """The document's verdict; schema 1 had only `passed` (then: passed or failed)."""
    verdict = document.get("verdict")
    if verdict in VERDICTS:
        return str(verdict)
    return "passed" if document.get("passed") is True else "failed"


def label(name: str, index: Any) -> str:
    """`W[2,1]`; `scale[]` for a 0-D input: as the tables and the diagnosis write an entry."""
    return f"{name}[{','.join(str(i) for i in as_sequence(index))}]"


def plural(number: int, singular: str, many: str | None = None) -> str:
    return f"{number} {singular if number == 1 else many or singular + 's'}"


def agreement(
    failed: int,
    total: int,
    singular: str,
    many: str | None = None,
    *,
    of: str | None = None,
    at_least: bool = False,
) -> str:
    """`3 of 15 entries disagree`, `1 of 9 entries of X disagrees`, `at least 20 of ...`."""
    verb = "disagrees" if failed == 1 and not at_least else "disagree"
    scope = "" if of is None else f" of {of}"
    lower = "at least " if at_least else ""
    return f"{lower}{failed} of {plural(total, singular, many)}{scope} {verb}"


def all_agree(total: int, noun: str = "entry", many: str = "entries") -> str:
    """ "the one entry agrees", "all 15 entries agree"."""
    if total == 1:
        return f"the one {noun} agrees"
    return f"all {total} {many} agree"


# --- The run's story ----------------------------------------------------------------------------


def directions_of(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [d for d in as_sequence(document.get("directions")) if isinstance(d, Mapping)]


def is_top_level(direction: Mapping[str, Any]) -> bool:
    return count(direction.get("depth"), 0) == 0


def direction_verdict(direction: Mapping[str, Any]) -> str:
    if direction.get("passed") is not False:
        return "passed"
    return INCONCLUSIVE if direction.get("reason") == INCONCLUSIVE else "failed"


def side_effects_of(document: Mapping[str, Any]) -> tuple[SideEffectStory, ...]:
    """The document's side-effect checks (schema 4; none before)."""
    return tuple(
        SideEffectStory(
            kind=str(item.get("kind", "side-effect")),
            role=str(item.get("role", "the model")),
            passed=item.get("passed") is not False,
            message=str(item.get("message", "")),
            names=tuple(str(n) for n in as_sequence(item.get("names"))),
        )
        for item in as_sequence(document.get("side_effects"))
        if isinstance(item, Mapping)
    )


def gradient_verdict(document: Mapping[str, Any]) -> str:
    """The verdict of the gradient's entries alone: the document's, unless a side effect failed
    the run, when the counts and directions tell whether the entries failed too."""
    verdict = verdict_of(document)
    if verdict != "failed" or all(e.passed for e in side_effects_of(document)):
        return verdict
    summary = [as_mapping(c) for c in as_mapping(document.get("summary")).values()]
    top_level = [direction_verdict(d) for d in directions_of(document) if is_top_level(d)]
    first = as_mapping(document.get("gradient_check")).get("verdict")
    float64 = as_mapping(document.get("float64_check")).get("verdict")
    blocks = as_sequence(as_mapping(document.get("fast")).get("unlocalised"))
    if "failed" in (first, float64) or blocks or "failed" in top_level:
        return "failed"
    if any(count(c.get("failed")) for c in summary):
        return "failed"
    if INCONCLUSIVE in (first, float64) or INCONCLUSIVE in top_level:
        return INCONCLUSIVE
    return INCONCLUSIVE if any(count(c.get("inconclusive")) for c in summary) else "passed"


def run_inputs(document: Mapping[str, Any], run: str | None = None) -> tuple[InputStory, ...]:
    """Every input the document summarises, in its order, with its own verdict, which never
    tells more than the run's (`run`, default the gradient's verdict): no input fails in a run
    that did not fail, none is unverified in a run that passed."""
    if run is None:
        run = gradient_verdict(document)
    summary = as_mapping(document.get("summary"))
    directions = directions_of(document)
    blocks = [
        b
        for b in as_sequence(as_mapping(document.get("fast")).get("unlocalised"))
        if isinstance(b, Mapping)
    ]
    stories = []
    for name, counts in summary.items():
        counts = as_mapping(counts)
        failed = count(counts.get("failed"))
        inconclusive = count(counts.get("inconclusive"))
        if "inconclusive" not in counts:
            # Schema 1's `failed` counted every entry that did not pass: its checks tell.
            unsure = {
                tuple(as_sequence(c.get("index")))
                for c in as_sequence(document.get("checks"))
                if isinstance(c, Mapping)
                and c.get("wrt") == name
                and c.get("passed") is False
                and c.get("reason") == INCONCLUSIVE
            }
            inconclusive = len(unsure)
            failed = max(failed - inconclusive, 0)
        # Fast mode: a direction over this input alone that fails (top-level when it is the
        # only input checked), or a block of it that no half explains, fails the input even
        # where no single entry was found wrong.
        own = {direction_verdict(d) for d in directions if d.get("wrt") == name}
        blocked = any(b.get("wrt") == name for b in blocks)
        if run == "failed" and (failed or "failed" in own or blocked):
            verdict = "failed"
        elif run != "passed" and (inconclusive or INCONCLUSIVE in own):
            verdict = INCONCLUSIVE
        else:
            verdict = "passed"
        worst = counts.get("worst_index")
        stories.append(
            InputStory(
                name=str(name),
                entries=count(counts.get("entries")),
                failed=failed,
                failed_at_least=counts.get("failed_at_least") is True,
                inconclusive=inconclusive,
                doubtful=count(counts.get("doubtful")),
                worst=None if worst is None else label(str(name), worst),
                verdict=verdict,
                checked_one_by_one=(
                    count(counts.get("checked_one_by_one"))
                    if counts.get("checked_one_by_one") is not None
                    else None
                ),
            )
        )
    return tuple(stories)


def run_headline(document: Mapping[str, Any], inputs: Sequence[InputStory]) -> str:
    """The run's final line, from its verdict and counts, and the side effects found."""
    found = [e for e in side_effects_of(document) if not e.passed]
    verdict = gradient_verdict(document)
    gradient = _gradient_headline(document, inputs, verdict)
    if not found or verdict_of(document) != "failed":
        return gradient
    if len(found) == 1:
        effects = f"{found[0].found} (a side effect)"
    else:
        effects = f"{plural(len(found), 'side effect')} ({'; '.join(e.found for e in found)})"
    head, _, rest = gradient.partition(": ")
    if head == "FAILED":
        return f"FAILED: {rest.removesuffix('.')}; and {effects}."
    return f"FAILED: {effects}; {rest}"


def _gradient_headline(
    document: Mapping[str, Any], inputs: Sequence[InputStory], verdict: str
) -> str:
    """The final line of the gradient's entries alone."""
    total = sum(i.entries for i in inputs)
    failed = sum(i.failed for i in inputs)
    unsure = sum(i.inconclusive for i in inputs)
    doubtful = sum(i.doubtful for i in inputs)
    at_least = any(i.failed_at_least for i in inputs)
    if directions_of(document) or "fast" in document:
        return _fast_headline(document, verdict, total, failed, unsure, at_least)
    if verdict == "failed":
        more = f"; {unsure} inconclusive" if unsure else ""
        if not failed:
            return "FAILED: the report's verdict is failed."
        return f"FAILED: {agreement(failed, total, 'entry', 'entries')}{more}."
    float64 = as_mapping(document.get("float64_check"))
    if verdict == INCONCLUSIVE and not unsure and float64.get("verdict") == INCONCLUSIVE:
        # A low-precision run whose gradient agrees, while the same code in float64 could not
        # be verified everywhere.
        precision = as_mapping(document.get("settings")).get("precision", "low precision")
        return (
            f"INCONCLUSIVE: {all_agree(total)} in {precision}, but "
            f"{count(float64.get('inconclusive'))} of "
            f"{plural(count(float64.get('entries')), 'entry', 'entries')} of the same code in "
            "float64 could not be verified."
        )
    if verdict == INCONCLUSIVE:
        precision = as_mapping(document.get("settings")).get("precision")
        why = (
            f"their finite differences, or the gradient's own rounding in {precision}, are too "
            "unsure"
            if precision
            else "their finite differences are too unsure"
        )
        return (
            f"INCONCLUSIVE: no entry disagrees, but {unsure} of {plural(total, 'entry', 'entries')}"
            f" could not be verified ({why}; see the reasons above)."
        )
    note = f" ({doubtful} doubtful, see the reasons above)" if doubtful else ""
    return f"PASSED: {all_agree(total)}{note}."


def _fast_headline(
    document: Mapping[str, Any],
    verdict: str,
    total: int,
    failed: int,
    unsure: int,
    at_least: bool,
) -> str:
    fast = as_mapping(document.get("fast"))
    top_level = [d for d in directions_of(document) if is_top_level(d)]
    bad = sum(direction_verdict(d) == "failed" for d in top_level)
    blocks = as_sequence(fast.get("unlocalised"))
    limit = count(as_mapping(document.get("settings")).get("localise_limit"), 0)
    if verdict == "failed":
        if failed:
            lower = "at least " if at_least else ""
            found = f"{lower}{plural(failed, 'wrong entry', 'wrong entries')} found"
            if at_least and limit:
                found += f" (localising stops after {limit})"
        elif blocks:
            found = (
                f"the error lies in {plural(len(blocks), 'failing block')} too large to check "
                "one by one"
            )
        else:
            found = (
                "no single entry was found wrong: small errors spread over many entries add up "
                "along v"
            )
        more = f"; {unsure} inconclusive" if unsure else ""
        directions = agreement(bad, len(top_level), "random direction")
        return f"FAILED: {directions}; {found}{more}."
    if verdict == INCONCLUSIVE:
        unsure_directions = sum(direction_verdict(d) == INCONCLUSIVE for d in top_level)
        if unsure_directions:
            what = (
                f"{unsure_directions} of {plural(len(top_level), 'random direction')} could not "
                "be verified (the finite difference's own error is as large as what it "
                "compares)"
            )
        else:
            what = f"{unsure} of the entries checked one by one could not be verified"
        return f"INCONCLUSIVE: nothing disagrees, but {what}."
    detectable = as_float(fast.get("detectable_error"))
    shown = ""
    if detectable is not None:
        shown = (
            f" An error of size {detectable:.2g} or more in the gradient (norm over the "
            f"entries) would have shown except with probability "
            f"{as_float(fast.get('escape_probability')) or 0:g}."
        )
    return (
        f"PASSED: {plural(len(top_level), 'random direction')} over "
        f"{plural(total, 'entry', 'entries')} agree with the gradient.{shown}"
    )


# --- Perturb and sweep ----------------------------------------------------------------------------

SWEEP_HEADLINES = {
    "slope-2": "PASSED: the residual falls like delta^2, as for a correct gradient.",
    "slope-1": "FAILED: the residual falls like delta: the gradient is wrong along v.",
    "kink": "PASSED: the residual falls like delta with the same sign on both sides of x: "
    "f has a kink along v, and the gradient lies between its one-sided slopes.",
    "round-off": "PASSED: every residual is at round-off level (f is linear along v).",
    "inconclusive": "INCONCLUSIVE: too few residuals above round-off to fit a slope; "
    "widen --largest/--smallest.",
    "jump": "INCONCLUSIVE: the residual at -delta does not fall with delta: f jumps at x along "
    "v, and no gradient is right or wrong at a jump; sweep at another point.",
}


def sweep_headline(document: Mapping[str, Any]) -> str:
    reason = str(document.get("reason", ""))
    known = SWEEP_HEADLINES.get(reason)
    if known is not None and known.split(":")[0].lower() == verdict_of(document):
        return known
    return f"{verdict_of(document).upper()}: the Taylor test's reason is {reason or 'unknown'}."


def perturb_headline(document: Mapping[str, Any]) -> str:
    rows = [p for p in as_sequence(document.get("perturbations")) if isinstance(p, Mapping)]
    verdict = verdict_of(document)
    wrong = sum(direction_verdict(p) == "failed" for p in rows)
    unsure = sum(direction_verdict(p) == INCONCLUSIVE for p in rows)
    if verdict == "passed":
        return f"PASSED: {all_agree(len(rows), 'perturbation', 'perturbations')}."
    parts = []
    if wrong:
        parts.append(agreement(wrong, len(rows), "perturbation"))
    if unsure:
        parts.append(f"{unsure} of {plural(len(rows), 'perturbation')} could not be verified")
    head = "FAILED" if verdict == "failed" else "INCONCLUSIVE"
    return f"{head}: {'; '.join(parts) or 'the report says ' + verdict}."


def story(document: Mapping[str, Any]) -> Story:
    """The story of any document: a run, perturb, sweep, an error, several layers (its layers
    are `project_story`'s), or another command's."""
    verdict = verdict_of(document)
    command = str(document.get("command", "run"))
    if "layers" in document:
        return Story(verdict, project_story(document).headline, ())
    if verdict == "error":
        message = str(document.get("error", "an error"))
        return Story(verdict, f"ERROR: {message}", ())
    if command == "run":
        inputs = run_inputs(document)
        effects = side_effects_of(document)
        return Story(verdict, run_headline(document, inputs), inputs, effects)
    if command == "perturb":
        return Story(verdict, perturb_headline(document), ())
    if command == "sweep":
        return Story(verdict, sweep_headline(document), ())
    return Story(verdict, f"{verdict.upper()}: {command}", ())


# --- Several layers (a whole file, a config, several points) ------------------------------------


@dataclass(frozen=True)
class LayerStory:
    """One layer of a document of several: its verdict and what the closing table shows."""

    name: str
    model: str
    """How to check it alone (`layers.py:affine`)."""
    verdict: str
    """passed, failed, inconclusive or error (it could not be checked)."""
    points: int
    point: int | None
    """The point its verdict comes from (the first that has it); None when none was checked."""
    origin: str | None
    """Where that point's inputs come from: given, sample_inputs or drawn."""
    entries: int
    """Entries checked, over every point."""
    worst_error: float | None
    """The largest |analytic - numerical| of any point."""
    diagnosis: str | None
    """The deciding point's first diagnosis: its kind and message."""
    line: str
    """The layer's own final line: its deciding point's, with the point when there are
    several; `ERROR: ...` for a layer that could not be checked."""
    inputs_file: str | None
    """Where the deciding point's inputs were saved, if they were."""
    report: Mapping[str, Any] | None
    """The deciding point's report document."""


@dataclass(frozen=True)
class ProjectStory:
    verdict: str
    headline: str
    layers: tuple[LayerStory, ...]


def layer_story(layer: Mapping[str, Any]) -> LayerStory:
    """One layer of a document of several, read as the closing table and CI tell it."""
    points = [as_mapping(p) for p in as_sequence(layer.get("points"))]
    verdict = str(layer.get("verdict", "error"))
    number = layer.get("point")
    deciding = next((p for p in points if p.get("point") == number), None)
    report = as_mapping(deciding.get("report")) if deciding is not None else {}
    entries = 0
    errors: list[float] = []
    for point in points:
        summary = as_mapping(as_mapping(point.get("report")).get("summary"))
        for counts in summary.values():
            entries += count(as_mapping(counts).get("entries"))
            value = as_float(as_mapping(counts).get("max_abs_error"))
            if value is not None:
                errors.append(value)
    diagnoses = [as_mapping(d) for d in as_sequence(report.get("diagnosis"))]
    diagnosis = f"{diagnoses[0].get('kind')}: {diagnoses[0].get('message')}" if diagnoses else None
    origin = None if deciding is None else str(deciding.get("origin", "given"))
    error = layer.get("error") or (deciding.get("error") if deciding is not None else None)
    if error:
        line = f"ERROR: {error}"
    elif report:
        line = story(report).headline
        if len(points) > 1:
            where = f"at point {number} of {len(points)} ({origin})"
            if verdict == "passed":
                where = f"at each of {len(points)} points"
            line = f"{line.removesuffix('.')} {where}."
    else:
        line = f"{verdict.upper()}: the layer's verdict is {verdict}."
    return LayerStory(
        name=str(layer.get("name", "?")),
        model=str(layer.get("model", layer.get("name", "?"))),
        verdict=verdict,
        points=len(points),
        point=number if isinstance(number, int) else None,
        origin=origin,
        entries=entries,
        worst_error=max(errors) if errors else None,
        diagnosis=diagnosis,
        line=line,
        inputs_file=None if deciding is None else deciding.get("inputs_file"),
        report=report or None,
    )


def project_story(document: Mapping[str, Any]) -> ProjectStory:
    """The story of a document of several layers: each layer's, and the final line, which
    names the layers that decide the verdict (failed > error > inconclusive > passed)."""
    layers = tuple(layer_story(as_mapping(layer)) for layer in as_sequence(document.get("layers")))
    verdict = verdict_of(document)
    total = len(layers)
    groups = {v: [layer for layer in layers if layer.verdict == v] for v in VERDICTS}

    def named(items: list[LayerStory]) -> str:
        shown = [
            item.name if item.point in (None, 1) else f"{item.name} (at point {item.point})"
            for item in items[:5]
        ]
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        return ", ".join(shown) + more

    parts: list[str] = []
    for verdict_of_layers, says in (
        ("failed", ("has a wrong gradient", "have a wrong gradient")),
        ("error", ("could not be checked", "could not be checked")),
        (INCONCLUSIVE, ("could not be verified", "could not be verified")),
    ):
        items = groups[verdict_of_layers]
        if not items:
            continue
        scope = "" if parts else f" of {plural(total, 'layer')}"
        verb = says[0] if len(items) == 1 else says[1]
        parts.append(f"{len(items)}{scope} {verb}: {named(items)}")
    if total == 1 and verdict != "passed":
        # One layer (one model at several points): its own line says it all.
        return ProjectStory(verdict, layers[0].line, layers)
    points = max((layer.points for layer in layers), default=1)
    entries = sum(layer.entries for layer in layers)
    at = "" if points <= 1 else f" at {plural(points, 'point')} each"
    if verdict == "passed":
        agree = "the one layer agrees" if total == 1 else f"all {total} layers agree"
        headline = f"PASSED: {agree}{at} ({plural(entries, 'entry', 'entries')})."
    elif verdict == "failed":
        headline = f"FAILED: {'; '.join(parts)}."
    elif verdict == "error":
        # No layer is wrong: the ones that could not be checked decide (exit 2).
        headline = f"ERROR: {'; '.join(parts)}."
    elif verdict == INCONCLUSIVE:
        headline = f"INCONCLUSIVE: no layer has a wrong gradient, but {'; '.join(parts)}."
    else:
        headline = f"{verdict.upper()}: {'; '.join(parts) or 'no layers'}."
    return ProjectStory(verdict, headline, layers)
