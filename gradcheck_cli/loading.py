"""Loading the matrices X and W for `--x PATH` / `--w PATH` from .csv, .npy and .npz files.

Pure: numpy and the standard library only. Every failure is a `LoadError` whose single-line
message names the file (for CSV also the line and column) and the option the file was given to.

CSV is parsed by numpy's C reader; Python only walks the file again on the error path, to say
exactly which line and cell is at fault. .npy/.npz files are read with `allow_pickle=False`:
an object array or a pickle is refused, never unpickled.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
import zipfile
import zlib
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError

SUPPORTED_EXTENSIONS = (".csv", ".npy", ".npz")

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
_PICKLE_OPCODE_PROTO = b"\x80"  # the first byte of every pickle of protocol 2 or later
_CSV_EXPECTS = "comma-separated numbers"
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats: all convert to float64
_MAX_CELL_SHOWN = 40  # longer cells are cut in messages so that a message stays one short line


class LoadError(InputError):
    """A matrix file that cannot be used: missing, unreadable, malformed, or of the wrong shape."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class LoadedMatrix:
    """A 2-D float64 matrix and where it came from (a path, `path.npz:key` or `builtin:...`)."""

    array: NDArray[np.float64]
    source: str


def load_matrix(spec: str, *, name: str) -> LoadedMatrix:
    """Load the matrix `name` ("X" or "W") from `spec`: `a.csv`, `a.npy`, `a.npz` or `a.npz:key`.

    Raises `LoadError` with a one-line message naming the file and the option (`--x`/`--w`).
    """
    option = f"--{name.lower()}"
    if not spec:
        raise LoadError(f"{option}: empty path ({option} expects a .csv, .npy or .npz file)")
    path_text, key = _split_npz_key(spec)
    suffix = Path(path_text).suffix.lower()
    if suffix == ".csv":
        return _load_csv(path_text, option)
    if suffix == ".npy":
        return _load_npy(path_text, option)
    if suffix == ".npz":
        return _load_npz(path_text, key, option)
    kind = f"extension {suffix!r}" if suffix else "no extension"
    raise LoadError(
        f"{path_text}: unsupported file type ({kind}); {option} expects a file ending in "
        f"{', '.join(SUPPORTED_EXTENSIONS[:-1])} or {SUPPORTED_EXTENSIONS[-1]} "
        f"(.npz may be followed by :KEY)"
    )


def check_shapes(X: LoadedMatrix, W: LoadedMatrix) -> None:
    """Raise `LoadError` unless X is (n, k) and W is (k, m), naming both sources and shapes."""
    for label, matrix in (("X", X), ("W", W)):
        if matrix.array.ndim != 2:
            raise LoadError(
                f"{label} {matrix.array.shape} from {matrix.source} is not a 2-D matrix"
            )
    x_columns, w_rows = X.array.shape[1], W.array.shape[0]
    if x_columns != w_rows:
        raise LoadError(
            f"X {X.array.shape} from {X.source} and W {W.array.shape} from {W.source} "
            f"do not fit: X's {x_columns} columns must equal W's {w_rows} rows"
        )


# --- opening ------------------------------------------------------------------------------------


def _split_npz_key(spec: str) -> tuple[str, str | None]:
    """`a.npz:key` -> ("a.npz", "key"); anything else -> (spec, None). Splits on the last ':'."""
    head, colon, key = spec.rpartition(":")
    if colon and head.lower().endswith(".npz"):
        return head, key
    return spec, None


