"""Names and numbers as a diagnosis's messages print them: `W[2, 1]`, "rows 3–4 of x",
`x[:, :, 3:5, :]`, 0.5000.

Every pattern words its own message; what two patterns would both say (an entry's name, a
region, a fitted number) is said here, so that every message spells it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradcheck_cli.diagnosis.fitting import BoolArray, CheckedNumbers


def entry_name(wrt: str, index: Sequence[int]) -> str:
    """W[2, 1], b[3], scale[] (0-D)."""
    return f"{wrt}[{', '.join(str(i) for i in index)}]"


def all_entries_phrase(numbers: CheckedNumbers) -> str:
    """ "at W[0, 1]" for a lone checked entry, else "on all 12 checked entries of W"."""
    count = int(numbers.comparable.sum())
    if count == 1:
        only = tuple(int(i) for i in np.argwhere(numbers.comparable)[0])
        return f"at {entry_name(numbers.wrt, only)}"
    return f"on all {count} checked entries of {numbers.wrt}"


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
