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
    RunSettings,
    Settings,
    SweepReport,
    entry_label,
)
from gradcheck_cli.sanitize import printable


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


Cell = str | Text


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


def _num(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def _verdict(passed: bool, reason: str) -> Text:
    if reason == "inconclusive":
        return Text("? inconclusive", style="bold yellow")
    if not passed:
        return Text(f"FAIL {reason}", style="bold red")
    if reason == "ok":
        return Text("ok", style="green")
    return Text(f"ok {reason}", style="yellow")


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


def _header(console: Console, report: RunReport | PerturbReport | SweepReport) -> None:
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
        console.print(
            Text.assemble(
                (f"{printable(name):<{width}}", "bold"),
                f"  {_shape(info.shape)} {info.dtype} from {printable(info.source)}{status}",
            )
        )


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
    label = printable(entry_label(check.wrt, check.index))
    if check.tangent is not None:
        return f"{label} t{check.tangent}"
    return label if check.cotangent is None else f"{label} v{check.cotangent}"


def _value_line(report: RunReport | PerturbReport | SweepReport) -> str:
    """f at the inputs; for an array forward, what the number is: <forward, v1>."""
    call = f"f({_arguments(report)})"
    if report.output_shape is None:
        return f"{call} = {report.f!r}"
    if (
        isinstance(report.settings, RunSettings)
        and report.settings.tangent is not None
        and report.settings.tangent.check == "jvp"
    ):
        return f"forward returns {_outputs(report.output_shape)}; J v is checked element by element"
    return (
        f"<forward, v1> = {report.f!r}  (forward returns {_outputs(report.output_shape)}; "
        "it is checked through random cotangents v, as the gradient of <forward, v>)"
    )


def render_run(
    report: RunReport, console: Console, *, top: int = 10, show_map: bool = False
) -> None:
    """The report as a person reads it; error maps for a failing run, or with show_map."""
    _header(console, report)
    tangent = report.settings.tangent
    kind = None if tangent is None else tangent.check
    if kind in ("hvp", "jvp"):
        what = (
            "H v, the model's hvp, against central differences of the gradient along v"
            if kind == "hvp"
            else "J v, the model's jvp, against central differences of forward along v"
        )
        count = None if tangent is None else tangent.tangents
        console.print(f"[bold]check[/bold]  {what}, for {count} seeded random tangents v")
        if report.gradient_check is not None:
            first = report.gradient_check
            console.print(
                f"first    the gradient: {first['verdict']} ({first['entries']} entries, "
                f"{first['failed']} failed)"
            )
    else:
        console.print(f"[bold]check[/bold]  {_rule_text(report.settings)}")
    console.print(_value_line(report))

    columns = [
        ("input", "left"),
        ("entries", "right"),
        ("failed", "right"),
        ("unsure", "right"),
        ("doubtful", "right"),
        ("max abs error", "right"),
        ("max rel error", "right"),
        ("worst entry", "right"),
    ]
    reference_shown = any(s.max_reference_diff is not None for s in report.summary.values())
    if reference_shown:
        columns.append(("max |torch - analytic|", "right"))
    rows = []
    for name, s in report.summary.items():
        worst = "-" if s.worst_index is None else printable(entry_label(name, s.worst_index))
        # Fast mode measures errors only of the entries it checked one by one.
        measured = s.checked_one_by_one != 0
        cells: list[Cell] = [
            printable(name),
            str(s.entries),
            Text(str(s.failed), style="bold red" if s.failed else ""),
            Text(str(s.inconclusive), style="bold yellow" if s.inconclusive else ""),
            str(s.doubtful),
            _num(s.max_abs_error if measured else None, 3),
            _num(s.max_rel_error if measured else None, 3),
            worst,
        ]
        if reference_shown:
            cells.append(_num(s.max_reference_diff, 3))
        rows.append(cells)
    print_table(console, "Summary", columns, rows, droppable=("doubtful", "max rel error"))
    for item in report.diagnosis:
        console.print(Text(f"diagnosis ({item.kind}): {printable(item.message)}", style="bold"))
    if report.directions:
        _render_directions(report, console)

    order = {False: 0, True: 1}
    worst_first = sorted(report.checks, key=lambda c: (order[c.passed], -c.excess))[:top]
    checked = (
        sum(s.checked_one_by_one or 0 for s in report.summary.values())
        if report.fast is not None
        else sum(s.entries for s in report.summary.values())
    )
    rows_checked = len(report.checks) + report.omitted
    if worst_first:
        if report.fast is not None:
            title = f"Worst {len(worst_first)} of {checked} entries checked one by one"
        elif rows_checked != checked:
            # One row per entry and cotangent (or tangent): say so, not "of 15 entries".
            tag = "tangent" if any(c.tangent for c in report.checks) else "cotangent"
            title = (
                f"Worst {len(worst_first)} of {rows_checked} checks ({checked} entries, each "
                f"through every {tag}), furthest past their tolerance first"
            )
        else:
            title = (
                f"Worst {len(worst_first)} of {checked} entries, furthest past their "
                "tolerance first"
            )
        columns = [
            ("entry", "left"),
            ("analytic", "right"),
            ("numerical", "right"),
            ("abs error", "right"),
            ("estimate", "right"),
            ("verdict", "left"),
        ]
        if reference_shown:
            columns.append(("torch", "right"))
        rows = []
        for c in worst_first:
            row: list[Cell] = [
                _entry_label(c),
                _num(c.analytic, 9),
                _num(c.numerical, 9),
                _num(c.abs_error, 3),
                _num(c.error_estimate, 3),
                _verdict(c.passed, c.reason),
            ]
            if reference_shown:
                row.append(_num(c.reference, 10))
            rows.append(row)
        print_table(console, title, columns, rows, droppable=("estimate", "abs error"))
    if report.omitted:
        console.print(
            f"{report.omitted} passing entries are not listed in the JSON report "
            "(--details all lists every one)."
        )
    _legend(console, {c.reason for c in report.checks} | {d.reason for d in report.directions})
    if show_map or report.verdict != "passed":
        from gradcheck_cli.render.errormap import error_map

        for name, ratio in report.error_ratios.items():
            console.print(error_map(printable(name), ratio, width=console.width))
    if report.forward_calls is not None:
        entries = sum(s.entries for s in report.summary.values())
        if report.fast is not None:
            count, unit = entries, "covered entry"
        elif rows_checked != checked:
            count, unit = rows_checked, "entry and cotangent"
        else:
            count, unit = entries, "entry"
        per = f" ({report.forward_calls / count:.2f} per {unit})" if count else ""
        console.print(f"forward calls: {report.forward_calls}{per}")
    console.print(_final_line(report))


def _final_line(report: RunReport) -> Text:
    """The last line: the same story as the exit code and the JSON's verdict."""
    total = sum(s.entries for s in report.summary.values())
    failed = sum(s.failed for s in report.summary.values())
    unsure = sum(s.inconclusive for s in report.summary.values())
    doubtful = sum(s.doubtful for s in report.summary.values())
    verdict = report.verdict
    if report.fast is not None:
        return _fast_final_line(report, total, failed, unsure)
    if verdict == "failed":
        more = f"; {unsure} inconclusive" if unsure else ""
        return Text(f"FAILED: {failed} of {total} entries disagree{more}.", style="bold red")
    if verdict == "inconclusive":
        return Text(
            f"INCONCLUSIVE: no entry disagrees, but {unsure} of {total} could not be verified "
            "(their finite differences are too unsure; see the reasons above).",
            style="bold yellow",
        )
    note = f" ({doubtful} doubtful, see the reasons above)" if doubtful else ""
    every = "the one entry agrees" if total == 1 else f"all {total} entries agree"
    return Text(f"PASSED: {every}{note}.", style="bold green")


def _fast_final_line(report: RunReport, total: int, failed: int, unsure: int) -> Text:
    assert report.fast is not None
    fast = report.fast
    top_level = [d for d in report.directions if d.depth == 0]
    bad = [d for d in top_level if not d.passed and d.reason != "inconclusive"]
    if report.verdict == "failed":
        if failed:
            found = f"{failed} wrong entries found"
        elif fast.unlocalised:
            found = f"the error lies in {len(fast.unlocalised)} block(s) listed above"
        else:
            found = (
                "no single entry was found wrong: small errors spread over many entries add "
                "up along v"
            )
        more = f"; {unsure} inconclusive" if unsure else ""
        return Text(
            f"FAILED: {len(bad)} of {len(top_level)} random directions disagree; {found}{more}.",
            style="bold red",
        )
    if report.verdict == "inconclusive":
        unsure_directions = sum(d.reason == "inconclusive" for d in top_level)
        what = (
            f"{unsure_directions} of {len(top_level)} random directions could not be verified "
            "(the finite difference's own error is as large as what it compares)"
            if unsure_directions
            else f"{unsure} entries checked one by one could not be verified"
        )
        return Text(f"INCONCLUSIVE: nothing disagrees, but {what}.", style="bold yellow")
    shown = (
        ""
        if fast.detectable_error is None
        else f" An error of size {fast.detectable_error:.2g} or more in the gradient (norm "
        f"over the entries) would have shown except with probability "
        f"{fast.escape_probability:g}."
    )
    return Text(
        f"PASSED: {len(top_level)} random directions over {total} entries agree with the "
        f"gradient.{shown}",
        style="bold green",
    )


def _render_directions(report: RunReport, console: Console) -> None:
    """--mode fast: the random directions, and what the bisection found."""
    columns = [
        ("direction", "left"),
        ("entries", "right"),
        ("<g, v>", "right"),
        ("numerical", "right"),
        ("abs error", "right"),
        ("tolerance", "right"),
        ("verdict", "left"),
    ]
    top_level = [d for d in report.directions if d.depth == 0]
    rows: list[list[Cell]] = [
        [
            f"v{number} in {printable(d.wrt)}",
            str(d.entries),
            _num(d.analytic, 10),
            _num(d.numerical, 10),
            _num(d.abs_error, 3),
            _num(d.tolerance, 3),
            _verdict(d.passed, d.reason),
        ]
        for number, d in enumerate(top_level, start=1)
    ]
    print_table(
        console,
        "Random directions (fast mode): directional derivative vs <g, v>",
        columns,
        rows,
        droppable=("abs error", "entries"),
    )
    bisections = len(report.directions) - len(top_level)
    if bisections or report.checks:
        fast = report.settings.fast
        limit = None if fast is None else fast.localise_limit
        failed = sum(s.failed for s in report.summary.values())
        checked = sum(s.checked_one_by_one or 0 for s in report.summary.values())
        console.print(
            f"Bisection: {bisections} directional checks on blocks, "
            f"{checked} entries checked one by one, {failed} wrong"
            + (
                f" (localising stops after {limit}: there may be more)"
                if limit is not None and failed >= int(str(limit))
                else ""
            )
            + "."
        )
    if report.fast is not None:
        for block in report.fast.unlocalised:
            console.print(
                Text(
                    f"Failing block: {block.entries} entries of {printable(block.wrt)} from "
                    f"{printable(entry_label(block.wrt, block.first))} to "
                    f"{printable(entry_label(block.wrt, block.last))} (row-major order): a "
                    "direction over it fails, every half of it passes.",
                    style="bold red",
                )
            )


def _legend(console: Console, reasons: set[str]) -> None:
    for reason in sorted(reasons - {"ok"}):
        console.print(f"  {reason}: {REASON_TEXT[reason]}")


def render_perturb(report: PerturbReport, console: Console) -> None:
    _header(console, report)
    for p in report.perturbations:
        label = printable(entry_label(p.wrt, p.index))
        rows: list[list[Cell]] = [
            [_value_line(report).partition(" = ")[0], repr(p.f)],
            [f"f with {label} + delta", repr(p.f_perturbed)],
            ["actual change  f(x + delta) - f(x)", _num(p.actual_change)],
            [f"gradient d/d{label}", _num(p.gradient, 9)],
            ["predicted change  gradient x delta", _num(p.predicted_change)],
            ["difference  actual - predicted", _num(p.actual_change - p.predicted_change)],
            ["relative difference", _num(p.rel_error, 3)],
            ["expected O(delta^2) part  (f(x+d)+f(x-d)-2f(x))/2", _num(p.remainder_estimate, 3)],
            [f"{report.settings.method} derivative at step delta", _num(p.numerical, 9)],
            ["|derivative - gradient|", _num(abs(p.numerical - p.gradient), 3)],
            ["tolerance (from the error estimate)", _num(p.tolerance, 3)],
            ["verdict", _verdict(p.passed, p.reason)],
        ]
        if p.reference is not None:
            rows.insert(4, ["PyTorch autograd (--reference torch)", _num(p.reference, 9)])
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
    _legend(console, {p.reason for p in report.perturbations})
    verdict = report.verdict.upper()
    style = {"passed": "bold green", "failed": "bold red"}.get(report.verdict, "bold yellow")
    console.print(Text(verdict, style=style))


def render_sweep(report: SweepReport, console: Console) -> None:
    _header(console, report)
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
                _num(r.delta, 3),
                _num(r.residual, 4),
                "*" if r.in_fit else "",
                _num(r.residual_opposite, 4),
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
    explanation = {
        "slope-2": "PASSED: the residual falls like delta^2, as for a correct gradient.",
        "slope-1": "FAILED: the residual falls like delta: the gradient is wrong along v.",
        "kink": "PASSED: the residual falls like delta with the same sign on both sides of x: "
        "f has a kink along v, and the gradient lies between its one-sided slopes.",
        "round-off": "PASSED: every residual is at round-off level (f is linear along v).",
        "inconclusive": "INCONCLUSIVE: too few residuals above round-off to fit a slope; "
        "widen --largest/--smallest.",
    }[report.reason]
    style = {"passed": "bold green", "failed": "bold red"}.get(report.verdict, "bold yellow")
    console.print(Text(explanation, style=style))


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
