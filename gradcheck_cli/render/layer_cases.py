"""How a document of several layers (a whole file, a config's checks, several points) reads as
CI test suites: one suite per layer, what `junit.py` writes as one `<testsuite>` each and
`github.py` as one annotation per layer that did not pass.

A layer's suite holds its points' test cases (`ci_cases.interpret` of each point's report), the
case names prefixed `point K: ` when there are several points; a drawn point's problems say so
and where its inputs are (the file saved next to --output, or the JSON document) with the
command that replays them. A layer or point that could not be checked is one `<error>` case.
The verdicts and lines are `story.project_story`'s, so no format tells another story.
Pure: standard library only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradcheck_cli.render.ci_cases import Case, Interpretation, Problem, as_text, interpret
from gradcheck_cli.render.story import (
    LayerStory,
    as_mapping,
    as_sequence,
    layer_story,
    project_story,
)


@dataclass(frozen=True)
class Suite:
    """One layer as a test suite."""

    name: str
    """The layer as `--model` names it alone: `layers.py:affine`."""
    layer: LayerStory
    reading: Interpretation


def layer_suites(document: Mapping[str, Any]) -> tuple[list[Suite], str, str]:
    """Every layer of `document` as a suite, with the document's verdict and final line."""
    told = project_story(document)
    suites = []
    for layer in as_sequence(document.get("layers")):
        layer = as_mapping(layer)
        suites.append(_suite(layer, layer_story(layer)))
    return suites, told.verdict, told.headline


def _suite(layer: Mapping[str, Any], told: LayerStory) -> Suite:
    points = [as_mapping(p) for p in as_sequence(layer.get("points"))]
    several = len(points) > 1
    cases: list[Case] = []
    if layer.get("error"):
        cases.append(Case("layer", (Problem("error", f"ERROR: {as_text(layer['error'])}", ()),)))
    for point in points:
        number = point.get("point")
        prefix = f"point {number}: " if several else ""
        where = f"at point {number} ({as_text(point.get('origin'))})" if several else ""
        report = as_mapping(point.get("report"))
        if not report:
            message = f"ERROR: {as_text(point.get('error') or 'not checked')}"
            cases.append(Case(f"{prefix}layer", (Problem("error", message, ()),)))
            continue
        replay = _replay(told, point)
        for case in interpret(report).cases:
            problems = tuple(
                dataclasses.replace(
                    problem,
                    message=f"{problem.message} {where}".rstrip(),
                    details=(*problem.details, *replay),
                )
                for problem in case.problems
            )
            cases.append(dataclasses.replace(case, name=f"{prefix}{case.name}", problems=problems))
    reading = Interpretation(told.model, tuple(cases), told.verdict, told.line)
    return Suite(told.model, told, reading)


def _replay(told: LayerStory, point: Mapping[str, Any]) -> tuple[str, ...]:
    """Where a drawn point's inputs are and how to check the layer there again."""
    number = point.get("point")
    if not isinstance(number, int) or number <= 1 or point.get("verdict") == "passed":
        return ()
    saved = point.get("inputs_file")
    if saved:
        return (
            f"inputs of point {number}: {as_text(saved)}; replay: gradcheck run --model "
            f"{told.model} --inputs {as_text(saved)}",
        )
    seed = as_mapping(as_mapping(point.get("report")).get("settings")).get("seed", 0)
    return (
        f"point {number} again: gradcheck run --model {told.model} --points {told.points} "
        f"--seed {as_text(seed)} (the same points); --output FILE also saves its inputs "
        "next to the report, for --inputs",
    )
