"""Writing the JSON report: strict JSON text, and a file that is either complete or untouched.

Pure: json, os, tempfile, pathlib and numpy (to recognise numpy scalars and arrays); no click, no
rich. The CLI calls `check_output_path` before any work, so a bad path fails fast, and
`write_atomically` at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcheck_cli.errors import InputError


class OutputError(InputError):
    """The report cannot be written where the user asked for it."""


def to_json_text(document: Mapping[str, Any]) -> str:
    """`document` as strict, indented JSON: NaN and ±inf become null, numpy values plain ones.

    Floats are written with `repr`, so they read back bit for bit.
    """
    return json.dumps(_jsonable(document), indent=2, allow_nan=False)


def check_output_path(path: Path) -> None:
    """Raise `OutputError` unless a file can be written at `path` (called before any work)."""
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; the report needs a file path")
    parent = path.parent
    if not parent.exists():
        raise OutputError(f"{path}: cannot write the report: directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot write the report: {parent} is not a directory")
    # Writing means creating a temporary file in the directory and renaming it: W and X.
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write the report: directory {parent} is not writable")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that the file is either complete or left untouched.

    The text goes to a temporary file in the same directory, which then replaces `path` in one
    rename; on any failure, KeyboardInterrupt included, the temporary file is removed.
    """
    data = text.encode("utf-8")
    try:
        descriptor, temp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise _write_failed(path, error) from error
    temp = Path(temp_name)
    try:
        with open(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, _mode_for(path))  # mkstemp makes 0o600; give the usual permissions
        os.replace(temp, path)
    except OSError as error:
        _remove_quietly(temp)
        raise _write_failed(path, error) from error
    except BaseException:
        _remove_quietly(temp)
        raise


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
    return OutputError(f"{path}: cannot write the report: {error.strerror or error}")
