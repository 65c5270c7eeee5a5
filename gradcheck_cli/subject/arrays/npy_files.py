"""Reading .npy data, from a file or from an .npz member, without trusting its header.

Read with `allow_pickle=False`: an object array or a pickle is refused, never unpickled. A
header's declared size is held against the bytes actually present and against the memory
budget before any data is read, so a 1 KB file claiming a 10^6 x 10^6 array allocates nothing.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.subject.arrays.budget import (
    RAISE_BUDGET,
    exact_size_text,
    memory_budget,
    size_text,
)
from gradcheck_cli.subject.arrays.files import LoadError, expects, open_regular_file, read_failed
from gradcheck_cli.subject.arrays.values import (
    check_dtype,
    in_loaded_dtype,
    loaded_dtype,
    object_array_refused,
)

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"
_PICKLE_OPCODE_PROTO = b"\x80"  # the first byte of every pickle of protocol 2 or later


class NpyHeader(NamedTuple):
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


def load_npy(path_text: str, option: str) -> NDArray[Any]:
    """The checked array of the .npy file at `path_text`, in its loaded dtype."""
    with open_regular_file(path_text, option) as handle:
        try:
            head = handle.read(len(NPY_MAGIC))
            if head != NPY_MAGIC:
                raise not_npy(path_text, option, head)
            handle.seek(0)
            header = read_npy_header(handle)
            present = os.fstat(handle.fileno()).st_size - header.data_offset
            check_header(header, present, path_text, "the file", option, memory_budget())
            handle.seek(0)
            raw = read_array(handle, header, path_text, option)
        except ValueError as error:
            raise bad_array_file(path_text, option, error, "a valid .npy file") from None
        except OSError as error:
            raise read_failed(path_text, option, error) from None
    return checked(raw, path_text, option, header)


def not_npy(source: str, option: str, head: bytes) -> LoadError:
    """What a file (or member) that does not start with the .npy magic is instead."""
    if head.startswith(ZIP_MAGIC):
        what = "is a zip archive (an .npz?), not a .npy file"
    elif head.startswith(_PICKLE_OPCODE_PROTO):
        what = "holds a Python pickle, not a NumPy array; refused, pickles are never loaded"
    else:
        what = "is not a .npy file (no NumPy header)"
    return LoadError(f"{source}: {what} ({expects(option)})")


def read_npy_header(handle: _ByteStream) -> NpyHeader:
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
    return NpyHeader(shape=tuple(shape), dtype=dtype, data_offset=handle.tell())


def check_header(
    header: NpyHeader, present: int, source: str, container: str, option: str, budget: int
) -> None:
    """Refuse, before reading any data, what the header alone shows to be unusable."""
    check_dtype(header.dtype, source, option)
    declared = header.data_bytes
    if declared > present:
        kind = "a valid .npy file" if container == "the file" else "a valid .npy array"
        raise LoadError(
            f"{source}: not {kind}: its header declares {header.described}, "
            f"{exact_size_text(declared)} of data, but {container} holds "
            f"{exact_size_text(present)} (given to {option})"
        )
    needed = bytes_needed(header)
    if needed > budget:
        raise LoadError(
            f"{source}: needs {size_text(needed)} to load ({header.described}), more than the "
            f"memory budget of {size_text(budget)}; {RAISE_BUDGET} (given to {option})"
        )


def bytes_needed(header: NpyHeader) -> int:
    """Peak memory of loading: the array as stored, plus its converted copy if it needs one."""
    stored = header.data_bytes
    result = loaded_dtype(header.dtype)
    if header.dtype == result:
        return stored
    return stored + math.prod(header.shape) * result.itemsize


def read_array(handle: _ByteStream, header: NpyHeader, source: str, option: str) -> NDArray[Any]:
    """The data after a checked header, as stored (ValueError if it is malformed)."""
    try:
        return np.lib.format.read_array(handle, allow_pickle=False)
    except MemoryError:
        raise _out_of_memory(source, header, option) from None


def checked(raw: NDArray[Any], source: str, option: str, header: NpyHeader) -> NDArray[Any]:
    """Check an array read from .npy/.npz and return it in its loaded dtype."""
    check_dtype(raw.dtype, source, option)
    if raw.size == 0:
        raise LoadError(f"{source}: is empty, shape {raw.shape} ({expects(option)})")
    try:
        return in_loaded_dtype(raw, source, option)
    except MemoryError:
        raise _out_of_memory(source, header, option) from None


def bad_array_file(source: str, option: str, error: ValueError, kind: str) -> LoadError:
    """numpy's refusal of malformed .npy data, in our words (`kind`: a valid .npy file)."""
    if "allow_pickle" in str(error):  # numpy's refusal of object arrays and pickles
        return object_array_refused(source, option)
    detail = " ".join(str(error).split())
    return LoadError(f"{source}: not {kind}: {detail} (given to {option})")


def _out_of_memory(source: str, header: NpyHeader, option: str) -> LoadError:
    return LoadError(
        f"{source}: not enough memory to load it: needs {size_text(bytes_needed(header))} "
        f"({header.described}) (given to {option})"
    )
