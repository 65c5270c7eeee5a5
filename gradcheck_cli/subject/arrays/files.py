"""Opening the user's array files, and the one error every reader of them raises.

Only a regular, non-empty file is opened. Every failure is a `LoadError` whose single-line
message names the file and the option it was given to (`--x`, `--input b`).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO

from gradcheck_cli.errors import InputError
from gradcheck_cli.sanitize import printable

_FILE_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
}


class LoadError(InputError):
    """A file that cannot be used: missing, unreadable, malformed, too big or of the wrong shape.

    The message goes through `printable`: whatever file name, key or cell it quotes, it reaches
    the terminal as visible text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


def expects(option: str) -> str:
    """What every option that takes an array file expects, as the messages say it."""
    return f"{option} expects a numeric array"


def open_regular_file(path_text: str, option: str) -> IO[bytes]:
    """Open a regular, non-empty file for reading, or raise `LoadError` saying what is wrong."""
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
        raise LoadError(f"{path_text}: the file is empty ({expects(option)})")
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


def read_failed(path_text: str, option: str, error: OSError) -> LoadError:
    """An error while reading a file that opened (an I/O error, a file cut short)."""
    return LoadError(f"{path_text}: cannot read: {error.strerror or error} (given to {option})")
