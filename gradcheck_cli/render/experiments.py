"""The experiments on one entry or one direction, in the terminal: `perturb` (the seed's
experiment: move one entry by delta and compare the change with the gradient's prediction) and
`sweep` (the Taylor test, with its log-log chart of residuals).

Only the CLI imports this module, and only for --format table. It reads report objects and
computes nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from gradcheck_cli.render.story import sweep_headline
from gradcheck_cli.render.terminal import (
    Cell,
    number_text,
    print_header,
    print_legend,
    print_table,
    value_line,
    verdict_cell,
)
from gradcheck_cli.report import PerturbReport, SweepReport, entry_label
from gradcheck_cli.sanitize import printable


def render_perturb(report: PerturbReport, console: Console) -> None:
    """Each perturbation as a table of quantities, what is judged against what, the verdict."""
    print_header(console, report)
    for p in report.perturbations:
        label = printable(entry_label(p.wrt, p.index))
        rows: list[list[Cell]] = [
            [value_line(report).partition(" = ")[0], repr(p.f)],
            [f"f with {label} + delta", repr(p.f_perturbed)],
            ["actual change  f(x + delta) - f(x)", number_text(p.actual_change)],
            [f"gradient d/d{label}", number_text(p.gradient, 9)],
            ["predicted change  gradient x delta", number_text(p.predicted_change)],
            ["difference  actual - predicted", number_text(p.actual_change - p.predicted_change)],
            ["relative difference", number_text(p.rel_error, 3)],
            [
                "expected O(delta^2) part  (f(x+d)+f(x-d)-2f(x))/2",
                number_text(p.remainder_estimate, 3),
            ],
            [f"{report.settings.method} derivative at step delta", number_text(p.numerical, 9)],
            ["|derivative - gradient|", number_text(abs(p.numerical - p.gradient), 3)],
            ["tolerance (from the error estimate)", number_text(p.tolerance, 3)],
            ["verdict", verdict_cell(p.passed, p.reason)],
        ]
        if p.reference is not None:
            rows.insert(4, ["PyTorch autograd (--reference torch)", number_text(p.reference, 9)])
        print_table(
            console,
            f"Perturb {label} by delta = {p.delta:g}",
            [("quantity", "left"), ("value", "right")],
            rows,
            show_header=False,
        )
    console.print(
        "The change of a correct gradient differs from its prediction by the O(delta^2) "
        "remainder; after removing it (curvature from f(x - delta)) what is left is judged "
        f"against the {report.settings.method} error estimate at this delta."
    )
    print_legend(console, {p.reason for p in report.perturbations})
    verdict = report.verdict.upper()
    style = {"passed": "bold green", "failed": "bold red"}.get(report.verdict, "bold yellow")
    console.print(Text(verdict, style=style))


def render_sweep(report: SweepReport, console: Console) -> None:
    """The residual at each delta, the chart, the fitted slope and what it says."""
    print_header(console, report)
    direction = report.direction
    if direction.get("kind") == "entry":
        where = f"entry {printable(entry_label(direction['wrt'], direction['index']))}"
    else:
        where = f"a random direction in {direction.get('wrt')} (seed {direction.get('seed')})"
    console.print(
        f"[bold]Taylor test[/bold] along {where}: <g, v> = {report.directional_derivative:.9g}"
    )
    print_table(
        console,
        None,
        [
            ("delta", "right"),
            ("|f(x+dv) - f(x) - d<g,v>|", "right"),
            ("in fit", "center"),
            ("at -delta", "right"),
        ],
        [
            [
                number_text(r.delta, 3),
                number_text(r.residual, 4),
                "*" if r.in_fit else "",
                number_text(r.residual_opposite, 4),
            ]
            for r in report.rows
        ],
        droppable=("at -delta",),
    )
    console.print(
        sweep_chart(
            [r.delta for r in report.rows],
            [r.residual for r in report.rows],
            [r.in_fit for r in report.rows],
        )
    )
    if report.slope is not None:
        console.print(
            f"fitted slope over the {sum(r.in_fit for r in report.rows)} points marked *:"
            f" {report.slope:.3f} (2 = correct gradient, 1 = wrong gradient)"
        )
    # The final line is the story every format tells (render/story.py), CI's included.
    explanation = sweep_headline(report.to_document())
    style = {"passed": "bold green", "failed": "bold red"}.get(report.verdict, "bold yellow")
    console.print(Text(explanation, style=style))


def sweep_chart(
    deltas: Sequence[float], residuals: Sequence[float], in_fit: Sequence[bool], height: int = 12
) -> Text:
    """A log-log scatter in characters: delta decreasing to the right, residual upward."""
    columns = list(zip(deltas, residuals, in_fit, strict=True))
    ys = [math.log10(r) for _, r, _ in columns if r > 0 and math.isfinite(r)]
    if not ys:
        return Text("(every residual is exactly 0: nothing to plot)")
    low, high = math.floor(min(ys)), math.ceil(max(ys))
    if high == low:
        high = low + 1
    column_width = 4
    grid = [[" "] * (column_width * len(deltas)) for _ in range(height)]
    for k, (_, r, fit) in enumerate(columns):
        if r > 0 and math.isfinite(r):
            level = round((math.log10(r) - low) / (high - low) * (height - 1))
            grid[height - 1 - level][k * column_width + 1] = "*" if fit else "o"
    lines = Text()
    for r, row in enumerate(grid):
        label = high - (high - low) * r / (height - 1)
        lines.append(f"{10**label:8.0e} |" + "".join(row).rstrip() + "\n")
    axis = "".join(f"{math.log10(d):<{column_width}.0f}" for d in deltas)
    lines.append(" " * 9 + "+" + "-" * (column_width * len(deltas)) + "\n")
    lines.append(" " * 10 + axis + "  log10(delta)\n")
    lines.append("  * in the fit   o outside it (round-off or higher-order range)")
    return lines
