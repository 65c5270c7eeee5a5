"""How the verdicts of every entry become a report: `--details auto`
counts entries, not rows; doubtful entries are always listed; the diagnosis names the
summary's worst entry, through the cotangent that holds it; maps keep inconclusive entries
apart."""

from __future__ import annotations

import numpy as np
from synthetic import flat, report, verdicts

from gradcheck_cli.checks.assembly import AUTO_LIST_LIMIT


def test_details_auto_counts_entries_not_rows() -> None:
    """600 entries through 2 cotangents are 1200 rows, but 600 entries: auto lists them all."""
    entries = 600
    assert entries <= AUTO_LIST_LIMIT < 2 * entries
    values = np.linspace(0.1, 1.0, entries)
    batches = [("x", number, np.arange(entries), verdicts(values, values)) for number in (1, 2)]
    made = report({"x": (30, 20)}, batches, cotangents=2)
    assert len(made.checks) == 2 * entries
    assert made.omitted == 0
    assert made.summary["x"].entries == entries


def test_details_auto_beyond_the_limit_lists_the_doubtful_too() -> None:
    """1200 entries, one doubtful (passed at a kink) and one inconclusive far from the worst:
    both are listed, so that the table can show a row for every count it gives."""
    entries = 1200
    values = np.linspace(0.1, 1.0, entries)
    reasons = ["ok"] * entries
    reasons[7], reasons[9] = "kink", "inconclusive"
    made = report(
        {"x": (40, 30)}, [("x", None, np.arange(entries), verdicts(values, values, 1e-6, reasons))]
    )
    listed = {(c.index, c.reason) for c in made.checks}
    assert ((0, 7), "kink") in listed
    assert ((0, 9), "inconclusive") in listed
    assert (made.summary["x"].doubtful, made.summary["x"].inconclusive) == (1, 1)
    assert made.omitted == entries - len(made.checks)


def test_the_diagnosis_names_the_summarys_worst_entry() -> None:
    """Every entry is wrong by a different factor (unexplained); the worst one is worst through
    cotangent 2. The summary, the diagnosis and the map's numbers agree on it."""
    true = np.array([1.0, 2.0, 3.0, 4.0])
    first = verdicts(true * [1.5, 2.5, 3.5, 1.2], true)
    second = verdicts(true * [1.3, 9.0, 1.1, 1.4], true)
    made = report(
        {"b": (4,)},
        [("b", 1, flat(0, 1, 2, 3), first), ("b", 2, flat(0, 1, 2, 3), second)],
        cotangents=2,
    )
    assert made.summary["b"].worst_index == (1,)
    (diagnosis,) = made.diagnosis
    assert diagnosis.kind == "unexplained"
    assert "worst b[1]: analytic 18 vs numerical 2" in diagnosis.message
    ratio = made.error_ratios["b"]
    assert int(np.nanargmax(ratio)) == 1


def test_inconclusive_entries_are_marked_apart_in_the_map() -> None:
    """An entry inconclusive through one cotangent and fine through the other is marked; one
    that fails through any is not (it is a failure)."""
    values = [0.5, 0.6, 0.7]
    first = verdicts(values, values, 1e-6, ["inconclusive", "ok", "inconclusive"])
    second = verdicts([0.5, 0.6, 9.0], values)
    made = report(
        {"b": (3,)}, [("b", 1, flat(0, 1, 2), first), ("b", 2, flat(0, 1, 2), second)], cotangents=2
    )
    assert made.inconclusive_maps["b"].tolist() == [True, False, False]
    assert (made.summary["b"].failed, made.summary["b"].inconclusive) == (1, 1)
