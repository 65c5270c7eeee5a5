"""The terminal error map: never wider than asked, glyphs that survive NO_COLOR,
a wrong column visible where it is, blocks that keep the worst entry, N-D inputs as slices."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from rich.console import Console

from gradcheck_cli.render.errormap import FAIL_GLYPH, GLYPHS, error_map
from gradcheck_cli.render.plot import MOST_PANELS, error_map_png

FloatArray = NDArray[np.float64]
PASSING_GLYPHS = set(GLYPHS[1:5])


def rendered(wrt: str, ratio: FloatArray, width: int, **options: Any) -> list[str]:
    """The map as a colourless fixed-width terminal shows it, line by line."""
    output = io.StringIO()
    console = Console(width=width, file=output, color_system=None)
    console.print(error_map(wrt, ratio, width=width, **options))
    return output.getvalue().splitlines()


def passing_ratios(shape: tuple[int, ...], seed: int = 0) -> FloatArray:
    """Ratios of a correct gradient: 1e-3 to 0.9 of the tolerance."""
    exponents = np.random.default_rng(seed).uniform(-3, np.log10(0.9), shape)
    return np.asarray(10.0**exponents, dtype=np.float64)


def grid_rows(lines: list[str]) -> list[str]:
    """The cells of each grid row (after its "12 │ " label)."""
    return [line.split("│ ", 1)[1] for line in lines if "│" in line]


def column_2_wrong() -> FloatArray:
    ratio = passing_ratios((12, 9))
    ratio[:, 2] = 40.0
    return ratio


SHAPES = {
    "scale": (),
    "b": (7,),
    "long_b": (5000,),
    "W": (12, 9),
    "tall_W": (300, 400),
    "x": (3, 4, 6, 7),
    "wide_x": (2, 2, 3, 900),
}


@pytest.mark.parametrize("width", [60, 80, 200])
@pytest.mark.parametrize(("wrt", "shape"), SHAPES.items())
def test_no_line_is_wider_than_the_width(wrt: str, shape: tuple[int, ...], width: int) -> None:
    """At 60, 80 and 200 columns every line of every shape's map fits."""
    ratio = passing_ratios(shape)
    ratio[(0,) * len(shape)] = 1e6
    lines = rendered(wrt, ratio, width)
    assert max(len(line) for line in lines) <= width
    assert FAIL_GLYPH in "".join(lines)


def test_a_wrong_column_shows_in_its_own_place() -> None:
    """12x9 W with column 2 wrong: every row has exactly one fail glyph, in the third cell."""
    rows = grid_rows(rendered("W", column_2_wrong(), 80))
    assert len(rows) == 12
    for row in rows:
        cells = row.split(" ")
        assert len(cells) == 9
        assert cells[2] == FAIL_GLYPH
        assert set(cells[:2] + cells[3:]) <= PASSING_GLYPHS


def test_a_grid_has_row_and_column_labels() -> None:
    """Row labels 0..11 on the left, column labels 0..8 above their cells."""
    lines = rendered("W", column_2_wrong(), 80)
    labelled = [line.split("│", 1)[0].strip() for line in lines if "│" in line]
    assert labelled == [str(i) for i in range(12)]
    ruler = lines[lines.index(next(line for line in lines if "│" in line)) - 1]
    first_row = next(line for line in lines if "│" in line)
    assert ruler.index("2") == first_row.index(FAIL_GLYPH)


