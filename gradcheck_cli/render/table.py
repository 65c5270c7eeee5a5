"""The run report in the terminal: the header, what was checked and how, the summary per input,
the diagnosis, fast mode's random directions, the worst entries, the error maps and the final
line, which tells the same story as the exit code and the JSON's verdict.

Only the CLI and the API's failure message import this module, and only for --format table, so
JSON runs never load rich. It reads report objects and computes nothing new.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from gradcheck_cli.render.story import Story, story
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


MAPS = ("failing", "all", "none")
"""Which inputs get an error map: those that did not pass (failed or inconclusive entries),
every checked input, or none."""


def render_run(
    report: RunReport, console: Console, *, top: int = 10, maps: str = "failing"
) -> None:
    """The report as a person reads it: the summary, the diagnosis, the worst entries, every
    inconclusive and doubtful entry with its reason, the error maps (`maps`) and the final
    line, which is the story every other format tells (`story.py`)."""
    told = story(report.to_document())
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
    _render_precision(report, console)
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
        failed = f"≥{s.failed}" if s.failed_at_least else str(s.failed)
        cells: list[Cell] = [
            printable(name),
            str(s.entries),
            Text(failed, style="bold red" if s.failed or s.failed_at_least else ""),
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
    for effect in told.side_effects:
        verdict = "passed" if effect.passed else "FAILED"
        line = f"side effect ({effect.kind}): {verdict}: {printable(effect.message)}"
        console.print(Text(line, style="" if effect.passed else "bold red"))
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
    _render_unsure(report, console, shown=worst_first, top=top, reference=reference_shown)
    if report.omitted:
        console.print(
            f"{report.omitted} passing entries are not listed in the JSON report "
            "(--details all lists every one)."
        )
    print_legend(console, {c.reason for c in report.checks} | {d.reason for d in report.directions})
    _render_maps(report, told, console, maps)
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
    style = {"passed": "bold green", "failed": "bold red"}.get(told.verdict, "bold yellow")
    console.print(Text(told.headline, style=style))


def _render_precision(report: RunReport, console: Console) -> None:
    """A low-precision run: what the gradient was computed in, what it was judged against and
    how its rounding counts; and the float64 check of the same code that came first."""
    low = report.settings.low_precision
    if low is None:
        return
    reference = printable(low.reference_forward)
    first = report.float64_check
    if low.reference_forward == "none":
        console.print(
            f"[bold]precision[/bold]  the whole check runs in {low.precision}: the model's "
            f"forward does not compute in float64 at float64 inputs, so there is no float64 "
            "forward to judge the gradient against (name one with --reference-model "
            "FILE.py:NAME)"
        )
        return
    if report.settings.dtype == "float64":
        console.print(
            Text(
                f"precision  --dtype {low.precision} asked; the same code in float64 fails at "
                "the same (rounded) inputs: the formula is wrong, not the precision. The "
                f"entries below are float64's (the {low.precision} gradient was not judged).",
                style="bold",
            )
        )
        return
    console.print(
        f"[bold]precision[/bold]  the gradient computed in {low.precision} (the inputs and the "
        f"output's gradient rounded to it), against {reference} at the same inputs; each "
        f"entry's estimate adds {printable(low.rounding_rule)}, u = {low.unit_roundoff:.3g}"
    )
    if first is not None:
        console.print(
            f"[bold]float64[/bold]    the same code in float64: {first['verdict']} "
            f"({first['entries']} entries, {first['failed']} failed, {first['inconclusive']} "
            "inconclusive)"
        )
        if first["verdict"] == "passed" and report.verdict != "passed":
            console.print(
                f"           so what does not pass below is lost in {low.precision}, not in the "
                "formula: terms that cancel (1 - tanh(z)**2 near saturation), or a path the code "
                f"takes in {low.precision} alone"
            )


def _render_unsure(
    report: RunReport, console: Console, *, shown: list[EntryCheck], top: int, reference: bool
) -> None:
    """Every count of inconclusive or doubtful entries has rows to show: those the table of
    the worst left out, up to `top` of each, with their reasons (the legend explains them)."""
    seen = {id(c) for c in shown}
    failed = {
        (c.wrt, c.index) for c in report.checks if not c.passed and c.reason != "inconclusive"
    }
    rows: list[list[Cell]] = []
    for name in report.summary:
        # Per input, so that each input's count has its own rows; an entry that failed through
        # another cotangent is a failure, shown above, not a doubt.
        own = [c for c in report.checks if c.wrt == name and (c.wrt, c.index) not in failed]
        for unsure in (True, False):
            picked = [
                c
                for c in own
                if id(c) not in seen
                and (c.reason == "inconclusive" if unsure else c.passed and c.reason != "ok")
            ]
            for c in sorted(picked, key=lambda c: -c.excess)[:top]:
                row: list[Cell] = [
                    _entry_label(c),
                    number_text(c.analytic, 9),
                    number_text(c.numerical, 9),
                    number_text(c.abs_error, 3),
                    number_text(c.error_estimate, 3),
                    verdict_cell(c.passed, c.reason),
                ]
                if reference:
                    row.append(number_text(c.reference, 10))
                rows.append(row)
    if not rows:
        return
    columns = [
        ("entry", "left"),
        ("analytic", "right"),
        ("numerical", "right"),
        ("abs error", "right"),
        ("estimate", "right"),
        ("verdict", "left"),
    ]
    if reference:
        columns.append(("torch", "right"))
    print_table(
        console,
        "Inconclusive and doubtful entries (not among the worst above), with their reasons",
        columns,
        rows,
        droppable=("estimate", "abs error"),
    )


def _render_maps(report: RunReport, told: Story, console: Console, maps: str) -> None:
    """The error maps: of the inputs that did not pass (`failing`), of every checked input
    (`all`), or none. Each names the summary's worst entry and marks inconclusive entries."""
    if maps == "none":
        return
    from gradcheck_cli.render.errormap import error_map

    verdicts = {item.name: item.verdict for item in told.inputs}
    checked = "checked one by one" if report.fast is not None else "checked"
    for name, ratio in report.error_ratios.items():
        if maps == "failing" and verdicts.get(name, "passed") == "passed":
            continue
        summary = report.summary.get(name)
        console.print(
            error_map(
                printable(name),
                ratio,
                width=console.width,
                inconclusive=report.inconclusive_maps.get(name),
                worst=None if summary is None else summary.worst_index,
                checked=checked,
            )
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
        stopped = any(s.failed_at_least for s in report.summary.values())
        console.print(
            f"Bisection: {bisections} directional checks on blocks, "
            f"{checked} entries checked one by one, {failed} wrong"
            + (f" (localising stops after {limit}: there may be more)" if stopped else "")
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
