"""What every terminal report is made of: the consoles, a table that never cuts a number, the
cells of numbers and verdicts, and the report's header and legend of reasons.

`table.py` (the run report), `experiments.py` (perturb and sweep) and `model_list.py` build on
these. Only the CLI and the API's failure message import them, and only for --format table, so
JSON runs never load rich. They read report objects and compute nothing new.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from gradcheck_cli.report import REASON_TEXT, PerturbReport, RunReport, RunSettings, SweepReport
from gradcheck_cli.sanitize import printable


def stdout_console() -> Console:
    """On a terminal, its width; piped, COLUMNS or 120 (rich's 80 would cut the tables)."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=120)
    return console


def stderr_console() -> Console:
    """Progress goes to stderr, so that stdout holds the report alone."""
    return Console(stderr=True, highlight=False)


def progress_bar() -> Progress:
    """A long check's progress on stderr, gone once the check ends (transient)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
    )


Cell = str | Text
"""A table cell: plain text, or styled text (a verdict, a count of failures)."""


def print_table(
    console: Console,
    title: str | None,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Cell]],
    *,
    droppable: Sequence[str] = (),
    show_header: bool = True,
) -> None:
    """A table whose numbers and verdicts are never cut.

    Cells never wrap. When the table does not fit the console, the `droppable` columns are left
    out (with a note saying which), and when it still does not fit it is stacked: one block per
    row, one "column  value" line per cell. `columns` are (header, justify) pairs.
    """
    left_out: list[str] = []
    names = [name for name, _ in columns]
    for count in range(len(droppable) + 1):
        left_out = list(droppable[:count])
        keep = [k for k, name in enumerate(names) if name not in left_out]
        widths = [
            max(
                [Text(columns[k][0]).cell_len if show_header else 0]
                + [_cell_width(row[k]) for row in rows]
            )
            for k in keep
        ]
        table = Table(
            box=box.SIMPLE_HEAD,
            title=title,
            title_justify="left",
            show_header=show_header,
            show_edge=False,
            padding=(0, 1),
            pad_edge=False,
        )
        for k, width in zip(keep, widths, strict=True):
            name, justify = columns[k]
            table.add_column(name, justify=justify, no_wrap=True, min_width=width)  # type: ignore[arg-type]
        for row in rows:
            table.add_row(*(row[k] for k in keep))
        # Between columns: one space of padding on either side and a blank divider.
        needed = sum(widths) + 3 * (len(keep) - 1)
        if needed <= console.width:
            console.print(table)
            if left_out:
                console.print(
                    f"(left out to fit {console.width} columns: {', '.join(left_out)}; the JSON "
                    "report has every column)"
                )
            return
    if title:
        console.print(Text(title))
    label_width = max((len(name) for name in names[1:]), default=0)
    for row in rows:
        block = Text()
        block.append(row[0] if isinstance(row[0], Text) else Text(str(row[0]), style="bold"))
        for (name, _), cell in zip(columns[1:], row[1:], strict=True):
            block.append(f"\n  {name:<{label_width}}  ")
            block.append(cell if isinstance(cell, Text) else Text(str(cell)))
        console.print(block, overflow="fold")


def _cell_width(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text(cell).cell_len


def number_text(value: float | None, digits: int = 6) -> str:
    """`digits` significant digits; "-" for a number the report does not have."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def verdict_cell(passed: bool, reason: str) -> Text:
    """ok, ok with a doubt (kink, saturated, ...), FAIL with its reason, or ? inconclusive."""
    if reason == "inconclusive":
        return Text("? inconclusive", style="bold yellow")
    if not passed:
        return Text(f"FAIL {reason}", style="bold red")
    if reason == "ok":
        return Text("ok", style="green")
    return Text(f"ok {reason}", style="yellow")


def print_header(console: Console, report: RunReport | PerturbReport | SweepReport) -> None:
    """The model and its formula, then each input: shape, dtype, source, and why not checked."""
    model = report.model
    console.print(
        Text.assemble(
            ("model", "bold"),
            f"  {printable(model.name)}: f({_arguments(report)}) = {printable(model.formula)}",
        )
    )
    if model.gradient_formula:
        console.print(f"        {model.gradient_formula}")
    width = max((len(n) for n in report.inputs), default=1)
    for name, info in report.inputs.items():
        status = "" if info.checked else f"  ({info.why})"
        if info.gradient_shape is not None:
            status += (
                f"  (its gradient comes as {_shape(info.gradient_shape)}: axes of length 1 ignored)"
            )
        console.print(
            Text.assemble(
                (f"{printable(name):<{width}}", "bold"),
                f"  {_shape(info.shape)} {info.dtype} from {printable(info.source)}{status}",
            )
        )


def value_line(report: RunReport | PerturbReport | SweepReport) -> str:
    """f at the inputs; for an array forward, what the number is: <forward, v1>."""
    call = f"f({_arguments(report)})"
    if report.output_shape is None:
        return f"{call} = {report.f!r}"
    settings = report.settings
    if isinstance(settings, RunSettings) and settings.tangent and settings.tangent.check == "jvp":
        return f"forward returns {_outputs(report.output_shape)}; J v is checked element by element"
    return (
        f"<forward, v1> = {report.f!r}  (forward returns {_outputs(report.output_shape)}; "
        "it is checked through random cotangents v, as the gradient of <forward, v>)"
    )


def print_legend(console: Console, reasons: set[str]) -> None:
    """What each reason shown above means (ok needs no words)."""
    for reason in sorted(reasons - {"ok"}):
        console.print(f"  {reason}: {REASON_TEXT[reason]}")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) if shape else "scalar"


def _outputs(shape: tuple[Any, ...] | None) -> str:
    if shape is None:
        return "a scalar"
    if shape and isinstance(shape[0], tuple):
        return "arrays of shapes " + ", ".join(_shape(s) for s in shape)
    return f"an array of shape {_shape(shape)}"


def _arguments(report: RunReport | PerturbReport | SweepReport) -> str:
    return ", ".join(report.inputs)
