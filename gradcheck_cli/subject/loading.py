"""Loading the user's arrays from .csv, .npy and .npz files.

- `load_array(spec, option=...)`: one array of any shape (0-D to N-D), for `--input NAME=PATH`
  and the `--x`/`--w` shorthands; `load_archive(path)`: every array of an .npz, for `--inputs`;
  `cast_to_dtype(...)`: the float inputs in the dtype of the check.

Pure: numpy and the standard library only. Every failure is a `LoadError` whose single-line
message names the file (for CSV also the line and column, for arrays the entry) and the option
the file was given to; file names, keys and cells in it are passed through `printable`, so a
hostile name cannot send escape sequences to the terminal.

CSV is parsed by numpy's C reader; Python only walks the file again on the error path, to say
exactly which line and cell is at fault. .npy/.npz files are read with `allow_pickle=False`:
an object array or a pickle is refused, never unpickled.

A small hostile file must not make us allocate gigabytes: a .npy header's declared size is held
against the bytes actually present, an .npz member's declared uncompressed size against the
memory budget before anything is inflated, and no single array may need more than the budget
(`memory_budget()`: an eighth of the memory available, or `GRADCHECK_MEMORY_BUDGET`).
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
import stat
import warnings
import zipfile
import zlib
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError
from gradcheck_cli.sanitize import printable

SUPPORTED_EXTENSIONS = (".csv", ".npy", ".npz")

MEMORY_BUDGET_VARIABLE = "GRADCHECK_MEMORY_BUDGET"
"""Environment variable that sets the memory budget: bytes, or a size such as 512M or 2G."""
MEMORY_BUDGET_SHARE = 8
"""Without the variable, the budget is the available memory divided by this: checking an input
keeps about six arrays of its size at once (a perturbed copy, the two gradients, the steps, the
error estimates), and there are usually two inputs or more."""
MEMORY_BUDGET_FLOOR = 64 * 2**20
"""The default budget is never below this (64 MiB), however little memory seems available."""
MEMORY_BUDGET_FALLBACK = 4 * 2**30
"""The default budget (4 GiB) where the available memory cannot be read."""

_RAISE_BUDGET = f"set {MEMORY_BUDGET_VARIABLE} to allow more"  # said wherever the budget refuses
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
_PICKLE_OPCODE_PROTO = b"\x80"  # the first byte of every pickle of protocol 2 or later
_CSV_EXPECTS = "comma-separated numbers"
_MAX_CELL_SHOWN = 40  # longer cells are cut in messages so that a message stays one short line
_MAX_KEYS_SHOWN = 10  # an archive of thousands of keys must not make a thousand-key message
_INT64_MAX = int(np.iinfo(np.int64).max)
_CASTABLE_DTYPES = ("float64", "float32")
_SIZE_SUFFIXES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE_TEXT = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_FILE_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
}
# Errors of a damaged or unsupported zip archive: RuntimeError is zipfile's "password required"
# for an encrypted member, NotImplementedError its "compression method not supported".
_BAD_ZIP_ERRORS = (
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    RuntimeError,
    NotImplementedError,
)


class LoadError(InputError):
    """A file that cannot be used: missing, unreadable, malformed, too big or of the wrong shape.

    The message goes through `printable`: whatever file name, key or cell it quotes, it reaches
    the terminal as visible text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class LoadedArray:
    """An array of any shape and where it came from (a path, `path.npz:key` or `builtin:...`).

    The dtype is float64 for numbers (float16/32 widened), int64 for integers and bool for
    booleans: integer and boolean arrays are labels or masks, which the caller keeps constant.
    """

    array: NDArray[Any]
    source: str


class _Want(NamedTuple):
    """What the caller asked for: the option to name in messages."""

    option: str

    @property
    def expects(self) -> str:
        return f"{self.option} expects a numeric array"


