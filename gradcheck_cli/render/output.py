"""Writing the reports: strict JSON text, files that are complete or untouched, and stdout.

Pure: json, os, sys, tempfile, pathlib and numpy (to recognise numpy scalars and arrays); no
click, no rich. The CLI calls `check_output_path` before any work (and before any user code
runs), so a bad path fails fast and a relative path cannot be moved by a model's os.chdir;
`write_atomically` / `write_bytes_atomically` at the end; `write_stdout` for the report on
stdout; `remove_temporary_files` from a SIGTERM/SIGHUP handler.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

import numpy as np

from gradcheck_cli.errors import InputError
from gradcheck_cli.sanitize import printable

STDOUT_PATH = "-"
"""`--output -` means stdout, never a file named `-`."""

_NO_PROTECTED_PATHS: Mapping[Path, str] = MappingProxyType({})

_given_names: dict[Path, Path] = {}
"""How the user named each path `check_output_path` returned (its resolved target -> the path as
given), so that a write that fails later names the file as the user did (`out.json`), not by
its absolute target, whoever writes it (the reports, a plot)."""

_temporary_files: set[Path] = set()
"""Temporary files that a write has created and not yet renamed or removed. A signal handler
that ends the process with os._exit skips every `finally`; it calls `remove_temporary_files`
first. (Between mkstemp returning and the name landing here are a few bytecodes in which a
handler would not see the file: the window cannot be closed without giving up mkstemp.)"""


class OutputError(InputError):
    """The report cannot be written where the user asked for it.

    The message goes through `printable`: a path holding escape sequences reaches the terminal
    as visible text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


def to_json_text(document: Mapping[str, Any]) -> str:
    """`document` as strict, indented JSON: NaN and ±inf become null, numpy values plain ones.

    Floats are written with `repr`, so they read back bit for bit.
    """
    return json.dumps(_jsonable(document), indent=2, allow_nan=False)


def is_stdout(path: str | os.PathLike[str]) -> bool:
    """Whether an --output value means stdout (`-`) rather than a file.

    Give it the option's text where there is one: `Path("./-")` prints as `-`, so a user who
    wants a file named `-` can only say so in the text (`./-`).
    """
    return os.fspath(path) == STDOUT_PATH


def check_output_path(path: Path, *, protected: Mapping[Path, str] = _NO_PROTECTED_PATHS) -> Path:
    """Check, before any work, that the report can be written at `path`; return where it goes.

    Raises `OutputError` if `path` is a directory or a symlink loop, if its directory is missing
    or not writable, or if it is the same file as one of `protected` (the inputs: path -> the
    option it was given to, such as `{Path("x.csv"): "--x"}`), however it is spelled (`./x.csv`,
    a symlink, a hard link). Returns the absolute, resolved path to write to, so that the CLI
    can fix it before any user code runs; a symlink resolves to its target, which is where the
    write goes. `-` (stdout) is returned as it is, without checks.
    """
    if is_stdout(path):
        return path
    if _is_symlink_loop(path):
        raise OutputError(f"{path}: is a symlink loop; the report needs a file path")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; the report needs a file path")
    target = _write_target(path)
    if _is_special_file(target):  # /dev/null, a FIFO: written in place, not renamed over
        if not os.access(target, os.W_OK):
            raise OutputError(f"{path}: cannot write the report: permission denied")
    else:
        _check_directory(path, target)
    for input_path, option in protected.items():
        if _same_file(path, input_path):
            raise OutputError(
                f"{path}: is the file given to {option}; refusing to overwrite an input"
            )
    _given_names[target] = path
    return target


def write_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that the file is either complete or left untouched.

    See `write_bytes_atomically`.
    """
    write_bytes_atomically(path, text.encode("utf-8"))


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that the file is either complete or left untouched.

    The data goes to a temporary file in the same directory, which then replaces the file in
    one rename; on any failure, KeyboardInterrupt and SystemExit included, the temporary file
    is removed. A symlink is written through: its target is replaced and the link stays a link.
    The file keeps an existing file's permissions; a new one gets 0o666 minus the umask.
    A device or a named pipe (`/dev/null`) is written in place: renaming over it would replace
    the device node with a plain file.
    """
    write_together([("", path, data)])


def write_together(files: Sequence[tuple[str, Path, bytes]]) -> None:
    """Write several files (option, path, data) so that either all of them are written or,
    where one cannot be, none is replaced: each regular file goes to a temporary file first;
    devices (written in place, there is nothing to replace) come next; only when every write
    has succeeded are the temporary files renamed over their targets. A failure is an
    OutputError naming the option, and every temporary file is removed."""
    staged: list[tuple[Path, Path, str, Path]] = []
    try:
        in_place = []
        for option, path, data in files:
            try:
                if _is_symlink_loop(path):
                    raise OutputError(f"{path}: cannot write the report: symlink loop")
                target = _write_target(path)
                if _is_special_file(target):
                    in_place.append((option, path, target, data))
                else:
                    staged.append((_staged_copy(path, target, data), target, option, path))
            except OutputError as error:
                raise _named(option, error) from None
        for option, path, target, data in in_place:
            try:
                _write_in_place(path, target, data)
            except OutputError as error:
                raise _named(option, error) from None
        for temp, target, option, path in staged:
            try:
                os.replace(temp, target)
            except OSError as error:
                raise _named(option, _write_failed(path, error)) from error
    except BaseException:
        for temp, *_ in staged:
            _remove_quietly(temp)
        raise
    finally:
        for temp, *_ in staged:
            _temporary_files.discard(temp)