def _open_binary(path_text: str, option: str) -> IO[bytes]:
    """Open a regular, non-empty file for reading, or raise `LoadError` saying what is wrong."""
    path = Path(path_text)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise LoadError(f"{path_text}: no such file (given to {option})") from None
    except IsADirectoryError:
        raise LoadError(f"{path_text}: is a directory ({option} expects a file)") from None
    except PermissionError:
        if path.is_dir():  # Windows reports opening a directory as a permission error
            raise LoadError(f"{path_text}: is a directory ({option} expects a file)") from None
        raise LoadError(
            f"{path_text}: permission denied, cannot read the file (given to {option})"
        ) from None
    except OSError as error:
        raise LoadError(
            f"{path_text}: cannot open: {error.strerror or error} (given to {option})"
        ) from None
    try:
        status = os.fstat(handle.fileno())
    except OSError as error:
        handle.close()
        raise _read_failed(path_text, option, error) from None
    if stat.S_ISDIR(status.st_mode):
        handle.close()
        raise LoadError(f"{path_text}: is a directory ({option} expects a file)")
    if stat.S_ISREG(status.st_mode) and status.st_size == 0:
        handle.close()
        raise LoadError(f"{path_text}: the file is empty ({option} expects a 2-D matrix)")
    return handle


def _read_failed(path_text: str, option: str, error: OSError) -> LoadError:
    return LoadError(f"{path_text}: cannot read: {error.strerror or error} (given to {option})")


# --- CSV ----------------------------------------------------------------------------------------


def _load_csv(path_text: str, option: str) -> LoadedMatrix:
    with _open_binary(path_text, option) as raw, _csv_text(raw) as text:
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
            raise _read_failed(path_text, option, error) from None
    if array.size == 0:
        raise LoadError(
            f"{path_text}: holds only blank lines, no numbers ({option} expects {_CSV_EXPECTS})"
        )
    position = _first_non_finite(array)
    if position is not None:
        i, j = position
        line, cell = _csv_cell(path_text, option, i, j)
        raise LoadError(
            f"{path_text}: line {line}, column {j + 1}: {_shown(cell)} makes entry [{i}, {j}] "
            f"{_non_finite_kind(array[i, j])} ({option} expects finite numbers)"
        )
    return LoadedMatrix(array=array, source=path_text)


