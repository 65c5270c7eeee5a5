"""Reading .npz archives: one array by key (`a.npz:key`), or every array (`--inputs`).

Every member is a .npy array; its declared uncompressed size is held against the memory budget
before anything is inflated (a 3 MB archive may inflate to 3 GiB), and for a whole archive the
arrays' total size too.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from numpy.typing import NDArray

from gradcheck_cli.subject.arrays.budget import RAISE_BUDGET, memory_budget, size_text
from gradcheck_cli.subject.arrays.files import LoadError, expects, open_regular_file, read_failed
from gradcheck_cli.subject.arrays.npy_files import (
    NPY_MAGIC,
    ZIP_MAGIC,
    NpyHeader,
    bad_array_file,
    bytes_needed,
    check_header,
    checked,
    not_npy,
    read_array,
    read_npy_header,
)

_MAX_KEYS_SHOWN = 10  # an archive of thousands of keys must not make a thousand-key message
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


def load_npz(path_text: str, key: str | None, option: str) -> tuple[NDArray[Any], str]:
    """The checked array `key` of the .npz at `path_text` (None: its only array), and its
    source `path:key`."""
    budget = memory_budget()
    with _open_npz(path_text, option) as archive:
        try:
            members = _npz_members(archive)
            chosen = _choose_key(path_text, key, list(members), option)
            source = f"{path_text}:{chosen}"
            header = _member_header(archive, members[chosen], source, option, budget)
            raw = _read_member(archive, members[chosen], header, source, option)
        except _BAD_ZIP_ERRORS as error:
            raise _bad_npz(path_text, option, error) from None
        except OSError as error:
            raise read_failed(path_text, option, error) from None
    return checked(raw, source, option, header), source


def npz_keys(path_text: str, option: str) -> list[str]:
    """The keys of the .npz at `path_text`, in the archive's order (nothing is inflated)."""
    with _open_npz(path_text, option) as archive:
        try:
            return list(_npz_members(archive))
        except _BAD_ZIP_ERRORS as error:
            raise _bad_npz(path_text, option, error) from None


def load_every_array(path_text: str, option: str) -> dict[str, NDArray[Any]]:
    """Every checked array of the .npz at `path_text`, by key in the archive's order.

    Every header is read, and the arrays' total size held against the memory budget, before
    any array is inflated.
    """
    budget = memory_budget()
    with _open_npz(path_text, option) as archive:
        try:
            members = _npz_members(archive)
            if not members:
                raise LoadError(
                    f"{path_text}: the archive holds no arrays ({option} expects at least one)"
                )
            headers = {
                key: _member_header(archive, info, f"{path_text}:{key}", option, budget)
                for key, info in members.items()
            }
            total = sum(bytes_needed(header) for header in headers.values())
            if total > budget:
                raise LoadError(
                    f"{path_text}: its {len(headers)} arrays together need {size_text(total)} to "
                    f"load, more than the memory budget of {size_text(budget)}; "
                    f"{RAISE_BUDGET} (given to {option})"
                )
            loaded: dict[str, NDArray[Any]] = {}
            for key, header in headers.items():
                source = f"{path_text}:{key}"
                raw = _read_member(archive, members[key], header, source, option)
                loaded[key] = checked(raw, source, option, header)
            return loaded
        except _BAD_ZIP_ERRORS as error:
            raise _bad_npz(path_text, option, error) from None
        except OSError as error:
            raise read_failed(path_text, option, error) from None


@contextmanager
def _open_npz(path_text: str, option: str) -> Iterator[zipfile.ZipFile]:
    """The .npz at `path_text` as an open zip archive; errors in opening it are `LoadError`s."""
    with open_regular_file(path_text, option) as handle:
        try:
            if not handle.read(len(ZIP_MAGIC)).startswith(ZIP_MAGIC):
                raise LoadError(f"{path_text}: is not an .npz (zip) archive ({expects(option)})")
            handle.seek(0)
            archive = zipfile.ZipFile(handle)
        except _BAD_ZIP_ERRORS as error:
            raise _bad_npz(path_text, option, error) from None
        except OSError as error:
            raise read_failed(path_text, option, error) from None
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
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, option: str, budget: int
) -> NpyHeader:
    """The .npy header of one member, checked against its size and the budget before any of
    its data is inflated (a 3 MB archive may inflate to 3 GiB)."""
    if info.file_size > budget:
        raise LoadError(
            f"{source}: inflates to {size_text(info.file_size)}, more than the memory budget of "
            f"{size_text(budget)}; {RAISE_BUDGET} (given to {option})"
        )
    with archive.open(info) as member:
        head = member.read(len(NPY_MAGIC))
        if head != NPY_MAGIC:
            raise not_npy(source, option, head)
        member.seek(0)
        try:
            header = read_npy_header(member)
        except ValueError as error:
            raise bad_array_file(source, option, error, "a valid .npy array") from None
    check_header(header, info.file_size - header.data_offset, source, "the member", option, budget)
    return header


def _read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    header: NpyHeader,
    source: str,
    option: str,
) -> NDArray[Any]:
    with archive.open(info) as member:
        try:
            return read_array(member, header, source, option)
        except ValueError as error:
            raise bad_array_file(source, option, error, "a valid .npy array") from None


def _bad_npz(path_text: str, option: str, error: BaseException) -> LoadError:
    detail = " ".join(str(error).split())
    return LoadError(f"{path_text}: not a valid .npz file: {detail} (given to {option})")