class _NpyHeader(NamedTuple):
    """What a .npy header declares: the shape and dtype, and where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    data_offset: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def described(self) -> str:
        return f"shape {self.shape} of {self.dtype}"


class _ByteStream(Protocol):
    """A binary file or an .npz member: what reading a .npy header needs."""

    def read(self, size: int = ..., /) -> bytes: ...

    def tell(self) -> int: ...


# --- public API ---------------------------------------------------------------------------------


def load_array(spec: str, *, option: str) -> LoadedArray:
    """Load one array from `spec`: `a.csv`, `a.npy`, `a.npz` or `a.npz:key`.

    .npy/.npz arrays keep their shape, 0-D included; a CSV is always a 2-D float64 array (the
    caller may flatten a one-row or one-column CSV). Floats become float64, integers int64,
    booleans stay bool. Raises `LoadError` naming the file and `option` (`--input b`, `--x`).
    """
    array, source = _load(spec, _Want(option))
    return LoadedArray(array=array, source=source)


def load_archive(path: str, *, option: str = "--inputs") -> dict[str, LoadedArray]:
    """Every array of the .npz at `path`, by key in the archive's order; sources `path:key`.

    Each array is checked and converted as by `load_array`; every header is read, and the
    arrays' total size held against the memory budget, before any array is inflated.
    """
    want = _Want(option)
    if not path:
        raise LoadError(f"{option}: empty path ({option} expects an .npz file)")
    path_text, stray_key = _split_npz_key(path)
    if stray_key is not None:
        raise LoadError(
            f"{path}: {option} takes a whole .npz archive, every array in it; to give one array, "
            f"use --input NAME={path}"
        )
    suffix = Path(path_text).suffix.lower()
    if suffix != ".npz":
        raise LoadError(
            f"{path_text}: unsupported file type ({_extension(suffix)}); {option} expects a "
            f"file ending in .npz"
        )
    budget = memory_budget()
    with _open_npz(path_text, want) as archive:
        try:
            members = _npz_members(archive)
            if not members:
                raise LoadError(
                    f"{path_text}: the archive holds no arrays ({option} expects at least one)"
                )
            headers = {
                key: _member_header(archive, info, f"{path_text}:{key}", want, budget)
                for key, info in members.items()
            }
            total = sum(_bytes_needed(header) for header in headers.values())
            if total > budget:
                raise LoadError(
                    f"{path_text}: its {len(headers)} arrays together need {_size(total)} to "
                    f"load, more than the memory budget of {_size(budget)}; "
                    f"{_RAISE_BUDGET} (given to {option})"
                )
            loaded: dict[str, LoadedArray] = {}
            for key, header in headers.items():
                source = f"{path_text}:{key}"
                raw = _read_member(archive, members[key], header, source, want)
                loaded[key] = LoadedArray(_checked(raw, source, want, header), source)
            return loaded
        except _BAD_ZIP_ERRORS as error:
            raise _bad_npz(path_text, want, error) from None
        except OSError as error:
            raise _read_failed(path_text, option, error) from None


def cast_to_dtype(loaded: LoadedArray, dtype: str, *, option: str) -> NDArray[Any]:
    """`loaded.array` in `dtype` ("float64" or "float32") if it is a float array.

    Integer and boolean arrays are returned unchanged (labels and masks are not cast). A value
    that is finite in the file but too large for `dtype` (1e39 in float32) is a `LoadError`
    naming the source, the entry and the dtype, instead of silently becoming inf.
    """
    if dtype not in _CASTABLE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_CASTABLE_DTYPES)}; got {dtype!r}")
    array = loaded.array
    if array.dtype.kind in "biu":
        return array
    with np.errstate(over="ignore"):  # overflow is found and reported below, by entry
        cast = array.astype(np.dtype(dtype), copy=False)  # no second copy of a big input
    _refuse_overflow(array, cast, loaded.source, f"given to {option} with --dtype {dtype}")
    return cast


def file_of_spec(spec: str) -> Path:
    """The file a spec reads: `a.npz:key` -> a.npz, anything else itself (for --output checks)."""
    return Path(_split_npz_key(spec)[0])


def memory_budget() -> int:
    """The most memory, in bytes, that loading one array may take.

    `GRADCHECK_MEMORY_BUDGET` if set (bytes, or a number with K, M, G or T, binary multiples:
    `512M`, `2G`, `1.5GiB`); else the memory available now (MemAvailable, lowered to a cgroup's
    limit) divided by MEMORY_BUDGET_SHARE, at least MEMORY_BUDGET_FLOOR; MEMORY_BUDGET_FALLBACK
    where neither can be read. Read at every load: the available memory changes.
    """
    text = os.environ.get(MEMORY_BUDGET_VARIABLE, "")
    if not text.strip():
        available = _available_memory()
        if available is None:
            return MEMORY_BUDGET_FALLBACK
        return max(available // MEMORY_BUDGET_SHARE, MEMORY_BUDGET_FLOOR)
    match = _SIZE_TEXT.fullmatch(text)
    budget = 0
    if match is not None:
        number, suffix = match.groups()
        with suppress(OverflowError):  # more digits than a float holds: refused below
            budget = int(float(number) * _SIZE_SUFFIXES[suffix.lower()])
    if budget <= 0:
        raise LoadError(
            f"{MEMORY_BUDGET_VARIABLE}={text!r}: expected a memory size in bytes, or with K, M, "
            f"G or T such as 512M or 2G"
        )
    return budget


# --- dispatch -----------------------------------------------------------------------------------


def _load(spec: str, want: _Want) -> tuple[NDArray[Any], str]:
    """The checked array `spec` names, and its source."""
    option = want.option
    if not spec:
        raise LoadError(f"{option}: empty path ({option} expects a .csv, .npy or .npz file)")
    path_text, key = _split_npz_key(spec)
    suffix = Path(path_text).suffix.lower()
    if suffix == ".csv":
        return _load_csv(path_text, want), path_text
    if suffix == ".npy":
        return _load_npy(path_text, want), path_text
    if suffix == ".npz":
        return _load_npz(path_text, key, want)
    raise LoadError(
        f"{path_text}: unsupported file type ({_extension(suffix)}); {option} expects a file "
        f"ending in {', '.join(SUPPORTED_EXTENSIONS[:-1])} or {SUPPORTED_EXTENSIONS[-1]} "
        f"(.npz may be followed by :KEY)"
    )


def _extension(suffix: str) -> str:
    return f"extension {suffix!r}" if suffix else "no extension"


def _split_npz_key(spec: str) -> tuple[str, str | None]:
    """`a.npz:key` -> ("a.npz", "key"); anything else -> (spec, None). Splits on the last ':'."""
    head, colon, key = spec.rpartition(":")
    if colon and head.lower().endswith(".npz"):
        return head, key
    return spec, None


# --- opening ------------------------------------------------------------------------------------


def _open_binary(path_text: str, want: _Want) -> IO[bytes]:
    """Open a regular, non-empty file for reading, or raise `LoadError` saying what is wrong."""
    option = want.option
    path = Path(path_text)
    # stat first: a FIFO would block open() until a writer comes, and a device (/dev/zero
    # behind a link named zero.csv) would be read without end.
    try:
        status = os.stat(path_text)
    except FileNotFoundError:
        if os.path.islink(path_text):
            raise LoadError(
                f"{path_text}: is a broken symlink: its target {os.readlink(path_text)} does "
                f"not exist (given to {option})"
            ) from None
        raise LoadError(f"{path_text}: no such file (given to {option})") from None
    except OSError as error:
        raise _open_failed(path_text, option, error) from None
    if stat.S_ISDIR(status.st_mode):
        raise LoadError(f"{path_text}: is a directory ({option} expects a file)")
    if not stat.S_ISREG(status.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(status.st_mode), "a special file")
        raise LoadError(f"{path_text}: is {kind}, not a regular file ({option} expects a file)")
    if status.st_size == 0:
        raise LoadError(f"{path_text}: the file is empty ({want.expects})")
    try:
        return path.open("rb")
    except FileNotFoundError:  # removed between the stat and the open
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
        raise _open_failed(path_text, option, error) from None


def _open_failed(path_text: str, option: str, error: OSError) -> LoadError:
    if error.errno == errno.ELOOP:
        return LoadError(
            f"{path_text}: is a symlink loop, it never reaches a file (given to {option})"
        )
    if isinstance(error, PermissionError):
        return LoadError(
            f"{path_text}: permission denied, cannot read the file (given to {option})"
        )
    return LoadError(f"{path_text}: cannot open: {error.strerror or error} (given to {option})")


def _read_failed(path_text: str, option: str, error: OSError) -> LoadError:
    return LoadError(f"{path_text}: cannot read: {error.strerror or error} (given to {option})")


# --- CSV ----------------------------------------------------------------------------------------


def _load_csv(path_text: str, want: _Want) -> NDArray[np.float64]:
    option = want.option
    with _open_binary(path_text, want) as raw:
        # The parsed array is at most a few times the file's size, usually smaller (a float64
        # is 8 bytes, a number written out about 20): refusing a file above the budget up front
        # bounds it without parsing anything.
        size = os.fstat(raw.fileno()).st_size
        budget = memory_budget()
        if size > budget:
            raise LoadError(
                f"{path_text}: the CSV file is {_size(size)}, more than the memory budget of "
                f"{_size(budget)}; {_RAISE_BUDGET} (given to {option})"
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
                raise _locate_csv_error(path_text, want, str(error)) from None
            except OSError as error:
                raise _read_failed(path_text, option, error) from None
            except MemoryError:
                raise LoadError(
                    f"{path_text}: not enough memory to parse this CSV file of {_size(size)} "
                    f"(given to {option})"
                ) from None
    if array.size == 0:
        raise LoadError(
            f"{path_text}: holds only blank lines, no numbers ({option} expects {_CSV_EXPECTS})"
        )
    position = _first_true(~np.isfinite(array))
    if position is not None:
        i, j = position
        line, cell = _csv_cell(path_text, want, i, j)
        raise LoadError(
            f"{path_text}: line {line}, column {j + 1}: {_shown(cell)} makes entry [{i}, {j}] "
            f"{_non_finite_kind(array[i, j])} ({option} expects finite numbers)"
        )
    return array


def _csv_text(raw: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark.
    return io.TextIOWrapper(raw, encoding="utf-8-sig")


def _non_blank(text: IO[str]) -> Iterator[str]:
    """The lines that are not blank; loadtxt itself skips empty lines but not "  " lines."""
    return (line for line in text if not line.isspace())


def _csv_rows(path_text: str, want: _Want) -> Generator[tuple[int, list[str]], None, None]:
    """(1-based line number, cells) for each non-blank line: the rows loadtxt reads."""
    with _open_binary(path_text, want) as raw, _csv_text(raw) as text:
        try:
            for number, line in enumerate(text, start=1):
                if not line.isspace():
                    yield number, line.rstrip("\r\n").split(",")
        except UnicodeDecodeError:
            raise LoadError(
                f"{path_text}: is not UTF-8 text ({want.option} expects {_CSV_EXPECTS})"
            ) from None
        except OSError as error:
            raise _read_failed(path_text, want.option, error) from None


def _locate_csv_error(path_text: str, want: _Want, numpy_message: str) -> LoadError:
    """Walk the file that numpy refused and describe the first bad line or cell."""
    option = want.option
    expected: int | None = None
    first_line = 0
    with closing(_csv_rows(path_text, want)) as rows:
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


def _csv_cell(path_text: str, want: _Want, row: int, column: int) -> tuple[int, str]:
    """The line number and text of entry [row, column] of a CSV that loaded."""
    with closing(_csv_rows(path_text, want)) as rows:
        for index, (number, cells) in enumerate(rows):
            if index == row:
                return number, cells[column]
    raise LoadError(f"{path_text}: changed while it was being read")  # pragma: no cover


def _shown(cell: str) -> str:
    text = cell.strip()
    if len(text) > _MAX_CELL_SHOWN:
        text = text[: _MAX_CELL_SHOWN - 3] + "..."
    return repr(text)


# --- .npy ---------------------------------------------------------------------------------------


def _load_npy(path_text: str, want: _Want) -> NDArray[Any]:
    with _open_binary(path_text, want) as handle:
        try:
            head = handle.read(len(_NPY_MAGIC))
            if head != _NPY_MAGIC:
                raise _not_npy(path_text, want, head)
            handle.seek(0)
            header = _read_npy_header(handle)
            present = os.fstat(handle.fileno()).st_size - header.data_offset
            _check_header(header, present, path_text, "the file", want, memory_budget())
            handle.seek(0)
            raw = _read_array(handle, header, path_text, want)
        except ValueError as error:
            raise _bad_array_file(path_text, want, error, "a valid .npy file") from None
        except OSError as error:
            raise _read_failed(path_text, want.option, error) from None
    return _checked(raw, path_text, want, header)


def _not_npy(source: str, want: _Want, head: bytes) -> LoadError:
    if head.startswith(_ZIP_MAGIC):
        what = "is a zip archive (an .npz?), not a .npy file"
    elif head.startswith(_PICKLE_OPCODE_PROTO):
        what = "holds a Python pickle, not a NumPy array; refused, pickles are never loaded"
    else:
        what = "is not a .npy file (no NumPy header)"
    return LoadError(f"{source}: {what} ({want.expects})")


def _read_npy_header(handle: _ByteStream) -> _NpyHeader:
    """The header of the .npy data at the handle's position (ValueError if it is malformed)."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version in ((2, 0), (3, 0)):
        # Version 3.0 differs from 2.0 only in the header's text encoding (UTF-8, for field
        # names beyond Latin-1); Latin-1 decodes any bytes, and the shape and item size do not
        # depend on field names. read_array below reads the header again, properly.
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    if any(side < 0 for side in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return _NpyHeader(shape=tuple(shape), dtype=dtype, data_offset=handle.tell())


def _check_header(
    header: _NpyHeader, present: int, source: str, container: str, want: _Want, budget: int
) -> None:
    """Refuse, before reading any data, what the header alone shows to be unusable."""
    _check_dtype(header.dtype, source, want)
    declared = header.data_bytes
    if declared > present:
        kind = "a valid .npy file" if container == "the file" else "a valid .npy array"
        raise LoadError(
            f"{source}: not {kind}: its header declares {header.described}, "
            f"{_exact_size(declared)} of data, but {container} holds {_exact_size(present)} "
            f"(given to {want.option})"
        )
    needed = _bytes_needed(header)
    if needed > budget:
        raise LoadError(
            f"{source}: needs {_size(needed)} to load ({header.described}), more than the "
            f"memory budget of {_size(budget)}; {_RAISE_BUDGET} (given to {want.option})"
        )


def _bytes_needed(header: _NpyHeader) -> int:
    """Peak memory of loading: the array as stored, plus its converted copy if it needs one."""
    stored = header.data_bytes
    result = _result_dtype(header.dtype)
    if header.dtype == result:
        return stored
    return stored + math.prod(header.shape) * result.itemsize


def _read_array(handle: _ByteStream, header: _NpyHeader, source: str, want: _Want) -> NDArray[Any]:
    try:
        return np.lib.format.read_array(handle, allow_pickle=False)
    except MemoryError:
        raise _out_of_memory(source, header, want) from None


def _out_of_memory(source: str, header: _NpyHeader, want: _Want) -> LoadError:
    return LoadError(
        f"{source}: not enough memory to load it: needs {_size(_bytes_needed(header))} "
        f"({header.described}) (given to {want.option})"
    )


def _bad_array_file(source: str, want: _Want, error: ValueError, kind: str) -> LoadError:
    if "allow_pickle" in str(error):  # numpy's refusal of object arrays and pickles
        return _object_array(source, want)
    detail = " ".join(str(error).split())
    return LoadError(f"{source}: not {kind}: {detail} (given to {want.option})")


def _object_array(source: str, want: _Want) -> LoadError:
    return LoadError(
        f"{source}: holds an object array (pickled Python objects); refused, pickles are never "
        f"loaded ({want.expects})"
    )


# --- .npz ---------------------------------------------------------------------------------------


def _load_npz(path_text: str, key: str | None, want: _Want) -> tuple[NDArray[Any], str]:
    budget = memory_budget()
    with _open_npz(path_text, want) as archive:
        try:
            members = _npz_members(archive)
            chosen = _choose_key(path_text, key, list(members), want.option)
            source = f"{path_text}:{chosen}"
            header = _member_header(archive, members[chosen], source, want, budget)
            raw = _read_member(archive, members[chosen], header, source, want)
        except _BAD_ZIP_ERRORS as error:
            raise _bad_npz(path_text, want, error) from None
        except OSError as error:
            raise _read_failed(path_text, want.option, error) from None
    return _checked(raw, source, want, header), source


@contextmanager
def _open_npz(path_text: str, want: _Want) -> Iterator[zipfile.ZipFile]:
    """The .npz at `path_text` as an open zip archive; errors in opening it are `LoadError`s."""
    with _open_binary(path_text, want) as handle:
        try:
            if not handle.read(len(_ZIP_MAGIC)).startswith(_ZIP_MAGIC):
                raise LoadError(f"{path_text}: is not an .npz (zip) archive ({want.expects})")
            handle.seek(0)
            archive = zipfile.ZipFile(handle)
        except _BAD_ZIP_ERRORS as error:
            raise _bad_npz(path_text, want, error) from None
        except OSError as error:
            raise _read_failed(path_text, want.option, error) from None
        with archive:
            yield archive


def _npz_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by key, in the archive's order: `a.npy` is key `a`, as in np.load."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = info.filename
        members.setdefault(name[:-4] if name.endswith(".npy") else name, info)
    return members


def _choose_key(path_text: str, key: str | None, keys: list[str], option: str) -> str:
    listed = ", ".join(repr(k) for k in keys[:_MAX_KEYS_SHOWN])
    if len(keys) > _MAX_KEYS_SHOWN:
        listed += f" and {len(keys) - _MAX_KEYS_SHOWN} more"
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


def _member_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, want: _Want, budget: int
) -> _NpyHeader:
    """The .npy header of one member, checked against its size and the budget before any of
    its data is inflated (a 3 MB archive may inflate to 3 GiB)."""
    if info.file_size > budget:
        raise LoadError(
            f"{source}: inflates to {_size(info.file_size)}, more than the memory budget of "
            f"{_size(budget)}; {_RAISE_BUDGET} (given to {want.option})"
        )
    with archive.open(info) as member:
        head = member.read(len(_NPY_MAGIC))
        if head != _NPY_MAGIC:
            raise _not_npy(source, want, head)
        member.seek(0)
        try:
            header = _read_npy_header(member)
        except ValueError as error:
            raise _bad_array_file(source, want, error, "a valid .npy array") from None
    _check_header(header, info.file_size - header.data_offset, source, "the member", want, budget)
    return header