def test_blocks_keep_the_worst_entry_and_say_their_size() -> None:
    """A 300x400 input at 80 columns: blocks, labelled, and one failing entry still shows."""
    ratio = passing_ratios((300, 400))
    ratio[123, 321] = 7.0
    lines = rendered("W", ratio, 80)
    text = "\n".join(lines)
    assert "each cell: the worst of a 15 × 6 block" in text
    rows = grid_rows(lines)
    assert len(rows) == 20
    failing = [(i, row.index(FAIL_GLYPH)) for i, row in enumerate(rows) if FAIL_GLYPH in row]
    assert failing == [(123 // 15, 321 // 6)]


def test_a_long_vector_wraps_and_aggregates_within_max_rows() -> None:
    """5000 entries at 60 columns: at most max_rows lines of cells, blocks of whole entries."""
    ratio = passing_ratios((5000,))
    ratio[4321] = 3.0
    lines = rendered("b", ratio, 60, max_rows=10)
    rows = grid_rows(lines)
    assert len(rows) <= 10
    assert "each cell: the worst of 10 entries" in lines
    assert "".join(rows).index(FAIL_GLYPH) == 432


def test_a_short_vector_is_one_row() -> None:
    """A 7-entry bias is one labelled row of seven cells."""
    ratio = passing_ratios((7,))
    ratio[3] = 2.0
    (row,) = grid_rows(rendered("b", ratio, 80))
    cells = row.split(" ")
    assert len(cells) == 7
    assert cells[3] == FAIL_GLYPH
    assert set(cells[:3] + cells[4:]) <= PASSING_GLYPHS


def test_a_scalar_is_one_cell_named_with_empty_brackets() -> None:
    """A 0-D input: one line "scale[] │ X" for a non-finite failure."""
    lines = rendered("scale", np.array(np.inf), 60)
    assert "scale[] │ X" in lines


def test_unchecked_entries_are_blank_and_non_finite_ones_are_x() -> None:
    """NaN (not checked) leaves a blank cell, inf (nothing finite to compare) shows X."""
    ratio = np.full((2, 3), 0.01)
    ratio[0, 1] = np.nan
    ratio[1, 2] = np.inf
    rows = grid_rows(rendered("W", ratio, 60))
    assert rows == ["·   ·", "· · X"]


def test_the_legend_explains_every_glyph_without_colour() -> None:
    """The legend names the glyphs in plain text, so a log file still reads."""
    text = "\n".join(rendered("W", column_2_wrong(), 200))
    for item in ("· ≤0.1", "▓ ≤1", f"{FAIL_GLYPH} >1 fails", "X non-finite", "not checked"):
        assert item in text
    assert "12 of 108 checked entries fail" in text


def test_n_d_inputs_are_labelled_slices_over_the_last_two_axes() -> None:
    """A 2x3x5x5 input shows six slices x[i, j, :, :], rows 3-4 failing in each."""
    ratio = passing_ratios((2, 3, 5, 5))
    ratio[:, :, 3:5, :] = 20.0
    lines = rendered("x", ratio, 80)
    headings = [line for line in lines if line.startswith("x[")]
    assert headings == [f"x[{i}, {j}, :, :]" for i in range(2) for j in range(3)]
    rows = grid_rows(lines)
    assert len(rows) == 30
    assert [FAIL_GLYPH in row for row in rows] == [False, False, False, True, True] * 6


def test_too_many_slices_are_capped_with_a_note_keeping_the_failing_one() -> None:
    """20 slices, one failing: 6 shown, the failing one among them, and a note says so."""
    ratio = passing_ratios((5, 4, 3, 3))
    ratio[2, 1, 0, 0] = 9.0
    lines = rendered("x", ratio, 80, max_slices=6)
    headings = [line for line in lines if line.startswith("x[")]
    assert len(headings) == 6
    assert "x[2, 1, :, :]" in headings
    assert any(line.startswith("showing 6 of 20 slices") for line in lines)
    assert "1 slice has failing entries" in " ".join(lines)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_error_map_plot_is_a_png() -> None:
    """error_map_png draws a 0-D, a 1-D, a 2-D and a 4-D input (NaN and inf included) into one
    PNG."""
    shapes = {"scale": (), "b": (7,), "W": (12, 9), "kernel": (4, 3, 3, 3)}
    ratios = {}
    for name, shape in shapes.items():
        ratio = passing_ratios(shape)
        ratio[(0,) * len(shape)] = np.inf
        if ratio.size > 1:
            ratio.flat[-1] = np.nan
            ratio.flat[1] = 50.0
        ratios[name] = ratio
    assert error_map_png(ratios, title="error map").startswith(PNG_MAGIC)


def test_a_thousand_inputs_draw_the_worst_few(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 1000 inputs the plot draws MOST_PANELS of them, those with the most failures first
    (a panel per input took 81 s and 8.5 MB for a 2.5 s check)."""
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    drawn: list[int] = []
    titles: list[str] = []
    subplots = plt.subplots
    set_title = Axes.set_title

    def recording(self: Axes, label: str, *args: object, **kwargs: object) -> object:
        titles.append(label)
        return set_title(self, label, *args, **kwargs)  # type: ignore[arg-type]

    def counting(count: int, *args: object, **kwargs: object) -> object:
        drawn.append(count)
        return subplots(count, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(plt, "subplots", counting)
    monkeypatch.setattr(Axes, "set_title", recording)
    ratios = {f"b{k}": passing_ratios((3,)) for k in range(1000)}
    ratios["b417"][1] = 50.0  # the one failing input must be among those drawn
    assert error_map_png(ratios, title="many").startswith(PNG_MAGIC)
    assert drawn == [MOST_PANELS]
    assert titles[0] == "b417 (3): 1 of 3 checked entries fail"


def test_a_failed_plot_propagates_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """When rendering fails the error propagates (nothing is written: the caller writes the
    bytes with the run's other outputs, or none of them)."""
    from matplotlib.figure import Figure

    def broken_savefig(self: Figure, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        error_map_png({"W": passing_ratios((3, 2))}, title="t")