def _named(option: str, error: OutputError) -> OutputError:
    """The error with the option that named the file in front (none for a plain write)."""
    return OutputError(f"{option} {error}") if option else error


def _staged_copy(path: Path, target: Path, data: bytes) -> Path:
    """`data` in a complete temporary file beside `target`, with the permissions `target` will
    have; the caller renames it over `target`."""
    try:
        descriptor, temp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise _write_failed(path, error) from error
    temp = Path(temp_name)
    _temporary_files.add(temp)
    try:
        with open(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, _mode_for(target))  # mkstemp makes 0o600; give the usual permissions
    except OSError as error:
        _remove_quietly(temp)
        _temporary_files.discard(temp)
        raise _write_failed(path, error) from error
    except BaseException:
        _remove_quietly(temp)
        _temporary_files.discard(temp)
        raise
    return temp


def remove_temporary_files() -> None:
    """Remove every temporary file a write has in flight, for a SIGTERM/SIGHUP handler.

    Safe to call at any time, and more than once; the report it was for is left as it was.
    """
    for temp in list(_temporary_files):
        _remove_quietly(temp)
        _temporary_files.discard(temp)


def write_stdout(text: str) -> None:
    """Write `text` to sys.stdout and flush it, so that a full disk is seen here and now.

    An OSError (`> /dev/full`: ENOSPC; EIO) becomes an `OutputError`; a BrokenPipeError (the
    reader went away, as in `| head`) propagates as it is, for the CLI to end quietly. Either
    way what is left in the buffer is discarded (`discard_stdout`): the interpreter's flush at
    exit would fail on it again, with a traceback and exit code 120.
    """
    # typeshed says TextIO, but Python sets sys.stdout to None when descriptor 1 is closed.
    stream: TextIO | None = sys.stdout
    if stream is None:  # the process was started with stdout closed (`>&-`)
        raise OutputError("cannot write the report to stdout: stdout is closed")
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        discard_stdout()
        raise
    except OSError as error:
        discard_stdout()
        raise OutputError(
            f"cannot write the report to stdout: {error.strerror or error}"
        ) from error
    except ValueError as error:  # "I/O operation on closed file"
        raise OutputError(f"cannot write the report to stdout: {error}") from error


def discard_stdout() -> None:
    """Point stdout's file descriptor at /dev/null, after a write to it failed for good.

    What is still buffered then goes nowhere, quietly, when the interpreter flushes it at exit.
    Does nothing where stdout has no descriptor (a test's in-memory stream).
    """
    stream: TextIO | None = sys.stdout
    try:
        descriptor = stream.fileno() if stream is not None else -1
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return
    if descriptor < 0:
        return
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, descriptor)
        finally:
            os.close(devnull)


def _jsonable(value: Any) -> Any:
    """`value` with NaN/inf -> None, numpy scalars -> Python numbers, arrays/tuples -> lists."""
    if isinstance(value, Mapping):
        return {_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (float, np.floating)):  # np.float64 is a float; float32 is not
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    return value  # str, int, None; anything else json.dumps refuses with a TypeError


def _key(key: Any) -> Any:
    return key.item() if isinstance(key, np.generic) else key


def _check_directory(path: Path, target: Path) -> None:
    """Refuse a report whose directory is missing or cannot take a new file."""
    # The temporary file goes into the directory the report lands in: the target's directory
    # when `path` is a symlink, else the directory as the user spelled it.
    parent = target.parent if os.path.islink(path) else path.parent
    if not parent.exists():
        raise OutputError(f"{path}: cannot write the report: directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot write the report: {parent} is not a directory")
    # Writing means creating a temporary file in the directory and renaming it: W and X.
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write the report: directory {parent} is not writable")


def _write_target(path: Path) -> Path:
    """The absolute path the write goes to: a symlink's target, resolved now.

    A device or pipe is not resolved: /dev/stdout resolves to /proc/self/fd/1 and on to
    names such as `pipe:[1234]` that cannot be opened again.
    """
    if _is_special_file(path):
        return Path(os.path.abspath(path))
    return Path(os.path.realpath(path))


def _is_special_file(path: Path) -> bool:
    """Whether `path` exists and is neither a regular file nor a directory (a device, a FIFO)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _is_symlink_loop(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def _same_file(path: Path, other: Path) -> bool:
    """Whether `path` and `other` are one file: the same inode (a hard link, a symlink, `./x`),
    or, where one does not exist yet, the same resolved path."""
    try:
        return os.path.samefile(path, other)
    except OSError:
        return os.path.realpath(path) == os.path.realpath(other)


def _write_in_place(path: Path, target: Path, data: bytes) -> None:
    try:
        with open(target, "wb") as handle:
            handle.write(data)
            handle.flush()
    except OSError as error:
        raise _write_failed(path, error) from error


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets 0o666 minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        pass
    # os.umask is the only portable way to read the umask; it is set back at once.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _remove_quietly(temp: Path) -> None:
    with contextlib.suppress(OSError):
        temp.unlink()


def _write_failed(path: Path, error: OSError) -> OutputError:
    shown = _given_names.get(path, path)
    return OutputError(f"{shown}: cannot write the report: {error.strerror or error}")
