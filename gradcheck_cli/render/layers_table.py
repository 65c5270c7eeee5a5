"""A run of several layers in the terminal: one section per layer (its deciding point's report,
as a single-layer run prints it, and a line per point when there are several), then the closing
table (layer, verdict, entries, worst error, diagnosis) and the final line, which is
`story.project_story`'s, as in the JSON, the annotations, JUnit and the exit code.

Only for --format table. Reads the report and its document; computes nothing new.
"""

from __future__ import annotations

import os

from rich.console import Console
from rich.text import Text

from gradcheck_cli.project_report import LayerResult, ProjectReport
from gradcheck_cli.render.story import LayerStory, project_story
from gradcheck_cli.render.table import render_run
from gradcheck_cli.render.terminal import Cell, number_text, print_table
from gradcheck_cli.sanitize import printable

STYLES = {"passed": "bold green", "failed": "bold red", "error": "bold red"}
"""The verdict's colour (inconclusive: yellow)."""

DIAGNOSIS_WIDTH = 48
"""The closing table's diagnosis is cut to this many characters; the sections have it whole."""


def render_project(
    report: ProjectReport,
    console: Console,
    *,
    top: int = 10,
    maps: str = "failing",
    embed_inputs: bool = True,
) -> None:
    """Every layer's section, the closing table and the final line."""
    told = project_story(report.to_document(embed_inputs=embed_inputs))
    count = len(report.layers)
    points = f", at {report.points} input points each" if report.points > 1 else ""
    what = "layer" if count == 1 else "layers"
    console.print(
        Text.assemble(("gradcheck", "bold"), f"  {count} {what} from {printable(report.source)}")
        + Text(points)
    )
    for number, (layer, story) in enumerate(zip(report.layers, told.layers, strict=True), 1):
        _section(console, number, count, layer, story, top=top, maps=maps)
    console.rule(style="dim")
    columns = [
        ("layer", "left"),
        ("verdict", "left"),
        ("entries", "right"),
        ("worst error", "right"),
        ("diagnosis", "left"),
    ]
    rows: list[list[Cell]] = []
    for story in told.layers:
        verdict = (
            story.verdict if story.point in (None, 1) else f"{story.verdict} (point {story.point})"
        )
        rows.append(
            [
                printable(story.name),
                Text(verdict, style=STYLES.get(story.verdict, "bold yellow")),
                str(story.entries),
                number_text(story.worst_error, 3),
                printable(_cut(story.diagnosis or _error(story) or "-")),
            ]
        )
    print_table(console, "Layers", columns, rows, droppable=("diagnosis", "worst error"))
    console.print(Text(told.headline, style=STYLES.get(told.verdict, "bold yellow")))


def _section(
    console: Console,
    number: int,
    count: int,
    layer: LayerResult,
    story: LayerStory,
    *,
    top: int,
    maps: str,
) -> None:
    console.rule(
        Text(f"{number}/{count}  {printable(story.name)}  ({printable(story.model)})"),
        style="dim",
        align="left",
    )
    deciding = layer.deciding
    if deciding is not None and deciding.report is not None:
        render_run(deciding.report, console, top=top, maps=maps)
    if len(layer.points) > 1:
        for point in layer.points:
            line = f"point {point.point} ({point.origin}): {point.verdict}"
            if point.report is not None:
                entries = sum(s.entries for s in point.report.summary.values())
                failed = sum(s.failed for s in point.report.summary.values())
                line += f", {failed} of {entries} entries disagree" if failed else ""
            if point.error is not None:
                line += f": {point.error}"
            if point.inputs_file is not None:
                line += f"; inputs in {_shown_path(point.inputs_file)}"
            console.print(Text(printable(line), style=STYLES.get(point.verdict, "yellow")))
        if deciding is not None and deciding.replayable():
            console.print(printable(_replay(story, deciding.inputs_file, layer)))
    if story.verdict == "error" or story.points > 1:
        console.print(Text(printable(story.line), style=STYLES.get(story.verdict, "bold yellow")))


def _replay(story: LayerStory, saved: str | None, layer: LayerResult) -> str:
    if saved is not None:
        return f"replay: gradcheck run --model {story.model} --inputs {_shown_path(saved)}"
    deciding = layer.deciding
    report = None if deciding is None else deciding.report
    seed = 0 if report is None else report.settings.seed
    return (
        f"replay: gradcheck run --model {story.model} --points {len(layer.points)} --seed {seed} "
        "(the same points; --output FILE also saves each failing point's inputs for --inputs)"
    )


def _shown_path(path: str) -> str:
    """A saved file as the user can type it from here: relative when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return relative if len(relative) < len(path) else path


def _error(story: LayerStory) -> str | None:
    return story.line if story.verdict == "error" else None


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DIAGNOSIS_WIDTH else text[: DIAGNOSIS_WIDTH - 3] + "..."
