"""Models from a user's Python file: `--model path/to/model.py`.

A model file defines `forward(X, W)` and `backward(...)`:

- scalar case: `forward` returns a number and `backward(X, W)` returns (dF/dX, dF/dW);
- vector case: `forward` returns an array of any shape and `backward(X, W, grad_output)` returns
  the vector-Jacobian product (dX, dW) for that cotangent. The check contracts the output with
  seeded random cotangents v (`ContractedModel`): the gradient of <forward(X, W), v> must be
  backward(X, W, v).

Optional module-level `name` and `formula` strings label the report. Whatever the user's code does
wrong (fails to import, raises, returns the wrong type or shape, or a non-finite number at the
given X, W) becomes a one-line `UserCodeError` that names the file and, where the user's code
raised, the innermost line of it.

Pure numpy and stdlib: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import inspect
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.models import Array, ContractedModel, Model

if TYPE_CHECKING:
    from typing_extensions import Buffer

UserFunction = Callable[..., object]

# The user's exception message is quoted in our one-line error; a repr of a big array is not.
_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class ModelFile:
    """A loaded model file: the user's functions and labels, not yet bound to any X and W."""

    path: Path
    """Absolute; also the filename of every code object compiled from the file."""
    name: str
    formula: str
    forward: UserFunction
    backward: UserFunction


@dataclass(frozen=True)
class FileModel:
    """A scalar model file: f(X, W) = forward(X, W), with gradient backward(X, W)."""

    name: str
    formula: str
    model_file: ModelFile

    @property
    def complex_analytic(self) -> bool:
        # Nobody knows whether the user's code is holomorphic: no complex-step for it.
        return False

    def value(self, X: Array, W: Array) -> float | complex:
        # No finiteness check: a NaN at a perturbed input is for the numerics to report.
        out = _forward(self.model_file, X, W, shape=())
        return complex(out) if np.iscomplexobj(out) else float(out)

    def gradient(self, X: Array, W: Array) -> tuple[Array, Array]:
        return _backward(self.model_file, X, W)


# --- loading ---------------------------------------------------------------------------------


def load_model_file(path: Path) -> ModelFile:
    """Import a model file and pick out forward, backward, name and formula.

    The file runs as a module with a fresh, unique name (so `if __name__ == "__main__":` blocks do
    not run), with its directory on sys.path while it runs so that it can import modules next to
    it; neither the module nor the directory stays registered afterwards.
    """
    path = Path(path)
    if not path.exists():
        raise UserCodeError(f"model file not found: {path}")
    if path.is_dir():
        raise UserCodeError(f"model file {path} is a directory, not a .py file")
    if path.suffix != ".py":
        raise UserCodeError(f"model file {path} is not a .py file")
    path = path.resolve()
    module = _import(path)

    problems = []
    functions: dict[str, UserFunction] = {}
    for attribute in ("forward", "backward"):
        function = getattr(module, attribute, None)
        if function is None:
            problems.append(f"no {attribute}")
        elif not callable(function):
            problems.append(f"{attribute} is not callable (it is {_describe(function)})")
        else:
            functions[attribute] = function
    if problems:
        raise UserCodeError(
            f"{path.name}: {' and '.join(problems)}; a model file defines forward(X, W) and "
            "backward(X, W), or backward(X, W, grad_output) when forward returns an array"
        )
    return ModelFile(
        path=path,
        name=_label(module, "name", default=path.stem, path=path),
        formula=_label(module, "formula", default=f"forward(X, W) from {path.name}", path=path),
        forward=functions["forward"],
        backward=functions["backward"],
    )


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
            raise _raised(path, "loading the file", error) from error
        raise UserCodeError(
            f"{path.name}:{error.lineno}: {type(error).__name__}: {_one_line(error.msg)}"
        ) from error
    except (Exception, SystemExit) as error:
        raise _raised(path, "loading the file", error) from error
    finally:
        sys.modules.pop(module_name, None)
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)
    return module


def _label(module: ModuleType, attribute: str, *, default: str, path: Path) -> str:
    value = getattr(module, attribute, None)
    if value is None:
        return default
    if not isinstance(value, str):
        raise UserCodeError(f"{path.name}: {attribute} must be a string; got {_describe(value)}")
    return value


# --- binding to X and W ----------------------------------------------------------------------


def bind_models(
    model_file: ModelFile,
    X: Array,
    W: Array,
    *,
    cotangents: int = 2,
    seed: int = 0,
) -> list[Model]:
    """The scalar models to check for this file at X, W.

    Calls forward(X, W) once. A scalar output gives one model, forward itself. An array output
    gives `cotangents` models <forward(X, W), v>, each with its own standard normal v in the
    output's shape, drawn from np.random.default_rng(seed); their gradient is backward(X, W, v).
    """
    if cotangents < 1:
        raise ValueError(f"cotangents must be at least 1; got {cotangents}")
    file = model_file.path.name
    output = _forward(model_file, X, W, shape=None)
    if np.iscomplexobj(output) and not (np.iscomplexobj(X) or np.iscomplexobj(W)):
        raise UserCodeError(f"{file}: forward returned complex values for real X and W")
    bad = ~np.isfinite(output)
    if bad.any():
        if output.ndim == 0:
            where = f"forward(X, W) = {output.item()}"
        else:
            index = _first(bad)
            where = f"forward(X, W)[{_format_index(index)}] = {output[index].item()}"
        raise UserCodeError(f"{file}: {where} at the given X, W; it must be finite there")

    if output.ndim == 0:
        _check_backward_arity(model_file, n_args=2, because="forward returns a scalar")
        return [FileModel(name=model_file.name, formula=model_file.formula, model_file=model_file)]

    shape = output.shape
    _check_backward_arity(
        model_file, n_args=3, because=f"forward returns an array of shape {shape}"
    )
    dtype: np.dtype[Any] = X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)
    rng = np.random.default_rng(seed)
    models: list[Model] = []
    for i in range(cotangents):
        # Drawn in float64 and cast, so a seed gives the same directions whatever X's dtype.
        v = np.asarray(rng.standard_normal(shape), dtype=dtype)
        v.flags.writeable = False
        models.append(_contracted(model_file, shape, v, number=i + 1, of=cotangents, seed=seed))
    return models


