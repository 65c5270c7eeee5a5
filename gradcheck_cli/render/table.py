"""The run report in the terminal: the header, what was checked and how, the summary per input,
the diagnosis, fast mode's random directions, the worst entries, the error maps and the final
line, which tells the same story as the exit code and the JSON's verdict.

Only the CLI and the API's failure message import this module, and only for --format table, so
JSON runs never load rich. It reads report objects and computes nothing new.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from gradcheck_cli.render.terminal import (
    Cell,
    number_text,
    print_header,
    print_legend,
    print_table,
    value_line,
    verdict_cell,
)
from gradcheck_cli.report import EntryCheck, RunReport, Settings, entry_label
from gradcheck_cli.sanitize import printable


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


def render_run(
    report: RunReport, console: Console, *, top: int = 10, show_map: bool = False
) -> None:
    """The report as a person reads it; error maps for a failing run, or with show_map."""
    print_header(console, report)
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
    console.print(value_line(report))

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
            number_text(s.max_abs_error if measured else None, 3),
            number_text(s.max_rel_error if measured else None, 3),
            worst,
        ]
        if reference_shown:
            cells.append(number_text(s.max_reference_diff, 3))
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
                number_text(c.analytic, 9),
                number_text(c.numerical, 9),
                number_text(c.abs_error, 3),
                number_text(c.error_estimate, 3),
                verdict_cell(c.passed, c.reason),
            ]
            if reference_shown:
                row.append(number_text(c.reference, 10))
            rows.append(row)
        print_table(console, title, columns, rows, droppable=("estimate", "abs error"))
    if report.omitted:
        console.print(
            f"{report.omitted} passing entries are not listed in the JSON report "
            "(--details all lists every one)."
        )
    print_legend(console, {c.reason for c in report.checks} | {d.reason for d in report.directions})
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
            number_text(d.analytic, 10),
            number_text(d.numerical, 10),
            number_text(d.abs_error, 3),
            number_text(d.tolerance, 3),
            verdict_cell(d.passed, d.reason),
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
