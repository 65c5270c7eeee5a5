"""How a fault of the user's code reads: one line that names the file and, where the user's
code raised, the innermost line of it (`model.py:12: forward raised ValueError: boom`).

Pure numpy and stdlib: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import UserCodeError

# The user's exception message is quoted in our one-line error; a repr of a big array is not.
_MESSAGE_LIMIT = 300


def user_code_error(path: Path, role: str, error: BaseException) -> UserCodeError:
    """`model.py:12: forward raised ValueError: boom`, the line being the user's innermost."""
    line = _innermost_line(error, str(path))
    where = path.name if line is None else f"{path.name}:{line}"
    message = one_line(str(error))
    described = type(error).__name__ + (f": {message}" if message else "")
    return UserCodeError(f"{where}: {role} raised {described}")


def _innermost_line(error: BaseException, filename: str) -> int | None:
    """The line of the innermost traceback frame that runs code from `filename`, if any."""
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def one_line(text: str) -> str:
    """`text` on one line, cut to a few hundred characters."""
    joined = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if len(joined) > _MESSAGE_LIMIT:
        joined = joined[: _MESSAGE_LIMIT - 3] + "..."
    return joined


def describe(value: object) -> str:
    """`float`, `NoneType`, `a tuple of 3`, `an array of shape (2,) and dtype <U1`."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def first_index(mask: NDArray[np.bool_]) -> tuple[int, ...]:
    """The index of the first True of `mask` (which holds one)."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def format_index(index: tuple[int, ...]) -> str:
    """`1, 0, 2`: an index as it stands between brackets in a message."""
    return ", ".join(str(i) for i in index)


def given_inputs(inputs: Mapping[str, object]) -> str:
    """`x, w, b`, or `inputs` when there are more than four: "at the given x, w, b"."""
    return ", ".join(inputs) if len(inputs) <= 4 else "inputs"
