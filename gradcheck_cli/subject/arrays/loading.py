"""Loading the user's arrays: what the command line's `--x`, `--w`, `--input NAME=PATH` and
`--inputs` read.

- `load_array(spec, option=...)`: one array of any shape (0-D to N-D) from `a.csv`, `a.npy`,
  `a.npz` or `a.npz:key`; `load_archive(path)`: every array of an .npz, for `--inputs` and for
  `--input NAME=a.npz` when it holds several (`is_whole_archive`: a dict argument's arrays);
  `cast_to_dtype(...)`: the float inputs in the dtype of the check.

Pure: numpy and the standard library only. Every failure is a `LoadError` whose single-line
message names the file (for CSV also the line and column, for arrays the entry) and the option
the file was given to; file names, keys and cells in it are passed through `printable`, so a
hostile name cannot send escape sequences to the terminal. No array may need more than the
memory budget to load (`budget.memory_budget()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.numerics.bfloat16 import BFLOAT16, LARGEST, in_dtype
from gradcheck_cli.subject.arrays.csv_files import load_csv
from gradcheck_cli.subject.arrays.files import LoadError
from gradcheck_cli.subject.arrays.npy_files import load_npy
from gradcheck_cli.subject.arrays.npz_files import load_every_array, load_npz, npz_keys
from gradcheck_cli.subject.arrays.values import refuse_overflow

SUPPORTED_EXTENSIONS = (".csv", ".npy", ".npz")

_CASTABLE_DTYPES = ("float64", "float32", "float16", BFLOAT16)


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class LoadedArray:
    """An array of any shape and where it came from (a path, `path.npz:key` or `builtin:...`).

    The dtype is float64 for numbers (float16/32 widened), int64 for integers and bool for
    booleans: integer and boolean arrays are labels or masks, which the caller keeps constant.
    """

    array: NDArray[Any]
    source: str


def load_array(spec: str, *, option: str) -> LoadedArray:
    """Load one array from `spec`: `a.csv`, `a.npy`, `a.npz` or `a.npz:key`.

    .npy/.npz arrays keep their shape, 0-D included; a CSV is always a 2-D float64 array (the
    caller may flatten a one-row or one-column CSV). Floats become float64, integers int64,
    booleans stay bool. Raises `LoadError` naming the file and `option` (`--input b`, `--x`).
    """
    if not spec:
        raise LoadError(f"{option}: empty path ({option} expects a .csv, .npy or .npz file)")
    path_text, key = _split_npz_key(spec)
    suffix = Path(path_text).suffix.lower()
    if suffix == ".csv":
        return LoadedArray(load_csv(path_text, option), path_text)
    if suffix == ".npy":
        return LoadedArray(load_npy(path_text, option), path_text)
    if suffix == ".npz":
        array, source = load_npz(path_text, key, option)
        return LoadedArray(array, source)
    raise LoadError(
        f"{path_text}: unsupported file type ({_extension(suffix)}); {option} expects a file "
        f"ending in {', '.join(SUPPORTED_EXTENSIONS[:-1])} or {SUPPORTED_EXTENSIONS[-1]} "
        f"(.npz may be followed by :KEY)"
    )


def load_archive(path: str, *, option: str = "--inputs") -> dict[str, LoadedArray]:
    """Every array of the .npz at `path`, by key in the archive's order; sources `path:key`.

    Each array is checked and converted as by `load_array`; every header is read, and the
    arrays' total size held against the memory budget, before any array is inflated.
    """
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
    arrays = load_every_array(path_text, option)
    return {key: LoadedArray(array, f"{path_text}:{key}") for key, array in arrays.items()}


def is_whole_archive(spec: str, *, option: str) -> bool:
    """Whether `spec` is an .npz without :KEY holding several arrays: given to --input NAME,
    its arrays are the members of the dict argument NAME."""
    path_text, key = _split_npz_key(spec)
    if key is not None or Path(path_text).suffix.lower() != ".npz":
        return False
    return len(npz_keys(path_text, option)) > 1


def cast_to_dtype(loaded: LoadedArray, dtype: str, *, option: str) -> NDArray[Any]:
    """`loaded.array` in `dtype` ("float64", "float32", "float16", or "bfloat16": rounded to
    it, held as float64) if it is a float array.

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
        if dtype == BFLOAT16:
            cast = in_dtype(array, dtype)
        else:
            cast = array.astype(np.dtype(dtype), copy=False)  # no second copy of a big input
    largest = (dtype, LARGEST) if dtype == BFLOAT16 else None
    refuse_overflow(
        array, cast, loaded.source, f"given to {option} with --dtype {dtype}", largest=largest
    )
    return cast


def file_of_spec(spec: str) -> Path:
    """The file a spec reads: `a.npz:key` -> a.npz, anything else itself (for --output checks)."""
    return Path(_split_npz_key(spec)[0])


def _extension(suffix: str) -> str:
    return f"extension {suffix!r}" if suffix else "no extension"


def _split_npz_key(spec: str) -> tuple[str, str | None]:
    """`a.npz:key` -> ("a.npz", "key"); anything else -> (spec, None). Splits on the last ':'."""
    head, colon, key = spec.rpartition(":")
    if colon and head.lower().endswith(".npz"):
        return head, key
    return spec, None
