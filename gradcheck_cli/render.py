"""Rich rendering of reports: tables for people. Reads report objects and computes nothing new.

Only the CLI imports this module, and only for --format table, so JSON runs never load rich.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from gradcheck_cli.report import (
    REASON_TEXT,
    EntryCheck,
    PerturbReport,
    RunReport,
    Settings,
    SweepReport,
)


def stdout_console() -> Console:
    """On a terminal, its width; piped, COLUMNS or 120 (rich's 80 would cut the tables)."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=120)
    return console


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
    )


def _num(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def _verdict(passed: bool, reason: str) -> Text:
    if not passed:
        return Text(f"FAIL {reason}", style="bold red")
    if reason == "ok":
        return Text("ok", style="green")
    return Text(f"ok {reason}", style="yellow")


def _header(console: Console, report: RunReport | PerturbReport | SweepReport) -> None:
    model = report.model
    console.print(f"[bold]model[/bold]  {model.name}: f(X, W) = {model.formula}")
    if model.gradient_formula:
        console.print(f"        {model.gradient_formula}")
    for name, info in report.inputs.items():
        rows, cols = info.shape
        console.print(f"[bold]{name}[/bold]      {rows}x{cols} {info.dtype} from {info.source}")


def _rule_text(settings: Settings) -> str:
    if settings.tolerance == "estimate":
        tol = (
            f"|analytic - numerical| <= {settings.safety:g} x error estimate"
            f" + {settings.rtol:.2g} x |numerical|"
        )
    else:
        tol = f"|analytic - numerical| <= {settings.atol:g} + {settings.rtol:g} x |numerical|"
    return f"{settings.method} differences, step {settings.step_rule}; pass if {tol}"


def _entry_label(check: EntryCheck) -> str:
    label = f"{check.wrt}[{check.index[0]},{check.index[1]}]"
    return label if check.cotangent is None else f"{label} v{check.cotangent}"


def render_run(report: RunReport, console: Console, *, top: int = 10) -> None:
    _header(console, report)
    console.print(f"[bold]check[/bold]  {_rule_text(report.settings)}")
    console.print(f"f(X, W) = {report.f!r}")

    summary = Table(box=box.SIMPLE_HEAD, title="Summary", title_justify="left")
    for column in (
        "matrix",
        "entries",
        "failed",
        "doubtful",
        "max abs error",
        "max rel error",
        "worst entry",
    ):
        summary.add_column(column, justify="left" if column == "matrix" else "right")
    reference_shown = any(s.max_reference_diff is not None for s in report.summary.values())
    if reference_shown:
        summary.add_column("max |torch - analytic|", justify="right")
    for name, s in report.summary.items():
        worst = "-" if s.worst_index is None else f"{name}[{s.worst_index[0]},{s.worst_index[1]}]"
        cells: list[Any] = [
            name,
            str(s.entries),
            Text(str(s.failed), style="bold red" if s.failed else ""),
            str(s.doubtful),
            _num(s.max_abs_error, 3),
            _num(s.max_rel_error, 3),
            worst,
        ]
        if reference_shown:
            cells.append(_num(s.max_reference_diff, 3))
        summary.add_row(*cells)
    console.print(summary)
    if report.directions:
        _render_directions(report, console)

    worst_first = sorted(report.checks, key=lambda c: (c.passed, -c.excess))[:top]
    if worst_first:
        table = Table(
            box=box.SIMPLE_HEAD,
            title=f"Worst {len(worst_first)} of {sum(s.entries for s in report.summary.values())}"
            " entries, furthest past their tolerance first",
            title_justify="left",
            padding=(0, 1),
            pad_edge=False,
        )
        for column in (
            "entry",
            "analytic",
            "numerical",
            "abs error",
            "estimate",
            "verdict",
        ):
            # Numbers and verdicts never wrap or get cut: a narrow terminal shows fewer columns'
            # padding instead.
            table.add_column(
                column,
                justify="left" if column in ("entry", "verdict") else "right",
                no_wrap=True,
                min_width=len(column),
            )
        if reference_shown:
            table.add_column("torch", justify="right")
        for c in worst_first:
            row: list[Any] = [
                _entry_label(c),
                _num(c.analytic, 9),
                _num(c.numerical, 9),
                _num(c.abs_error, 3),
                _num(c.error_estimate, 3),
                _verdict(c.passed, c.reason),
            ]
            if reference_shown:
                row.append(_num(c.reference, 10))
            table.add_row(*row)
        console.print(table)
    if report.omitted:
        console.print(
            f"{report.omitted} passing entries are not listed in the JSON report "
            "(--details all lists every one)."
        )
    _legend(console, {c.reason for c in report.checks})
    total = sum(s.entries for s in report.summary.values())
    failed = sum(s.failed for s in report.summary.values())
    if failed:
        console.print(Text(f"FAILED: {failed} of {total} entries disagree.", style="bold red"))
    else:
        doubtful = sum(s.doubtful for s in report.summary.values())
        note = f" ({doubtful} doubtful, see the reasons above)" if doubtful else ""
        console.print(Text(f"PASSED: all {total} entries agree{note}.", style="bold green"))


def _render_directions(report: RunReport, console: Console) -> None:
    """--mode fast: the random directions, and what the bisection found."""
    table = Table(
        box=box.SIMPLE_HEAD,
        title="Random directions (fast mode): directional difference vs <g, v>",
        title_justify="left",
    )
    for column in (
        "direction",
        "entries",
        "<g, v>",
        "numerical",
        "abs error",
        "tolerance",
        "verdict",
    ):
        table.add_column(column, justify="left" if column in ("direction", "verdict") else "right")
    top_level = [d for d in report.directions if d.depth == 0]
    for number, d in enumerate(top_level, start=1):
        table.add_row(
            f"v{number} in {d.wrt}",
            str(d.entries),
            _num(d.analytic, 10),
            _num(d.numerical, 10),
            _num(d.abs_error, 3),
            _num(d.tolerance, 3),
            _verdict(d.passed, "ok" if d.passed else "mismatch"),
        )
    console.print(table)
    bisections = len(report.directions) - len(top_level)
    if bisections or report.checks:
        limit = report.settings.extra.get("localise_limit")
        failed = sum(s.failed for s in report.summary.values())
        console.print(
            f"Bisection: {bisections} directional checks on blocks, "
            f"{len(report.checks)} entries checked one by one, {failed} wrong"
            + (
                f" (localising stops after {limit}: there may be more)"
                if failed >= (limit or 0)
                else ""
            )
            + "."
        )


def _legend(console: Console, reasons: set[str]) -> None:
    for reason in sorted(reasons - {"ok"}):
        console.print(f"  {reason}: {REASON_TEXT[reason]}")


def render_perturb(report: PerturbReport, console: Console) -> None:
    _header(console, report)
    for p in report.perturbations:
        label = f"{p.wrt}[{p.index[0]},{p.index[1]}]"
        table = Table(
            box=box.SIMPLE_HEAD,
            title=f"Perturb {label} by delta = {p.delta:g}",
            title_justify="left",
            show_header=False,
        )
        table.add_column("quantity")
        table.add_column("value", justify="right")
        table.add_row("f(X, W)", repr(p.f))
        table.add_row(f"f with {label} + delta", repr(p.f_perturbed))
        table.add_row("actual change  f(x + delta) - f(x)", _num(p.actual_change))
        table.add_row(f"gradient dF/d{label}", _num(p.gradient, 9))
        table.add_row("predicted change  gradient x delta", _num(p.predicted_change))
        table.add_row("difference  actual - predicted", _num(p.actual_change - p.predicted_change))
        table.add_row("relative difference", _num(p.rel_error, 3))
        table.add_row(
            "expected O(delta^2) part  (f(x+d)+f(x-d)-2f(x))/2", _num(p.remainder_estimate, 3)
        )
        table.add_row(f"{report.settings.method} derivative at step delta", _num(p.numerical, 9))
        table.add_row("|derivative - gradient|", _num(abs(p.numerical - p.gradient), 3))
        table.add_row("tolerance (from the error estimate)", _num(p.tolerance, 3))
        table.add_row("verdict", _verdict(p.passed, p.reason))
        console.print(table)
    console.print(
        "The change of a correct gradient differs from its prediction by the O(delta^2) "
        "remainder; after removing it (curvature from f(x - delta)) what is left is judged "
        f"against the {report.settings.method} error estimate at this delta."
    )
    _legend(console, {p.reason for p in report.perturbations})
    verdict = "PASSED" if report.passed else "FAILED"
    console.print(Text(verdict, style="bold green" if report.passed else "bold red"))


def render_sweep(report: SweepReport, console: Console) -> None:
    _header(console, report)
    direction = report.direction
    if direction.get("kind") == "entry":
        index = direction["index"]
        where = f"entry {direction['wrt']}[{index[0]},{index[1]}]"
    else:
        where = f"a random direction in {direction.get('wrt')} (seed {direction.get('seed')})"
    console.print(
        f"[bold]Taylor test[/bold] along {where}: <g, v> = {report.directional_derivative:.9g}"
    )
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("delta", justify="right")
    table.add_column("|f(x+dv) - f(x) - d<g,v>|", justify="right")
    table.add_column("in fit", justify="center")
    for row in report.rows:
        table.add_row(_num(row.delta, 3), _num(row.residual, 4), "*" if row.in_fit else "")
    console.print(table)
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
    explanation = {
        "slope-2": "PASSED: the residual falls like delta^2, as for a correct gradient.",
        "slope-1": "FAILED: the residual falls like delta: the gradient is wrong along v.",
        "round-off": "PASSED: every residual is at round-off level (f is linear along v).",
        "inconclusive": "FAILED: too few residuals above round-off to fit a slope; "
        "widen --largest/--smallest.",
    }[report.reason]
    console.print(Text(explanation, style="bold green" if report.passed else "bold red"))


def sweep_chart(
    deltas: Sequence[float], residuals: Sequence[float], in_fit: Sequence[bool], height: int = 12
) -> Text:
    """A log-log scatter in characters: delta decreasing to the right, residual upward."""
    points = [
        (math.log10(d), math.log10(r), f)
        for d, r, f in zip(deltas, residuals, in_fit, strict=True)
        if r > 0 and math.isfinite(r)
    ]
    if not points:
        return Text("(every residual is exactly 0: nothing to plot)")
    ys = [p[1] for p in points]
    low, high = math.floor(min(ys)), math.ceil(max(ys))
    if high == low:
        high = low + 1
    column_width = 4
    grid = [[" "] * (column_width * len(deltas)) for _ in range(height)]
    for k, (log_d, log_r, fit) in enumerate(
        (math.log10(d), math.log10(r) if r > 0 else None, f)
        for d, r, f in zip(deltas, residuals, in_fit, strict=True)
    ):
        del log_d
        if log_r is None or not math.isfinite(log_r):
            continue
        level = round((log_r - low) / (high - low) * (height - 1))
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


def render_models(rows: Sequence[dict[str, Any]], console: Console) -> None:
    table = Table(
        box=box.SIMPLE_HEAD,
        title="Built-in models: --model ACTIVATION-REDUCTION",
        title_justify="left",
    )
    for column in ("name", "f(X, W)", "activation", "derivative", "complex-step"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["formula"],
            row["activation"],
            row["derivative"],
            "yes" if row["complex_step"] else "no (kink)",
        )
    console.print(table)
    console.print(
        "Gradients: dF/dX = act'(X @ W) @ W.T,  dF/dW = X.T @ act'(X @ W)"
        "  (divided by n*m for mean)."
    )