def _read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    header: _NpyHeader,
    source: str,
    want: _Want,
) -> NDArray[Any]:
    with archive.open(info) as member:
        try:
            return _read_array(member, header, source, want)
        except ValueError as error:
            raise _bad_array_file(source, want, error, "a valid .npy array") from None


def _bad_npz(path_text: str, want: _Want, error: BaseException) -> LoadError:
    detail = " ".join(str(error).split())
    return LoadError(f"{path_text}: not a valid .npz file: {detail} (given to {want.option})")


# --- values -------------------------------------------------------------------------------------


def _check_dtype(dtype: np.dtype[Any], source: str, want: _Want) -> None:
    if dtype.hasobject:
        raise _object_array(source, want)
    if dtype.kind == "c":
        raise LoadError(
            f"{source}: holds complex numbers ({dtype}) ({want.option} expects real numbers)"
        )
    if dtype.kind not in "biuf":  # bool, signed and unsigned integers, floats
        raise LoadError(f"{source}: holds {dtype} data, not numbers ({want.expects})")


def _result_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """What an array of `dtype` is loaded as: float64, int64 or bool."""
    if dtype.kind == "b":
        return np.dtype(np.bool_)
    if dtype.kind in "iu":
        return np.dtype(np.int64)
    return np.dtype(np.float64)


