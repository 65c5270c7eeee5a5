"""An error map: the picture of which entries of an input's gradient agree, for a terminal.

Each entry's ratio |analytic - numerical| / tolerance (> 1 fails) becomes a glyph, coloured as
well, so that NO_COLOR and a log file still show it: a wrong column is a column of █, an entry
the differences could not verify (inconclusive) a `?`, never the `·` of a verified one. Large inputs
are aggregated into blocks that show their worst entry; 0-D and 1-D inputs are one (wrapped) row,
2-D inputs a grid with row and column labels, N-D inputs labelled 2-D slices over the last two
axes. Nothing is ever wider than the width asked for.

Rendering only: this reads the ratios it is given and computes nothing about the check.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from rich.text import Text

# Severity codes, worst last, so that the worst entry of a block is the block's maximum code.
UNCHECKED, UNSURE, FAILS, NON_FINITE = 0, 5, 6, 7
PASS_BOUNDS = (0.1, 0.25, 0.5, 1.0)
"""Upper bounds (inclusive) of the passing glyphs' ratios; above 1 an entry fails."""
GLYPHS = (" ", "·", "░", "▒", "▓", "?", "█", "X")
"""Per code: not checked, <= 0.1 (agrees well), <= 0.25, <= 0.5, <= 1 (close to failing),
inconclusive (not verified), fails, failed with nothing finite to compare."""
STYLES = ("", "green", "green", "yellow", "dark_orange", "bold yellow", "bold red", "bold magenta")
LEGEND = (
    "· ≤0.1",
    "░ ≤0.25",
    "▒ ≤0.5",
    "▓ ≤1",
    "? inconclusive",
    "█ >1 fails",
    "X non-finite",
    "blank: not checked",
)
FAIL_GLYPH = GLYPHS[FAILS]

Codes = NDArray[np.int8]


def error_map(
    wrt: str,
    ratio: ArrayLike,
    *,
    width: int,
    max_rows: int = 20,
    max_slices: int = 6,
    inconclusive: ArrayLike | None = None,
    worst: Sequence[int] | None = None,
    checked: str = "checked",
) -> Text:
    """The error map of input `wrt` from its per-entry ratios, at most `width` columns wide.

    `ratio` has the input's shape: NaN = not checked, inf = failed with nothing finite to
    compare; `inconclusive` (the same shape) marks the entries that could not be verified.
    `worst` is the entry the report calls worst (the summary's), named in the map's summary
    line; `checked` how the report says its entries were checked ("checked one by one" in fast
    mode). At most `max_rows` rows of cells per 2-D picture (more rows are aggregated into
    blocks) and `max_slices` slices of an N-D input (the worst ones, with a note).
    """
    values = np.abs(np.asarray(ratio, dtype=np.float64))
    unsure = (
        np.zeros(values.shape, dtype=bool)
        if inconclusive is None
        else np.asarray(inconclusive, dtype=bool)
    )
    codes = _codes(values, unsure)
    width = max(width, 1)
    max_rows = max(max_rows, 1)
    lines = [
        *_title(wrt, values, width),
        *_summary(wrt, values, unsure, width, worst=worst, checked=checked),
    ]
    if values.ndim <= 1:
        lines += _row_panel(wrt, codes.reshape(-1), width, max_rows, scalar=values.ndim == 0)
    elif values.ndim == 2:
        lines += _grid_panel(codes, width, max_rows)
    else:
        lines += _slices(wrt, codes, width, max_rows, max_slices)
    lines += _legend(width)
    picture = Text("\n").join(_fit(line, width) for line in lines)
    picture.no_wrap = True
    picture.overflow = "crop"
    return picture


def _codes(values: NDArray[np.float64], unsure: NDArray[np.bool_]) -> Codes:
    codes = np.full(values.shape, UNCHECKED, dtype=np.int8)
    finite = np.isfinite(values)
    codes[finite] = 1 + np.searchsorted(np.array(PASS_BOUNDS), values[finite], side="left")
    codes[finite & (values > PASS_BOUNDS[-1])] = FAILS
    codes[unsure & finite & (values <= PASS_BOUNDS[-1])] = UNSURE
    codes[np.isinf(values)] = NON_FINITE
    return codes


def _fit(line: Text, width: int) -> Text:
    """Crop a line to the width: every layout below already fits, this is the guarantee."""
    line.truncate(width, overflow="crop")
    return line


