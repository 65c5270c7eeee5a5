"""Names and numbers as a diagnosis's messages print them: `W[2,1]`, "rows 3–4 of x",
`x[:, :, 3:5, :]`, 0.5000; and what a message may say of the entries it did not see.

Every pattern words its own message; what two patterns would both say (an entry's name, a
region, a fitted number) is said here, so that every message spells it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradcheck_cli.diagnosis.fitting import BoolArray, CheckedNumbers


def entry_name(wrt: str, index: Sequence[int]) -> str:
    """W[2,1], b[3], scale[] (0-D): as the report's tables, JSON readers and CI formats write
    an entry (`report.entry_label`)."""
    return f"{wrt}[{','.join(str(int(i)) for i in index)}]"


def checked_entries(numbers: CheckedNumbers, count: int, *, every: bool = False) -> str:
    """ "12 checked entries of W" ("all 12 ..." with `every`); in fast mode "24 entries of W
    checked one by one", the only entries it may speak of."""
    all_ = "all " if every else ""
    noun = "entry" if count == 1 else "entries"
    if numbers.context.scope == "one-by-one":
        return f"{all_}{count} {noun} of {numbers.wrt} checked one by one"
    return f"{all_}{count} checked {noun} of {numbers.wrt}"


def all_entries_phrase(numbers: CheckedNumbers) -> str:
    """ "at W[0,1]" for a lone checked entry, else "on all 12 checked entries of W"."""
    count = int(numbers.comparable.sum())
    if count == 1:
        only = tuple(int(i) for i in np.argwhere(numbers.comparable)[0])
        return f"at {entry_name(numbers.wrt, only)}"
    return f"on {checked_entries(numbers, count, every=True)}"


def rest_agrees(numbers: CheckedNumbers) -> str:
    """What may be said of the entries outside a pattern: all of them agree only when every
    entry was checked; else only the other checked ones are known to."""
    scope = numbers.context.scope
    if scope == "all":
        return f"the rest of {numbers.wrt} agrees"
    if scope == "selected":
        return f"the other checked entries of {numbers.wrt} agree"
    return f"the other entries of {numbers.wrt} checked one by one agree"


def lower_bound_note(numbers: CheckedNumbers) -> str:
    """In fast mode, when localising stopped before every wrong entry was found."""
    if not numbers.context.at_least:
        return ""
    return " (localising stopped there: more entries may be wrong)"


def first_entry_names(numbers: CheckedNumbers, mask: BoolArray, most: int = 3) -> str:
    """The first few entries of `mask` by name: "W[0, 1], W[3, 4], …"."""
    where = np.argwhere(mask)
    names = [entry_name(numbers.wrt, [int(i) for i in index]) for index in where[:most]]
    return ", ".join(names) + (", …" if len(where) > most else "")


def format_number(value: float) -> str:
    """Four significant digits, trailing zeros kept (5.000, 0.5000, 0.01562), else 1.234e-07."""
    if value == 0.0 or 1e-4 <= abs(value) < 1e4:
        return f"{value:#.4g}"
    return f"{value:.3e}"


def runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices as runs of consecutive ones, (first, last) inclusive."""
    found: list[tuple[int, int]] = []
    for index in indices:
        if found and index == found[-1][1] + 1:
            found[-1] = (found[-1][0], index)
        else:
            found.append((index, index))
    return found


def describe_region(
    wrt: str, shape: tuple[int, ...], slices: Sequence[tuple[int, tuple[int, ...]]]
) -> str:
    """ "column 2 of W", "rows 3–4 of x", "entries 0, 5 of b", "x[:, :, 3:5, :]"."""
    named = dict(slices)

    def noun(singular: str, plural: str, indices: Sequence[int]) -> str:
        return f"{singular if len(indices) == 1 else plural} {_runs_in_words(indices)}"

    if len(shape) == 1:
        return f"{noun('entry', 'entries', named[0])} of {wrt}"
    if len(shape) == 2:
        rows, columns = named.get(0), named.get(1)
        if rows is not None and columns is not None:
            if len(rows) == 1 and len(columns) == 1:
                return entry_name(wrt, (rows[0], columns[0]))
            return f"{noun('row', 'rows', rows)}, {noun('column', 'columns', columns)} of {wrt}"
        if rows is not None:
            return f"{noun('row', 'rows', rows)} of {wrt}"
        assert columns is not None
        return f"{noun('column', 'columns', columns)} of {wrt}"
    parts = [_runs_as_index(named[axis]) if axis in named else ":" for axis in range(len(shape))]
    return f"{wrt}[{', '.join(parts)}]"


def _runs_in_words(indices: Sequence[int]) -> str:
    """[3, 4] -> "3–4", [0, 1, 2, 7] -> "0–2, 7"."""
    return ", ".join(
        str(first) if first == last else f"{first}–{last}" for first, last in runs(indices)
    )


def _runs_as_index(indices: Sequence[int]) -> str:
    """Index notation for one axis: "3", "3:5", or a list such as "[0:3, 7]"."""
    consecutive = runs(indices)
    parts = [str(first) if first == last else f"{first}:{last + 1}" for first, last in consecutive]
    return parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"


def disagree(description: str) -> str:
    """The verb for a region: "column 2 of W disagrees", "rows 1, 4 of w disagree"."""
    plural = description.startswith(("rows", "columns", "entries"))
    return "disagree" if plural else "disagrees"