def _checked(raw: NDArray[Any], source: str, want: _Want, header: _NpyHeader) -> NDArray[Any]:
    """Check an array read from .npy/.npz and return it in its loaded dtype."""
    _check_dtype(raw.dtype, source, want)
    if raw.size == 0:
        raise LoadError(f"{source}: is empty, shape {raw.shape} ({want.expects})")
    try:
        return _converted(raw, source, want)
    except MemoryError:
        raise _out_of_memory(source, header, want) from None


def _converted(raw: NDArray[Any], source: str, want: _Want) -> NDArray[Any]:
    kind = raw.dtype.kind
    if kind == "b":
        return raw.astype(np.bool_, copy=False)
    if kind in "iu":
        if kind == "u" and raw.dtype.itemsize >= 8:
            position = _first_true(raw > _INT64_MAX)
            if position is not None:
                raise LoadError(
                    f"{source}: {_entry_with_value(position, raw[position])} is too large for "
                    f"int64 (largest {_INT64_MAX}) (given to {want.option})"
                )
        return raw.astype(np.int64, copy=False)
    position = _first_true(~np.isfinite(raw))
    if position is not None:
        raise LoadError(
            f"{source}: {_entry(position)} is {_non_finite_kind(raw[position])} "
            f"({want.option} expects finite numbers)"
        )
    if raw.dtype == np.float64:
        return raw
    with np.errstate(over="ignore"):  # only long double can overflow; reported just below
        array = raw.astype(np.float64)
    _refuse_overflow(raw, array, source, f"given to {want.option}")
    return array