def _wrapped(text: str, width: int, style: str = "") -> list[Text]:
    """Prose lines wrapped at the width (cropping would cut off an entry's name)."""
    return [Text(line, style=style) for line in textwrap.wrap(text, width) or [""]]


def _title(wrt: str, values: NDArray[np.float64], width: int) -> list[Text]:
    shape = " × ".join(str(n) for n in values.shape) if values.ndim else "0-D"
    title = f"{wrt} ({shape}): |analytic - numerical| / tolerance per entry"
    return _wrapped(title, width, "bold")


def _summary(
    wrt: str,
    values: NDArray[np.float64],
    unsure: NDArray[np.bool_],
    width: int,
    *,
    worst: Sequence[int] | None,
    checked: str,
) -> list[Text]:
    present = ~np.isnan(values)
    failing = present & (values > 1.0)
    count = int(present.sum())
    if count == 0:
        return _wrapped(f"no entry {checked}", width)
    text = f"{int(failing.sum())} of {count} {checked} entries fail"
    if checked != "checked":
        text = f"{int(failing.sum())} of the {count} entries {checked} fail"
    non_finite = int(np.isinf(values).sum())
    if non_finite:
        text += f" ({non_finite} with nothing finite to compare)"
    doubtful = int((unsure & present & ~failing).sum())
    if doubtful:
        text += f"; {doubtful} inconclusive (?)"
    finite = np.where(np.isfinite(values), values, -1.0)
    if worst is not None and len(worst) == values.ndim and present[tuple(worst)]:
        at = tuple(int(i) for i in worst)
        if np.isfinite(values[at]):
            text += f"; worst {_label(wrt, at)}, ratio {values[at]:.3g}"
        else:
            text += f"; worst {_label(wrt, at)}, with nothing finite to compare"
        return _wrapped(text, width)
    flat = int(np.argmax(finite))
    if finite.flat[flat] >= 0.0:
        at = tuple(int(i) for i in np.unravel_index(flat, values.shape))
        text += f"; largest finite ratio {finite.flat[flat]:.3g} at {_label(wrt, at)}"
    return _wrapped(text, width)


def _label(wrt: str, index: Sequence[int]) -> str:
    """`w[2,2]`, as the tables and the diagnosis name an entry."""
    return f"{wrt}[{','.join(str(i) for i in index)}]"


def _worst_blocks(codes: Codes, block_rows: int, block_columns: int) -> Codes:
    """Each block's worst code (unchecked padding is the least severe, so it never wins)."""
    rows, columns = codes.shape
    padded_rows = math.ceil(rows / block_rows) * block_rows
    padded_columns = math.ceil(columns / block_columns) * block_columns
    padded = np.full((padded_rows, padded_columns), UNCHECKED, dtype=np.int8)
    padded[:rows, :columns] = codes
    blocks = padded.reshape(
        padded_rows // block_rows, block_rows, padded_columns // block_columns, block_columns
    )
    return np.asarray(blocks.max(axis=(1, 3)), dtype=np.int8)


def _cells(codes: Sequence[int], cell_width: int) -> Text:
    """One row of glyphs; with two columns per cell, a space follows every glyph but the last."""
    text = Text()
    for position, code in enumerate(codes):
        if position and cell_width == 2:
            text.append(" ")
        text.append(GLYPHS[code], style=STYLES[code])
    return text


def _label_step(largest_label: int, cell_width: int) -> int:
    """Label every k-th cell, k in 1, 2, 5, 10, 20, 50, ..., so labels keep a space between."""
    decade = 1
    while True:
        for base in (1, 2, 5):
            if base * decade * cell_width >= largest_label + 1:
                return base * decade
        decade *= 10


def _ruler(starts: Sequence[int], cell_width: int, prefix: int, room: int) -> Text:
    """Column labels: the first index of every k-th cell, above that cell, within the room
    (a label cut at the edge would name the wrong column, so it is left out instead)."""
    step = _label_step(len(str(starts[-1])), cell_width)
    ruler = [" "] * room
    for cell in range(0, len(starts), step):
        label = str(starts[cell])
        position = cell * cell_width
        if position + len(label) <= room:
            ruler[position : position + len(label)] = list(label)
    return Text(" " * prefix + "".join(ruler).rstrip(), style="dim")