def _contracted(
    model_file: ModelFile,
    shape: tuple[int, ...],
    v: Array,
    *,
    number: int,
    of: int,
    seed: int,
) -> ContractedModel:
    def forward(X: Array, W: Array) -> Array:
        return _forward(model_file, X, W, shape=shape)

    def vjp(X: Array, W: Array, cotangent: Array) -> tuple[Array, Array]:
        return _backward(model_file, X, W, cotangent)

    return ContractedModel(
        name=f"{model_file.name}/v{number}",
        formula=f"<{model_file.formula}, v>, v ~ N(0, 1), seed {seed}, cotangent {number} of {of}",
        forward=forward,
        vjp=vjp,
        cotangent=v,
    )


def _check_backward_arity(model_file: ModelFile, *, n_args: int, because: str) -> None:
    """Say up front that backward takes the wrong arguments, rather than a TypeError per call."""
    try:
        signature = inspect.signature(model_file.backward)
    except (TypeError, ValueError):  # some builtins have none: let the call tell
        return
    try:
        signature.bind(*range(n_args))
    except TypeError:
        called = "backward(X, W)" if n_args == 2 else "backward(X, W, grad_output)"
        raise UserCodeError(
            f"{model_file.path.name}: {because}, so backward is called as {called}; "
            f"but its signature is backward{signature}"
        ) from None


# --- calling the user's code -----------------------------------------------------------------


def _call(model_file: ModelFile, role: str, function: UserFunction, *args: Array) -> object:
    # Copies: the user's code may scale grad_output or edit X in place; that must not reach the
    # check's arrays. errstate: every non-finite result is reported by us or by the numerics.
    copies = [np.array(a) for a in args]
    try:
        with np.errstate(all="ignore"):
            return function(*copies)
    except (Exception, SystemExit) as error:
        raise _raised(model_file.path, role, error) from error


def _forward(
    model_file: ModelFile, X: Array, W: Array, *, shape: tuple[int, ...] | None
) -> NDArray[Any]:
    """forward(X, W) as a numeric array (0-d for a scalar); NaN and Inf pass through."""
    file = model_file.path.name
    result = _call(model_file, "forward", model_file.forward, X, W)
    out = _numeric(result)
    if out is None:
        raise UserCodeError(
            f"{file}: forward must return a number or an array; got {_describe(result)}"
        )
    if shape is not None and out.shape != shape:
        raise UserCodeError(
            f"{file}: forward returned shape {out.shape} here but shape {shape} at the given "
            "X, W; its output shape must not depend on the values of X and W"
        )
    return out


def _backward(model_file: ModelFile, X: Array, W: Array, *cotangent: Array) -> tuple[Array, Array]:
    file = model_file.path.name
    result = _call(model_file, "backward", model_file.backward, X, W, *cotangent)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise UserCodeError(
            f"{file}: backward must return (dX, dW), a pair of arrays; got {_describe(result)}"
        )
    return (
        _gradient_part(file, "dX", result[0], like=X, like_name="X"),
        _gradient_part(file, "dW", result[1], like=W, like_name="W"),
    )


def _gradient_part(file: str, label: str, value: object, *, like: Array, like_name: str) -> Array:
    part = _numeric(value)
    if part is None:
        raise UserCodeError(f"{file}: backward returned a {label} that is {_describe(value)}")
    if part.shape != like.shape:
        raise UserCodeError(
            f"{file}: backward returned {label} of shape {part.shape}; "
            f"expected {like.shape}, the shape of {like_name}"
        )
    if np.iscomplexobj(part) and not np.iscomplexobj(like):
        raise UserCodeError(f"{file}: backward returned a complex {label} for a real {like_name}")
    bad = ~np.isfinite(part)
    if bad.any():
        index = _first(bad)
        raise UserCodeError(
            f"{file}: backward returned a non-finite "
            f"{label}[{_format_index(index)}] = {part[index].item()}"
        )
    dtype: np.dtype[Any] = like.dtype if like.dtype.kind in "fc" else np.dtype(np.float64)
    return np.asarray(part, dtype=dtype)


def _numeric(value: object) -> NDArray[Any] | None:
    """`value` as an array of numbers, or None when it is not one (None, str, bool, object...)."""
    if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    try:
        array = np.asarray(value)
    except Exception:  # ragged lists, tensors that require grad, ...
        return None
    return array if array.dtype.kind in "iufc" else None


# --- messages --------------------------------------------------------------------------------


def _raised(path: Path, role: str, error: BaseException) -> UserCodeError:
    """`model.py:12: forward raised ValueError: boom`, the line being the user's innermost."""
    line = _innermost_line(error, str(path))
    where = path.name if line is None else f"{path.name}:{line}"
    message = _one_line(str(error))
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


def _one_line(text: str) -> str:
    joined = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if len(joined) > _MESSAGE_LIMIT:
        joined = joined[: _MESSAGE_LIMIT - 3] + "..."
    return joined


def _describe(value: object) -> str:
    """`float`, `NoneType`, `a tuple of 3`, `an array of shape (2,) and dtype <U1`."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def _first(mask: NDArray[np.bool_]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _format_index(index: tuple[int, ...]) -> str:
    return ", ".join(str(i) for i in index)