def _refuse_overflow(original: NDArray[Any], cast: NDArray[Any], source: str, context: str) -> None:
    """Raise `LoadError` at the first value that is finite in `original` but inf in `cast`."""
    position = _first_true(np.isinf(cast) & np.isfinite(original))
    if position is not None:
        raise LoadError(
            f"{source}: {_entry_with_value(position, original[position])} overflows "
            f"{cast.dtype} (largest {np.finfo(cast.dtype).max!s}) and would become inf ({context})"
        )


def _first_true(mask: NDArray[np.bool_]) -> tuple[int, ...] | None:
    """The index of the first True of `mask` in row-major order, or None when there is none."""
    if not mask.any():
        return None
    flat = int(np.argmax(mask))  # argmax of booleans: the first True
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def _entry(index: tuple[int, ...]) -> str:
    """`entry [1, 0, 2]`, or `the value` for the one entry of a 0-D array."""
    return f"entry [{', '.join(str(i) for i in index)}]" if index else "the value"


def _entry_with_value(index: tuple[int, ...], value: Any) -> str:
    # str(), not format(): formatting a long double goes through float and prints inf.
    shown = str(value)
    return f"{_entry(index)} = {shown}" if index else f"the value {shown}"


def _non_finite_kind(value: Any) -> str:
    if np.isnan(value):
        return "NaN"
    return "inf" if value > 0 else "-inf"


