"""Writing a run of several layers (a whole file, `--points`, `gradcheck check`): the failing
points' inputs next to --output, the JSON, JUnit (a suite per layer), the annotations or the
table, one line on stderr per layer that could not be checked, and the exit code (the worst
verdict: failed 1, error 2, inconclusive 4, passed 0).

The inputs of a drawn point that did not pass are saved next to --output as
`OUTPUT_STEM.point3.npz` (one layer) or `OUTPUT_STEM.LAYER.point3.npz` (several), atomically and
never over an input or another output; every path is checked before anything is written. Without
an --output file they are embedded in the JSON document instead.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gradcheck_cli.exit_codes import EXIT_CODES, EXIT_USAGE

if TYPE_CHECKING:
    from gradcheck_cli.project_report import LayerResult, ProjectReport

_UNSAFE = re.compile(r"[^\w.-]+")


def emit_project(
    report: ProjectReport,
    output_format: str,
    output_path: Path | None,
    *,
    junit_path: Path | None,
    protected: Mapping[Path, str],
    top: int = 10,
    maps: str = "failing",
) -> int:
    """Write everything the command line asked for; return the exit code."""
    from gradcheck_cli.render.output import (
        OutputError,
        is_stdout,
        to_json_text,
        write_atomically,
        write_stdout,
    )

    to_file = output_path is not None and not is_stdout(output_path)
    if to_file:
        assert output_path is not None
        others = {p: "another output" for p in (output_path, junit_path) if p is not None}
        report = _save_points(report, output_path, {**protected, **others})
    embed = not to_file
    document = report.to_document(embed_inputs=embed)
    text = to_json_text(document)
    if to_file:
        assert output_path is not None
        try:
            write_atomically(output_path, text + "\n")
        except OutputError as error:
            raise OutputError(f"--output {error}") from None
    if junit_path is not None:
        from gradcheck_cli.render.junit import junit_xml

        try:
            write_atomically(junit_path, junit_xml(document))
        except OutputError as error:
            raise OutputError(f"--junit-xml {error}") from None
    if output_format == "json":
        write_stdout(text + "\n")
    elif output_format == "github":
        from gradcheck_cli.render.github import github_annotations

        write_stdout(github_annotations(document, file=None))
    else:
        from gradcheck_cli.render.layers_table import render_project
        from gradcheck_cli.render.terminal import stdout_console

        console = stdout_console()
        drawn = io.StringIO()
        console.file = drawn
        render_project(report, console, top=top, maps=maps, embed_inputs=embed)
        write_stdout(drawn.getvalue())
    for layer in report.layers:
        if layer.verdict == "error":
            text = str(layer.error_text)
            # The message names the file already (`layers.py:12: forward raised ...`), or not.
            named = text.startswith(Path(layer.model.rpartition(":")[0] or layer.model).name)
            click.echo(f"gradcheck: error: {text if named else f'{layer.model}: {text}'}", err=True)
    return EXIT_USAGE if report.verdict == "error" else EXIT_CODES[report.verdict]


def _save_points(
    report: ProjectReport, output: Path, protected: Mapping[Path, str]
) -> ProjectReport:
    """Save every replayable point's inputs next to `output`: all paths checked first, then
    each file written atomically; the report with `inputs_file` set where they were."""
    from gradcheck_cli.render.output import OutputError, check_output_path, write_bytes_atomically

    names = _file_names(report.layers)
    planned: list[tuple[int, int, Path]] = []
    base = output.with_suffix("") if output.suffix else output
    for index, layer in enumerate(report.layers):
        for position, point in enumerate(layer.points):
            if not point.replayable():
                continue
            tag = "" if names[index] is None else f".{names[index]}"
            path = base.with_name(f"{base.name}{tag}.point{point.point}.npz")
            try:
                target = check_output_path(path, protected=protected)
            except OutputError as error:
                said = str(error).replace(str(path), _shown(path), 1)
                raise OutputError(
                    f"--output: the inputs of {layer.model} at point {point.point} go to {said}"
                ) from None
            planned.append((index, position, target))
    layers = list(report.layers)
    for index, position, target in planned:
        layer = layers[index]
        point = layer.points[position]
        write_bytes_atomically(target, _npz_bytes(point.arrays))
        points = list(layer.points)
        points[position] = dataclasses.replace(point, inputs_file=str(target))
        layers[index] = dataclasses.replace(layer, points=tuple(points))
    return dataclasses.replace(report, layers=tuple(layers))


def _shown(path: Path) -> str:
    """`path` as the user can type it from here: relative when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return relative if len(relative) < len(str(path)) else str(path)


def _file_names(layers: tuple[LayerResult, ...]) -> list[str | None]:
    """The name each layer's saved points carry: none for a run of one layer, else the layer's
    name (made safe for a file name), numbered where two layers share one."""
    if len(layers) == 1:
        return [None]
    seen: dict[str, int] = {}
    names: list[str | None] = []
    for layer in layers:
        name = _UNSAFE.sub("_", layer.name).strip("._") or "layer"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return names


def _npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    named: dict[str, Any] = {name: np.asarray(array) for name, array in arrays.items()}
    np.savez(buffer, **named)
    return buffer.getvalue()