def _csv_text(raw: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark.
    return io.TextIOWrapper(raw, encoding="utf-8-sig")


def _non_blank(text: IO[str]) -> Iterator[str]:
    """The lines that are not blank; loadtxt itself skips empty lines but not "  " lines."""
    return (line for line in text if not line.isspace())


def _csv_rows(path_text: str, option: str) -> Generator[tuple[int, list[str]], None, None]:
    """(1-based line number, cells) for each non-blank line: the rows loadtxt reads."""
    with _open_binary(path_text, option) as raw, _csv_text(raw) as text:
        try:
            for number, line in enumerate(text, start=1):
                if not line.isspace():
                    yield number, line.rstrip("\r\n").split(",")
        except UnicodeDecodeError:
            raise LoadError(
                f"{path_text}: is not UTF-8 text ({option} expects {_CSV_EXPECTS})"
            ) from None
        except OSError as error:
            raise _read_failed(path_text, option, error) from None


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


# --- .npy and .npz ------------------------------------------------------------------------------


def _load_npy(path_text: str, option: str) -> LoadedMatrix:
    with _open_binary(path_text, option) as handle:
        try:
            head = handle.read(len(_NPY_MAGIC))
            if head != _NPY_MAGIC:
                raise _not_npy(path_text, option, head)
            handle.seek(0)
            raw = np.lib.format.read_array(handle, allow_pickle=False)
        except ValueError as error:
            raise _bad_array_file(path_text, option, error, ".npy") from None
        except OSError as error:
            raise _read_failed(path_text, option, error) from None
    return LoadedMatrix(array=_as_matrix(raw, path_text, option), source=path_text)


def _not_npy(path_text: str, option: str, head: bytes) -> LoadError:
    if head.startswith(_ZIP_MAGIC):
        what = "is a zip archive (an .npz?), not a .npy file"
    elif head.startswith(_PICKLE_OPCODE_PROTO):
        what = "holds a Python pickle, not a NumPy array; refused, pickles are never loaded"
    else:
        what = "is not a .npy file (no NumPy header)"
    return LoadError(f"{path_text}: {what} ({option} expects a numeric 2-D array)")


def _bad_array_file(path_text: str, option: str, error: ValueError, kind: str) -> LoadError:
    if "allow_pickle" in str(error):  # numpy's refusal of object arrays and pickles
        return LoadError(
            f"{path_text}: holds an object array (pickled Python objects); refused, pickles "
            f"are never loaded ({option} expects a numeric 2-D array)"
        )
    detail = " ".join(str(error).split())
    return LoadError(f"{path_text}: not a valid {kind} file: {detail} (given to {option})")


def _load_npz(path_text: str, key: str | None, option: str) -> LoadedMatrix:
    with _open_binary(path_text, option) as handle:
        try:
            if not handle.read(len(_ZIP_MAGIC)).startswith(_ZIP_MAGIC):
                raise LoadError(
                    f"{path_text}: is not an .npz (zip) archive ({option} expects a numeric "
                    f"2-D array)"
                )
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as archive:
                keys = list(archive.files)
                chosen = _choose_key(path_text, key, keys, option)
                source = f"{path_text}:{chosen}"
                try:
                    raw = archive[chosen]
                except ValueError as error:
                    raise _bad_array_file(source, option, error, ".npz") from None
        except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            detail = " ".join(str(error).split())
            raise LoadError(
                f"{path_text}: not a valid .npz file: {detail} (given to {option})"
            ) from None
        except OSError as error:
            raise _read_failed(path_text, option, error) from None
    return LoadedMatrix(array=_as_matrix(raw, source, option), source=source)


def _choose_key(path_text: str, key: str | None, keys: list[str], option: str) -> str:
    listed = ", ".join(repr(k) for k in keys)
    if not keys:
        raise LoadError(f"{path_text}: the archive holds no arrays ({option} expects one)")
    if key is None:
        if len(keys) == 1:
            return keys[0]
        raise LoadError(
            f"{path_text}: holds {len(keys)} arrays ({listed}); choose one with "
            f"{option} {path_text}:KEY"
        )
    if key not in keys:
        raise LoadError(
            f"{path_text}: no array named {key!r}; the archive holds {listed} (given to {option})"
        )
    return key


def _as_matrix(raw: NDArray[Any], source: str, option: str) -> NDArray[np.float64]:
    """Check an array read from .npy/.npz and return it as a finite 2-D float64 matrix."""
    expects = f"{option} expects a numeric 2-D array"
    if raw.dtype.kind == "c":
        raise LoadError(
            f"{source}: holds complex numbers ({raw.dtype}) ({option} expects real numbers)"
        )
    if raw.dtype.kind not in _NUMERIC_KINDS:
        raise LoadError(f"{source}: holds {raw.dtype} data, not numbers ({expects})")
    if raw.ndim != 2:
        raise LoadError(f"{source}: has shape {raw.shape}, a {raw.ndim}-D array ({expects})")
    if raw.size == 0:
        raise LoadError(f"{source}: is empty, shape {raw.shape} ({expects})")
    array = np.asarray(raw, dtype=np.float64)
    position = _first_non_finite(array)
    if position is not None:
        i, j = position
        raise LoadError(
            f"{source}: entry [{i}, {j}] is {_non_finite_kind(array[i, j])} "
            f"({option} expects finite numbers)"
        )
    return array


# --- values -------------------------------------------------------------------------------------


def _first_non_finite(array: NDArray[np.float64]) -> tuple[int, int] | None:
    """[i, j] of the first NaN or ±inf in row-major order, or None when all are finite."""
    finite = np.isfinite(array)
    if finite.all():
        return None
    i, j = np.unravel_index(int(np.argmin(finite)), array.shape)  # first False
    return int(i), int(j)


def _non_finite_kind(value: np.float64) -> str:
    if np.isnan(value):
        return "NaN"
    return "inf" if value > 0 else "-inf"