# --- sizes and memory ---------------------------------------------------------------------------


def _size(n_bytes: int) -> str:
    """A size for people: `872 bytes`, `1.5 KiB`, `7.28 TiB`."""
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    value = float(n_bytes)
    units = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    for unit in units[:-1]:
        value /= 1024
        if value < 1024:
            return f"{value:.3g} {unit}"
    return f"{value / 1024:.3g} {units[-1]}"


def _exact_size(n_bytes: int) -> str:
    """A size to the byte, with the rounded one beside it when it is large."""
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    return f"{n_bytes} bytes ({_size(n_bytes)})"


def _available_memory() -> int | None:
    """Bytes of memory available now: MemAvailable, lowered to what a cgroup (a container)
    still allows; os.sysconf's free pages where /proc is not there; None if nothing says."""
    amounts: list[int] = []
    meminfo = _read_small_text("/proc/meminfo")
    found = re.search(r"^MemAvailable:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    if found:
        amounts.append(int(found.group(1)) * 1024)
    limit = _read_small_text("/sys/fs/cgroup/memory.max").strip()  # "max" when unlimited
    used = _read_small_text("/sys/fs/cgroup/memory.current").strip()
    if limit.isdigit() and used.isdigit():
        amounts.append(max(int(limit) - int(used), 0))
    if not amounts:
        # No sysconf on Windows; no SC_AVPHYS_PAGES on macOS.
        with suppress(AttributeError, ValueError, OSError):
            amounts.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return min(amounts) if amounts else None


def _read_small_text(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read(1 << 16)
    except OSError:
        return ""
