"""The JSON report: strict JSON text, output-path checks and atomic writing."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradcheck_cli.errors import InputError
from gradcheck_cli.output import (
    OutputError,
    check_output_path,
    to_json_text,
    write_atomically,
)

# --- to_json_text -------------------------------------------------------------------------------


def test_non_finite_floats_become_null() -> None:
    """NaN and ±inf, Python or numpy, anywhere in the document, are written as null."""
    document = {
        "nan": math.nan,
        "inf": math.inf,
        "neg": [-math.inf, 1.0],
        "nested": {"np": np.float64("nan"), "np32": np.float32("inf")},
        "array": np.array([1.5, np.nan, -np.inf]),
    }
    text = to_json_text(document)
    assert "NaN" not in text
    assert "Infinity" not in text
    assert json.loads(text) == {
        "nan": None,
        "inf": None,
        "neg": [None, 1.0],
        "nested": {"np": None, "np32": None},
        "array": [1.5, None, None],
    }


def test_numpy_values_become_plain_json() -> None:
    """numpy scalars become numbers or booleans, arrays and tuples become lists."""
    document = {
        "int": np.int64(3),
        "uint": np.uint8(255),
        "bool": np.bool_(True),
        "float32": np.float32(0.1),
        "matrix": np.array([[1, 2], [3, 4]]),
        "shape": (3, 2),
        "tuple_of_arrays": (np.zeros(1), np.ones(1)),
    }
    assert json.loads(to_json_text(document)) == {
        "int": 3,
        "uint": 255,
        "bool": True,
        "float32": 0.10000000149011612,
        "matrix": [[1, 2], [3, 4]],
        "shape": [3, 2],
        "tuple_of_arrays": [[0.0], [1.0]],
    }


def test_layout_is_indented_by_two() -> None:
    """The text is json.dumps with indent=2, keys in the document's order."""
    assert to_json_text({"b": 1, "a": [True, None]}) == (
        '{\n  "b": 1,\n  "a": [\n    true,\n    null\n  ]\n}'
    )


def test_unknown_types_are_still_refused() -> None:
    """Values JSON cannot express are an error, not silently stringified."""
    with pytest.raises(TypeError):
        to_json_text({"x": object()})


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_round_trip_exactly(value: float) -> None:
    """Every finite float reads back with the same bits (signed zero included)."""
    back = json.loads(to_json_text({"x": value, "np": np.float64(value)}))
    assert struct.pack("<d", back["x"]) == struct.pack("<d", value)
    assert struct.pack("<d", back["np"]) == struct.pack("<d", value)


# --- check_output_path --------------------------------------------------------------------------


def test_check_output_path_accepts_new_and_existing_files(tmp_path: Path) -> None:
    """A new file in a writable directory, or an existing file, is fine."""
    check_output_path(tmp_path / "new.json")
    (tmp_path / "old.json").write_text("{}")
    check_output_path(tmp_path / "old.json")


def test_check_output_path_missing_directory(tmp_path: Path) -> None:
    """A path in a directory that does not exist is an OutputError naming both."""
    path = tmp_path / "missing" / "report.json"
    with pytest.raises(OutputError) as caught:
        check_output_path(path)
    assert str(caught.value) == (
        f"{path}: cannot write the report: directory {tmp_path / 'missing'} does not exist"
    )


def test_check_output_path_parent_is_a_file(tmp_path: Path) -> None:
    """A path under a regular file is refused: its parent is not a directory."""
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "report.json"
    with pytest.raises(OutputError) as caught:
        check_output_path(path)
    assert str(caught.value) == (
        f"{path}: cannot write the report: {tmp_path / 'file'} is not a directory"
    )


def test_check_output_path_is_a_directory(tmp_path: Path) -> None:
    """An existing directory cannot be the report file."""
    with pytest.raises(OutputError) as caught:
        check_output_path(tmp_path)
    assert str(caught.value) == f"{tmp_path}: is a directory; the report needs a file path"


def test_check_output_path_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory the user may not write to is refused (simulated: tests run as root)."""
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        if Path(path) == tmp_path and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    path = tmp_path / "report.json"
    with pytest.raises(OutputError) as caught:
        check_output_path(path)
    assert str(caught.value) == (
        f"{path}: cannot write the report: directory {tmp_path} is not writable"
    )


def test_output_error_is_an_input_error() -> None:
    """The CLI reports OutputError like any bad input (exit 2)."""
    assert issubclass(OutputError, InputError)


# --- write_atomically ---------------------------------------------------------------------------


def test_write_creates_the_file_with_the_text(tmp_path: Path) -> None:
    """The file holds exactly the text, UTF-8 encoded, and nothing else is left behind."""
    path = tmp_path / "report.json"
    write_atomically(path, '{"δ": 1}\n')
    assert path.read_bytes() == '{"δ": 1}\n'.encode()
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_gives_a_new_file_the_usual_permissions(tmp_path: Path) -> None:
    """A new file gets 0o666 minus the umask, like any file the user creates (not 0o600)."""
    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "report.json", "{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644


def test_write_replaces_an_existing_file_keeping_its_permissions(tmp_path: Path) -> None:
    """Overwriting replaces the content and keeps the old file's permission bits."""
    path = tmp_path / "report.json"
    path.write_text("old")
    path.chmod(0o640)
    write_atomically(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(tmp_path.iterdir()) == [path]


def test_failed_replace_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the final rename fails, the old file is untouched and the temp file is removed."""
    path = tmp_path / "report.json"
    path.write_text("old")

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OutputError) as caught:
        write_atomically(path, "new")
    assert str(caught.value) == f"{path}: cannot write the report: Invalid cross-device link"
    assert path.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_failed_write_of_data_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while writing the data leaves the old file whole and no temp file."""
    path = tmp_path / "report.json"
    path.write_text("old")

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_interrupt_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of writing propagates, leaving the old file and no temp file."""
    path = tmp_path / "report.json"
    path.write_text("old")

    def interrupted(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_into_missing_directory_is_an_output_error(tmp_path: Path) -> None:
    """Writing where the directory has gone is an OutputError naming the path."""
    path = tmp_path / "gone" / "report.json"
    with pytest.raises(OutputError) as caught:
        write_atomically(path, "{}")
    assert str(caught.value) == f"{path}: cannot write the report: No such file or directory"
    assert list(tmp_path.iterdir()) == []
