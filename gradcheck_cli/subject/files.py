"""Importing a model file: `--model path/to/model.py` or `--model layers.py:NAME`.

The file runs as a module with a fresh, unique name (so `if __name__ == "__main__":` blocks do
not run), with its directory on sys.path while it runs so that it can import modules next to
it; neither the module nor the directory stays registered afterwards, and no __pycache__ is
written next to the user's file. A file that cannot be read or imported is a one-line
`UserCodeError` naming it (and the line, where its code raised).

Nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.machinery
import importlib.util
import os
import stat
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.subject.conventions import ModelFile, UserFunction, model_file_from_module
from gradcheck_cli.subject.messages import one_line, user_code_error

if TYPE_CHECKING:
    from typing_extensions import Buffer


def split_model_spec(spec: str) -> tuple[str, str | None]:
    """`layers.py:affine` -> ("layers.py", "affine"); `model.py` -> ("model.py", None)."""
    head, colon, tail = spec.rpartition(":")
    if colon and head.endswith(".py") and tail.isidentifier():
        return head, tail
    return spec, None


def load_model_file(
    path: Path, entry: str | None = None, *, device: str | None = None
) -> ModelFile:
    """Import a model file and pick out its functions and labels.

    `entry` names a layer, a class, a derivative or a loss function of the file (what follows
    the colon in `--model layers.py:NAME`); see `conventions`. `device`: a PyTorch or JAX
    model's (--device).
    """
    path, module = import_model_file(path)
    return model_file_from_module(module, path, entry, device=device)


def import_model_file(path: Path) -> tuple[Path, ModuleType]:
    """Import a model file once: its resolved path and the module (as `load_model_file` does,
    for a caller that takes several layers out of one file)."""
    path = Path(path)
    _check_model_path(path)
    if path.suffix != ".py":
        raise UserCodeError(f"model file {path} is not a .py file")
    path = path.resolve()
    return path, _import(path)


def load_function(path: Path, names: Sequence[str], *, option: str) -> tuple[str, UserFunction]:
    """The first of `names` a Python file defines as a function (or any callable), and its name:
    a reference forward (`--reference-model FILE.py[:NAME]`)."""
    path = Path(path)
    _check_model_path(path)
    if path.suffix != ".py":
        raise UserCodeError(f"{option} {path}: not a .py file")
    module = _import(path.resolve())
    for name in names:
        value = getattr(module, name, None)
        if callable(value) and not isinstance(value, type):
            return name, value
    looked = " or ".join(dict.fromkeys(names))
    raise UserCodeError(
        f"{option} {path.name}: no function {looked} in the file; name the reference forward "
        f"with {option} {path.name}:NAME"
    )


def _check_model_path(path: Path) -> None:
    """Refuse, by what is wrong with it, a model path that is not a readable regular file."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise UserCodeError(
                f"model file {path} is a broken symlink: its target {os.readlink(path)} does not "
                "exist"
            ) from None
        raise UserCodeError(f"model file not found: {path}") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserCodeError(
                f"model file {path} is a symlink loop, it never reaches a file"
            ) from None
        raise UserCodeError(f"model file {path}: cannot open: {error.strerror or error}") from None
    if stat.S_ISDIR(status.st_mode):
        raise UserCodeError(f"model file {path} is a directory, not a .py file")
    if not stat.S_ISREG(status.st_mode):  # a FIFO would block the import, /dev/zero never end
        raise UserCodeError(f"model file {path} is not a regular file")


class _NoBytecodeLoader(importlib.machinery.SourceFileLoader):
    """Imports a .py file without writing a __pycache__ directory next to the user's file."""

    def set_data(self, path: str, data: Buffer, *, _mode: int = 0o666) -> None:
        return None


def _import(path: Path) -> ModuleType:
    module_name = f"_gradcheck_model_{uuid.uuid4().hex}"
    location = str(path)
    loader = _NoBytecodeLoader(module_name, location)
    spec = importlib.util.spec_from_file_location(module_name, location, loader=loader)
    if spec is None:  # pragma: no cover - cannot happen with an explicit loader
        raise UserCodeError(f"{path.name}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    directory = str(path.parent)
    # Registered only while the file runs: dataclasses and typing look their module up there.
    sys.modules[module_name] = module
    sys.path.insert(0, directory)
    try:
        loader.exec_module(module)
    except SyntaxError as error:
        if error.filename != location:  # raised by something the file imported or compiled
            raise user_code_error(path, "loading the file", error) from error
        raise UserCodeError(
            f"{path.name}:{error.lineno}: {type(error).__name__}: {one_line(error.msg)}"
        ) from error
    except (Exception, SystemExit) as error:
        raise user_code_error(path, "loading the file", error) from error
    finally:
        sys.modules.pop(module_name, None)
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)
    return module