def _block_note(block_rows: int, block_columns: int, width: int) -> list[Text]:
    if block_rows == block_columns == 1:
        return []
    note = f"each cell: the worst of a {block_rows} × {block_columns} block"
    return _wrapped(note, width, "dim")


def _grid_panel(codes: Codes, width: int, max_rows: int) -> list[Text]:
    """A 2-D grid: row labels on the left, column labels above, blocks where it is too big."""
    rows, columns = codes.shape
    if rows == 0 or columns == 0:
        return [Text("(empty)")]
    block_rows = math.ceil(rows / max_rows)
    label_width = len(str((math.ceil(rows / block_rows) - 1) * block_rows))
    prefix = label_width + 3  # "12 │ "
    room = max(width - prefix, 1)
    if 2 * columns - 1 <= room:
        cell_width, block_columns = 2, 1
    else:
        cell_width, block_columns = 1, math.ceil(columns / room)
    blocks = _worst_blocks(codes, block_rows, block_columns)
    starts = [j * block_columns for j in range(blocks.shape[1])]
    lines = [
        *_block_note(block_rows, block_columns, width),
        _ruler(starts, cell_width, prefix, room),
    ]
    for i, row in enumerate(blocks):
        line = Text(f"{i * block_rows:>{label_width}} │ ", style="dim")
        line.append_text(_cells([int(code) for code in row], cell_width))
        lines.append(line)
    return lines


def _row_panel(wrt: str, codes: Codes, width: int, max_rows: int, *, scalar: bool) -> list[Text]:
    """0-D and 1-D inputs: one row of cells, wrapped, each line labelled with its first index."""
    if scalar:
        line = Text(f"{wrt}[] │ ", style="dim")
        line.append_text(_cells([int(codes[0])], 1))
        return [line]
    count = len(codes)
    if count == 0:
        return [Text("(empty)")]
    label_width = len(str(count - 1))
    prefix = label_width + 3
    room = max(width - prefix, 1)
    block = 1
    if 2 * count - 1 <= room:
        cell_width, per_line = 2, count
    else:
        cell_width, per_line = 1, room
        block = math.ceil(count / (room * max_rows))
    cells = _worst_blocks(codes.reshape(1, -1), 1, block)[0]
    note = f"each cell: the worst of {block} entries"
    lines = _wrapped(note, width, "dim") if block > 1 else []
    for first in range(0, len(cells), per_line):
        line = Text(f"{first * block:>{label_width}} │ ", style="dim")
        line.append_text(
            _cells([int(code) for code in cells[first : first + per_line]], cell_width)
        )
        lines.append(line)
    return lines


def _slices(wrt: str, codes: Codes, width: int, max_rows: int, max_slices: int) -> list[Text]:
    """N-D inputs: one labelled 2-D grid per index of the leading axes, the worst few if many."""
    leading = codes.shape[:-2]
    indices = list(itertools.product(*(range(n) for n in leading)))
    worst = [int(codes[index].max(initial=UNCHECKED)) for index in indices]
    shown = list(range(len(indices)))
    lines: list[Text] = []
    if len(indices) > max_slices:
        # The slices with the worst entries say most; shown back in index order.
        ranked = sorted(shown, key=lambda k: -worst[k])[: max(max_slices, 1)]
        shown = sorted(ranked)
        failing = sum(1 for code in worst if code >= FAILS)
        note = (
            f"showing {len(shown)} of {len(indices)} slices (those with the worst entries); "
            f"{failing} {'slice has' if failing == 1 else 'slices have'} failing entries"
        )
        lines += _wrapped(note, width, "dim")
    for k in shown:
        index = ", ".join(str(i) for i in indices[k])
        lines += _wrapped(f"{wrt}[{index}, :, :]", width, "bold")
        lines += _grid_panel(codes[indices[k]], width, max_rows)
    return lines


def _legend(width: int) -> list[Text]:
    """The glyphs' meaning, wrapped at the width."""
    lines: list[Text] = []
    line = Text()
    for item in LEGEND:
        glyph = item[0]
        code = GLYPHS.index(glyph) if glyph in GLYPHS[1:] else UNCHECKED
        piece = Text(item[0], style=STYLES[code]) + Text(item[1:])
        needed = len(piece) + (2 if len(line) else 0)
        if len(line) and len(line) + needed > width:
            lines.append(line)
            line = Text()
        if len(line):
            line.append("  ")
        line.append_text(piece)
    lines.append(line)
    return lines
