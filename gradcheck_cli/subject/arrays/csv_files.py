"""Reading a .csv file of comma-separated numbers into a 2-D float64 array.

numpy's C reader parses the file; Python walks it again only on the error path, to say exactly
which line and cell is at fault (numpy's own message names neither). A CSV is always 2-D: one
line is (1, k), for the caller to flatten where a 1-D input wants it.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Generator, Iterator
from contextlib import closing
from typing import IO

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.subject.arrays.budget import RAISE_BUDGET, memory_budget, size_text
from gradcheck_cli.subject.arrays.files import LoadError, open_regular_file, read_failed
from gradcheck_cli.subject.arrays.values import first_true, non_finite_kind

_CSV_EXPECTS = "comma-separated numbers"
_MAX_CELL_SHOWN = 40  # longer cells are cut in messages so that a message stays one short line


def load_csv(path_text: str, option: str) -> NDArray[np.float64]:
    """The numbers of the CSV file at `path_text`, finite, as a 2-D float64 array."""
    with open_regular_file(path_text, option) as raw:
        # The parsed array is at most a few times the file's size, usually smaller (a float64
        # is 8 bytes, a number written out about 20): refusing a file above the budget up front
        # bounds it without parsing anything.
        size = os.fstat(raw.fileno()).st_size
        budget = memory_budget()
        if size > budget:
            raise LoadError(
                f"{path_text}: the CSV file is {size_text(size)}, more than the memory budget "
                f"of {size_text(budget)}; {RAISE_BUDGET} (given to {option})"
            )
        with _csv_text(raw) as text:
            try:
                with warnings.catch_warnings():
                    # A file of blank lines only: loadtxt warns and returns an empty array,
                    # which the size check below reports.
                    warnings.filterwarnings(
                        "ignore", message="loadtxt: input contained no data", category=UserWarning
                    )
                    array = np.loadtxt(
                        _non_blank(text),
                        delimiter=",",
                        dtype=np.float64,
                        comments=None,
                        ndmin=2,
                    )
            except UnicodeDecodeError:  # a subclass of ValueError: caught first
                raise LoadError(
                    f"{path_text}: is not UTF-8 text ({option} expects {_CSV_EXPECTS})"
                ) from None
            except ValueError as error:
                raise _locate_csv_error(path_text, option, str(error)) from None
            except OSError as error:
                raise read_failed(path_text, option, error) from None
            except MemoryError:
                raise LoadError(
                    f"{path_text}: not enough memory to parse this CSV file of {size_text(size)} "
                    f"(given to {option})"
                ) from None
    if array.size == 0:
        raise LoadError(
            f"{path_text}: holds only blank lines, no numbers ({option} expects {_CSV_EXPECTS})"
        )
    position = first_true(~np.isfinite(array))
    if position is not None:
        i, j = position
        line, cell = _csv_cell(path_text, option, i, j)
        raise LoadError(
            f"{path_text}: line {line}, column {j + 1}: {_shown(cell)} makes entry [{i}, {j}] "
            f"{non_finite_kind(array[i, j])} ({option} expects finite numbers)"
        )
    return array


def _csv_text(raw: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark.
    return io.TextIOWrapper(raw, encoding="utf-8-sig")


def _non_blank(text: IO[str]) -> Iterator[str]:
    """The lines that are not blank; loadtxt itself skips empty lines but not "  " lines."""
    return (line for line in text if not line.isspace())


def _csv_rows(path_text: str, option: str) -> Generator[tuple[int, list[str]], None, None]:
    """(1-based line number, cells) for each non-blank line: the rows loadtxt reads."""
    with open_regular_file(path_text, option) as raw, _csv_text(raw) as text:
        try:
            for number, line in enumerate(text, start=1):
                if not line.isspace():
                    yield number, line.rstrip("\r\n").split(",")
        except UnicodeDecodeError:
            raise LoadError(
                f"{path_text}: is not UTF-8 text ({option} expects {_CSV_EXPECTS})"
            ) from None
        except OSError as error:
            raise read_failed(path_text, option, error) from None


def _locate_csv_error(path_text: str, option: str, numpy_message: str) -> LoadError:
    """Walk the file that numpy refused and describe the first bad line or cell."""
    expected: int | None = None
    first_line = 0
    with closing(_csv_rows(path_text, option)) as rows:
        for number, cells in rows:
            if expected is None:
                expected, first_line = len(cells), number
            elif len(cells) != expected:
                return LoadError(
                    f"{path_text}: line {number} has {len(cells)} columns, expected {expected} "
                    f"like line {first_line} ({option} expects the same number of columns on "
                    f"every line)"
                )
            for column, cell in enumerate(cells, start=1):
                if _is_number(cell):
                    continue
                problem = f"{_shown(cell)} is not a number" if cell.strip() else "empty cell"
                hint = f"{option} expects {_CSV_EXPECTS}"
                if number == first_line and not any(_is_number(c) for c in cells):
                    hint += "; header lines are not supported"
                return LoadError(f"{path_text}: line {number}, column {column}: {problem} ({hint})")
    # The Python walk found nothing numpy disagrees with: fall back on numpy's own words.
    detail = " ".join(numpy_message.split())
    return LoadError(f"{path_text}: {detail} ({option} expects {_CSV_EXPECTS})")


def _is_number(cell: str) -> bool:
    """Whether numpy's CSV reader takes `cell` as a float (Python's float() also takes '1_0')."""
    text = cell.strip()
    if not text.isascii() or "_" in text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_cell(path_text: str, option: str, row: int, column: int) -> tuple[int, str]:
    """The line number and text of entry [row, column] of a CSV that loaded."""
    with closing(_csv_rows(path_text, option)) as rows:
        for index, (number, cells) in enumerate(rows):
            if index == row:
                return number, cells[column]
    raise LoadError(f"{path_text}: changed while it was being read")  # pragma: no cover


def _shown(cell: str) -> str:
    text = cell.strip()
    if len(text) > _MAX_CELL_SHOWN:
        text = text[: _MAX_CELL_SHOWN - 3] + "..."
    return repr(text)
