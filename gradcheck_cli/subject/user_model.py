"""Models from a user's Python file: `--model path/to/model.py` or `--model layers.py:NAME`.

Three conventions, all over named inputs (the parameter names of the forward function):

- plain (`model.py`): `forward(x, w, b, ...)` and `backward(...)` taking the same arguments.
  A scalar forward's backward returns the gradients; an array forward's backward takes
  `grad_output` after them and returns the vector-Jacobian product for it. The check contracts
  the output with seeded random cotangents v (`ContractedModel`).
- layer (`layers.py:affine`, CS231n style): `affine_forward(x, w, b) -> (out, cache)` and
  `affine_backward(dout, cache) -> (dx, dw, db)`. Several outputs are allowed
  (`(next_h, next_c, cache)` with `backward(dnext_h, dnext_c, cache)`); a scalar single output
  (a loss) gets dout = 1.0.
- loss (`layers.py:softmax_loss`, when there is no `softmax_loss_forward`): one function that
  returns `(loss, gradients)`, as CS231n's loss functions do.

Gradients come back as a tuple in forward's parameter order (one per input; or one per floating
input), as a dict by name, or as a single array when one input is floating; `None` (or a
missing key) for an input the backward gives no gradient for: that input is not checked.

Parameters without a default are inputs. A parameter with a default is an input when an array
is given for it, and otherwise a parameter passed through unchanged (`conv_param`, `bn_param`):
from `--param NAME=JSON`, the file's `example_inputs()` (a dict of arrays and parameters used
for whatever the command line does not give) or its default. Integer and boolean arrays
(labels, masks) are constants, never perturbed.

Optional module-level `name` and `formula` strings label the report; `complex_safe = True`
allows complex-step; `hvp(...)` and `jvp(...)` are second-order and forward-mode derivatives
to check. Whatever the user's code does wrong (fails to import, raises, returns the wrong type
or shape, or a non-finite number at the given inputs) becomes a one-line `UserCodeError` that
names the file and, where the user's code raised, the innermost line of it.

Pure numpy and stdlib: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import importlib.machinery
import importlib.util
import inspect
import numbers
import os
import stat
import sys
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.numerics.models import Array, ContractedModel, Gradients, Inputs, Model
from gradcheck_cli.numerics.schemes import SCHEMES, Precision, default_steps
from gradcheck_cli.report import OutputShape

if TYPE_CHECKING:
    from typing_extensions import Buffer

UserFunction = Callable[..., object]

# The user's exception message is quoted in our one-line error; a repr of a big array is not.
_MESSAGE_LIMIT = 300


@dataclass
class CallCounter:
    """How many times the user's forward ran: reports say what a check cost."""

    forward: int = 0


@dataclass(frozen=True)
class ModelFile:
    """A loaded model file: the user's functions and labels, not yet bound to any inputs."""

    path: Path
    """Absolute; also the filename of every code object compiled from the file (or <api>)."""
    name: str
    formula: str
    forward: UserFunction
    backward: UserFunction | None
    """None for the loss convention, whose forward returns the gradients too."""
    convention: str = "plain"
    """plain, layer or loss (see the module docstring)."""
    example_inputs: UserFunction | None = None
    complex_safe: bool = False
    hvp: UserFunction | None = None
    jvp: UserFunction | None = None
    counter: CallCounter = field(default_factory=CallCounter, compare=False)
    from_file: bool = False
    """Loaded by load_model_file (a worker imports the file again), not handed over in Python
    (a worker unpickles the functions)."""

    @property
    def label(self) -> str:
        """How messages name the file: `model.py`, or `layers.py:affine`."""
        entry = "" if self.convention == "plain" else f":{self.name}"
        return f"{self.path.name}{entry}"


# --- loading ---------------------------------------------------------------------------------


def split_model_spec(spec: str) -> tuple[str, str | None]:
    """`layers.py:affine` -> ("layers.py", "affine"); `model.py` -> ("model.py", None)."""
    head, colon, tail = spec.rpartition(":")
    if colon and head.endswith(".py") and tail.isidentifier():
        return head, tail
    return spec, None


def load_model_file(path: Path, entry: str | None = None) -> ModelFile:
    """Import a model file and pick out its functions and labels.

    The file runs as a module with a fresh, unique name (so `if __name__ == "__main__":` blocks do
    not run), with its directory on sys.path while it runs so that it can import modules next to
    it; neither the module nor the directory stays registered afterwards. `entry` names a layer
    (`entry_forward`/`entry_backward`) or a loss function (`entry`, returning (loss, grads)).
    """
    path = Path(path)
    _check_model_path(path)
    if path.suffix != ".py":
        raise UserCodeError(f"model file {path} is not a .py file")
    path = path.resolve()
    module = _import(path)
    complex_safe = getattr(module, "complex_safe", False)
    if not isinstance(complex_safe, bool):
        raise UserCodeError(
            f"{path.name}: complex_safe must be True or False; got {_describe(complex_safe)}"
        )
    common: dict[str, Any] = {
        "path": path,
        "example_inputs": _optional_function(module, "example_inputs", path),
        "complex_safe": complex_safe,
        "hvp": _optional_function(module, "hvp", path),
        "jvp": _optional_function(module, "jvp", path),
    }
    if entry is not None:
        return _load_entry(module, entry, common)

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
        layers = _layer_names(module)
        hint = f"; or name a layer of this file: {', '.join(layers)}" if layers else ""
        raise UserCodeError(
            f"{path.name}: {' and '.join(problems)}; a model file defines forward(X, W) and "
            "backward(X, W), or backward(X, W, grad_output) when forward returns an array"
            f"{hint} (--model {path.name}:NAME)"
        )
    return ModelFile(
        from_file=True,
        name=_label(module, "name", default=path.stem, path=path),
        formula=_label(module, "formula", default=f"forward(...) from {path.name}", path=path),
        forward=functions["forward"],
        backward=functions["backward"],
        **common,
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


def _load_entry(module: ModuleType, entry: str, common: dict[str, Any]) -> ModelFile:
    path: Path = common["path"]
    # A file of several layers gives each its own examples (their x, w, b differ in shape):
    # NAME_example_inputs() wins over the file's example_inputs().
    # Likewise NAME_hvp and NAME_jvp over the file's hvp and jvp.
    for role in ("example_inputs", "hvp", "jvp"):
        own = _optional_function(module, f"{entry}_{role}", path)
        if own is not None:
            common = {**common, role: own}
    forward = getattr(module, f"{entry}_forward", None)
    backward = getattr(module, f"{entry}_backward", None)
    if callable(forward) and callable(backward):
        return ModelFile(
            from_file=True,
            name=entry,
            formula=f"{entry}_forward(...) from {path.name}",
            forward=forward,
            backward=backward,
            convention="layer",
            **common,
        )
    loss = getattr(module, entry, None)
    if callable(loss) and forward is None:
        return ModelFile(
            from_file=True,
            name=entry,
            formula=f"{entry}(...)[0] from {path.name}",
            forward=loss,
            backward=None,
            convention="loss",
            **common,
        )
    layers = _layer_names(module)
    known = f"the layers it defines are {', '.join(layers)}" if layers else "it defines none"
    missing = f"{entry}_forward" if not callable(forward) else f"{entry}_backward"
    raise UserCodeError(
        f"{path.name}: no {missing}; --model {path.name}:{entry} takes {entry}_forward and "
        f"{entry}_backward (a layer) or {entry} returning (loss, gradients); {known}"
    )


def _layer_names(module: ModuleType) -> list[str]:
    """NAME for every callable NAME_forward with a callable NAME_backward."""
    names = []
    for attribute, value in vars(module).items():
        if attribute.endswith("_forward") and callable(value):
            stem = attribute.removesuffix("_forward")
            if callable(getattr(module, f"{stem}_backward", None)):
                names.append(stem)
    return names


def _optional_function(module: ModuleType, attribute: str, path: Path) -> UserFunction | None:
    value = getattr(module, attribute, None)
    if value is not None and not callable(value):
        raise UserCodeError(f"{path.name}: {attribute} must be a function; got {_describe(value)}")
    return value


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


def model_from_functions(
    forward: UserFunction,
    backward: UserFunction | None,
    *,
    name: str | None = None,
    formula: str | None = None,
    convention: str = "plain",
    complex_safe: bool = False,
    hvp: UserFunction | None = None,
    jvp: UserFunction | None = None,
) -> ModelFile:
    """A ModelFile for functions handed over in Python (the API): any callable will do."""
    try:
        source = inspect.getsourcefile(forward)
    except TypeError:  # a functools.partial, a callable object, a builtin
        source = None
    target = getattr(forward, "func", forward)  # functools.partial
    label = name or str(getattr(target, "__qualname__", type(target).__name__))
    return ModelFile(
        path=Path(source).resolve() if source else Path("<api>"),
        name=label,
        formula=formula or f"{label}(...)",
        forward=forward,
        backward=backward,
        convention=convention,
        complex_safe=complex_safe,
        hvp=hvp,
        jvp=jvp,
    )


# --- parameters and inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class Supplied:
    """An array given for an input from outside the file (the command line, the API)."""

    array: NDArray[Any]
    source: str
    flatten_single_line: bool = False
    """A 1-row or 1-column CSV given with --input may feed a 1-D input."""


SEED_NAMES = ("X", "W")


def signature_of(model_file: ModelFile) -> inspect.Signature:
    try:
        return inspect.signature(model_file.forward)
    except (TypeError, ValueError) as error:
        raise UserCodeError(
            f"{model_file.label}: cannot read the parameters of forward ({error})"
        ) from None


def resolve_arguments(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    params: Mapping[str, object],
    *,
    dtype: str,
    fallback: Mapping[str, Supplied] | None = None,
    copy: bool = True,
) -> tuple[dict[str, Array], dict[str, str], dict[str, object]]:
    """(inputs, their sources, parameters) for forward, in its parameter order.

    Each parameter takes, first found: an array from `supplied` (--input, --inputs, --x, --w),
    a value from `params` (--param), from the file's example_inputs(), from `fallback` (the
    seed's X and W, for files written for the two-matrix tool) or its default. Arrays and
    numbers are inputs; anything else is a parameter. A parameter without a default that
    nobody gives is an error naming it and the option that gives it.
    """
    signature = signature_of(model_file)
    label = model_file.label
    examples = _example_inputs(model_file)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (*positional, inspect.Parameter.KEYWORD_ONLY)
    ]
    for option, given_names in (("--input", list(supplied)), ("--param", list(params))):
        unknown = [n for n in given_names if n not in names]
        if unknown:
            raise InputError(
                f"{option} {unknown[0]}: {label}'s forward has no parameter of that name; "
                f"its parameters are {', '.join(names) or 'none'}"
            )
    inputs: dict[str, Array] = {}
    sources: dict[str, str] = {}
    passed: dict[str, object] = {}
    for parameter in signature.parameters.values():
        if parameter.kind not in (*positional, inspect.Parameter.KEYWORD_ONLY):
            continue  # *args, **kwargs: nothing to give
        name = parameter.name
        example = examples.get(name)
        if name in supplied:
            given = supplied[name]
            inputs[name] = _as_input(
                given.array, dtype, like=example, flatten=given.flatten_single_line, copy=copy
            )
            sources[name] = given.source
        elif name in params:
            passed[name] = params[name]  # --param says: not an input, whatever its value
        elif name in examples:
            if _array_like(example):
                inputs[name] = _as_input(np.asarray(example), dtype, like=None)
                sources[name] = "example_inputs()"
            else:
                passed[name] = example
        elif fallback is not None and name in fallback:
            inputs[name] = _as_input(fallback[name].array, dtype, like=None)
            sources[name] = fallback[name].source
        elif parameter.default is inspect.Parameter.empty:
            raise InputError(
                f"{label}: no value for {name!r}, a parameter of forward without a default: "
                f"give an array with --input {name}=PATH (or --inputs FILE.npz), anything else "
                f"with --param {name}=JSON, or define example_inputs() in the model file"
            )
    if not inputs:
        raise InputError(f"{label}: forward takes no array inputs: nothing to check")
    for name, array in inputs.items():
        bad = ~np.isfinite(array) if array.dtype.kind == "f" else None
        if bad is not None and bad.any():
            where = _format_index(_first(bad)) if array.ndim else ""
            raise InputError(
                f"{label}: input {name} from {sources[name]} holds {array[_first(bad)]} at "
                f"[{where}]; the inputs must be finite"
            )
    return inputs, sources, passed


def _example_inputs(model_file: ModelFile) -> dict[str, object]:
    if model_file.example_inputs is None:
        return {}
    role = getattr(model_file.example_inputs, "__name__", "example_inputs")
    result = _call(model_file, role, model_file.example_inputs, (), {})
    if not isinstance(result, Mapping) or not all(isinstance(k, str) for k in result):
        raise UserCodeError(
            f"{model_file.label}: example_inputs() must return a dict of arrays and parameters "
            f"by name; got {_describe(result)}"
        )
    return dict(result)


def _array_like(value: object) -> bool:
    """Arrays and plain numbers are inputs; dicts, strings, None, lists are parameters."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biufc"
    return isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, complex)


def _as_input(
    array: NDArray[Any], dtype: str, *, like: object, flatten: bool = False, copy: bool = True
) -> Array:
    """Floating arrays in the check's dtype; integer and boolean ones kept (constants). An
    array shaped like a 2-D CSV line becomes 1-D where the example is 1-D (or there is none);
    integral floats become integers where the example is an integer array."""
    value = np.asarray(array)
    example = np.asarray(like) if isinstance(like, (np.ndarray, numbers.Number)) else None
    one_line = flatten and value.ndim == 2 and 1 in value.shape
    if one_line and (example is None or example.ndim == 1):
        value = value.reshape(-1)
    labels = example is not None and example.dtype.kind in "iu" and value.dtype.kind == "f"
    if labels and np.all(np.isfinite(value)) and np.all(value == np.round(value)):
        return value.astype(np.int64)
    if value.dtype.kind in "biu":
        return value
    # The check's own C-ordered copy: it moves entries in place (and puts them back).
    if copy:
        return np.array(value, dtype=np.dtype(dtype), order="C", copy=True)
    return np.asarray(value, dtype=np.dtype(dtype), order="C")


# --- calling the user's code -----------------------------------------------------------------


class Caller:
    """Calls the user's functions with named inputs and parameters, as cheaply as possible.

    Arrays go in as read-only views of the check's own buffers, not copies: a forward call then
    costs the user's forward and nothing that grows with the inputs. User code that writes into
    its arguments (`x *= 2`, `dout[...] = 0`) raises at once on a read-only view; from then on
    every call gets fresh copies, so the code runs as written and our arrays stay untouched.
    """

    def __init__(
        self, model_file: ModelFile, order: Sequence[str], params: Mapping[str, object]
    ) -> None:
        self.model_file = model_file
        self.params = dict(params)
        signature = signature_of(model_file)
        keyword_only = inspect.Parameter.KEYWORD_ONLY
        self.positional = [
            p.name
            for p in signature.parameters.values()
            if p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        self.keyword = [p.name for p in signature.parameters.values() if p.kind == keyword_only]
        self.defaults = {
            p.name: p.default
            for p in signature.parameters.values()
            if p.default is not inspect.Parameter.empty
        }
        self.order = list(order)
        self.copying = False
        # torch.as_tensor warns about the read-only views we pass (our doing, not the user's):
        # silenced for that message alone.
        warnings.filterwarnings(
            "ignore", message="The given NumPy array is not writable", category=UserWarning
        )
        self._cached: tuple[tuple[int, ...], list[object], dict[str, object]] | None = None

    def arguments(
        self, inputs: Inputs, extra: Sequence[object] = ()
    ) -> tuple[list[object], dict[str, object]]:
        """forward's positional and keyword arguments at `inputs`, then `extra` positionally."""
        values: dict[str, object] = {**self.params, **inputs}
        # Trailing positional parameters nobody gave keep their defaults (not passed at all),
        # so that `extra` (grad_output) follows the last one given.
        last = max((i for i, n in enumerate(self.positional) if n in values), default=-1)
        args = [values.get(n, self.defaults.get(n)) for n in self.positional[: last + 1]]
        kwargs = {n: values[n] for n in self.keyword if n in values}
        return [*args, *extra], kwargs

    def call(
        self,
        role: str,
        function: UserFunction,
        args: Sequence[object],
        kwargs: Mapping[str, object],
        *,
        quiet: bool = False,
    ) -> object:
        """function(*args, **kwargs) with read-only views (copies once the user's code has
        written into one). `quiet`: the caller has numpy's floating-point errors silenced."""
        if not self.copying:
            try:
                views = [_read_only(a) for a in args]
                return _call(self.model_file, role, function, views, kwargs, quiet=quiet)
            except _WroteToInput:
                self.copying = True
        copies = [_copy(a) for a in args]
        try:
            return _call(self.model_file, role, function, copies, kwargs, quiet=quiet)
        except _WroteToInput as written:
            # Read-only even in copies: the user's own array, or a buffer only they hold.
            error = written.__cause__ or written
            raise _raised(self.model_file.path, role, error) from error

    def call_forward(self, inputs: Inputs, *, quiet: bool = False) -> object:
        """forward at `inputs`: the hot path of every finite difference. The checks move
        entries in place, so the same arrays come again and again: their read-only views are
        made once and reused (a view shows every change of its array)."""
        key = tuple(map(id, inputs.values()))
        cached = self._cached
        if cached is None or cached[0] != key or self.copying:
            args, kwargs = self.arguments(inputs)
            if self.copying:
                return self.call("forward", self.model_file.forward, args, kwargs, quiet=quiet)
            cached = self._cached = (key, [_read_only(a) for a in args], kwargs)
        try:
            return _call(
                self.model_file,
                "forward",
                self.model_file.forward,
                cached[1],
                cached[2],
                quiet=quiet,
            )
        except _WroteToInput:
            self.copying = True
            self._cached = None
            args, kwargs = self.arguments(inputs)
            return self.call("forward", self.model_file.forward, args, kwargs, quiet=quiet)


class _WroteToInput(Exception):
    """The user's code wrote into a read-only argument: call again with copies."""


def _read_only(value: object) -> object:
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    return value


def _copy(value: object) -> object:
    """A writable copy: arrays, and containers of them (a layer's cache of forward's views)."""
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True)
    if isinstance(value, (tuple, list, dict)):
        return copy.deepcopy(value)
    return value


def _call(
    model_file: ModelFile,
    role: str,
    function: UserFunction,
    args: Sequence[object],
    kwargs: Mapping[str, object],
    *,
    quiet: bool = False,
) -> object:
    # errstate: every non-finite result is reported by us or by the numerics.
    try:
        if quiet:
            return function(*args, **kwargs)
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)
    except ValueError as error:
        # Our read-only views, as an argument or inside one (a layer's cache holds forward's).
        if "read-only" in str(error):
            raise _WroteToInput from error
        raise _raised(model_file.path, role, error) from error
    except (Exception, SystemExit) as error:
        raise _raised(model_file.path, role, error) from error


# --- binding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker process binds the same model again (--jobs): picklable when the model
    file's path is known, or when the API's functions pickle (module-level functions)."""

    path: str | None
    entry: str | None
    model_file: ModelFile | None
    """The functions themselves, for the API (None for a file, which the worker imports)."""
    params: dict[str, object]
    dtype: str
    cotangents: int
    seed: int
    copying: bool = False
    """The model's code writes into its arguments: every call gets copies."""

    def __call__(self, inputs: Mapping[str, Array]) -> tuple[list[Model], CallCounter]:
        model_file = self.model_file
        if model_file is None:
            assert self.path is not None
            model_file = load_model_file(Path(self.path), self.entry)
        bound = bind(
            model_file,
            {name: Supplied(np.asarray(array), "worker") for name, array in inputs.items()},
            self.params,
            dtype=self.dtype,
            cotangents=self.cotangents,
            seed=self.seed,
            probes=False,
            copy_inputs=False,
            copying=self.copying,
        )
        return bound.models, model_file.counter


@dataclass(frozen=True)
class Bound:
    """A model file bound to its inputs: what a check needs."""

    model_file: ModelFile
    inputs: dict[str, Array]
    sources: dict[str, str]
    params: dict[str, object]
    models: list[Model]
    output_shape: OutputShape
    """None for a scalar forward; the output's shape; the shapes of several outputs."""
    precision: Precision
    recipe: ModelRecipe
    functions: _Functions
    """The user's functions over named inputs (for hvp and jvp checks)."""


@dataclass(frozen=True)
class Outputs:
    """What one forward call gave: its outputs as arrays, and a layer's cache."""

    arrays: tuple[NDArray[Any], ...]
    cache: object = None


class _Functions:
    """One model file's calling conventions over named inputs."""

    def __init__(self, model_file: ModelFile, caller: Caller, names: Sequence[str]) -> None:
        self.model_file = model_file
        self.caller = caller
        self.names = list(names)
        self.label = model_file.label

    def forward(self, inputs: Inputs, *, quiet: bool = False) -> Outputs:
        self.model_file.counter.forward += 1
        result = self.caller.call_forward(inputs, quiet=quiet)
        convention = self.model_file.convention
        if convention == "plain":
            return Outputs((self._numeric_output(result, "forward"),))
        role = "forward" if convention == "layer" else self.model_file.name
        if not isinstance(result, (tuple, list)) or len(result) < 2:
            shape = "(out, cache)" if convention == "layer" else "(loss, gradients)"
            raise UserCodeError(
                f"{self.label}: {role} must return {shape}; got {_describe(result)}"
            )
        if convention == "loss":
            return Outputs((self._numeric_output(result[0], role),), cache=result[1])
        return Outputs(tuple(self._numeric_output(r, role) for r in result[:-1]), cache=result[-1])

    def _numeric_output(self, value: object, role: str) -> NDArray[Any]:
        out = _numeric(value)
        if out is None:
            raise UserCodeError(
                f"{self.label}: {role} must return a number or an array; got {_describe(value)}"
            )
        return out

    def backward(
        self, inputs: Inputs, cotangents: Sequence[Array], at: Outputs | None = None
    ) -> Gradients:
        """The user's gradient (a VJP for array outputs) at `inputs`, checked and by name."""
        convention = self.model_file.convention
        if convention == "loss":
            outputs = at or self.forward(inputs)
            result = outputs.cache
            scale = float(np.asarray(cotangents[0])) if cotangents else 1.0
            return self._gradients(result, inputs, scale=scale)
        if convention == "layer":
            outputs = at or self.forward(inputs)
            douts = list(cotangents) if cotangents else [np.float64(1.0)]
            assert self.model_file.backward is not None
            result = self.caller.call(
                "backward", self.model_file.backward, [*douts, outputs.cache], {}
            )
            return self._gradients(result, inputs)
        args, kwargs = self.caller.arguments(inputs, extra=cotangents)
        assert self.model_file.backward is not None
        result = self.caller.call("backward", self.model_file.backward, args, kwargs)
        return self._gradients(result, inputs)

    def outputs(self, inputs: Inputs) -> list[NDArray[Any]]:
        """forward's outputs at `inputs` (one array, or several for a layer)."""
        return list(self.forward(inputs).arrays)

    def hvp(self, inputs: Inputs, tangents: Mapping[str, Array]) -> Gradients:
        """The file's hvp(<inputs>, tangents): H v, in backward's structure."""
        function = self._second("hvp")
        args, kwargs = self.caller.arguments(inputs, extra=(dict(tangents),))
        result = self.caller.call("hvp", function, args, kwargs)
        return self._gradients(result, inputs, role="hvp")

    def jvp(self, inputs: Inputs, tangents: Mapping[str, Array]) -> list[NDArray[Any]]:
        """The file's jvp(<inputs>, tangents): J v, shaped like forward's output(s)."""
        function = self._second("jvp")
        args, kwargs = self.caller.arguments(inputs, extra=(dict(tangents),))
        result = self.caller.call("jvp", function, args, kwargs)
        parts = result if isinstance(result, (tuple, list)) else [result]
        arrays = []
        for part in parts:
            array = _numeric(part)
            if array is None:
                raise UserCodeError(
                    f"{self.label}: jvp must return an array shaped like forward's output (or a "
                    f"tuple, one per output); got {_describe(result)}"
                )
            arrays.append(array)
        return arrays

    def _second(self, name: str) -> UserFunction:
        function = getattr(self.model_file, name)
        if function is None:
            example = f"{name}({', '.join(self.names)}, tangents)"
            raise InputError(
                f"{self.label}: no {name}; define {example} in the model file to check it"
            )
        return function  # type: ignore[no-any-return]

    def _gradients(
        self, result: object, inputs: Inputs, scale: float = 1.0, role: str | None = None
    ) -> Gradients:
        names = list(inputs)
        floating = [n for n in names if np.asarray(inputs[n]).dtype.kind in "fc"]
        if role is None:
            role = "backward" if self.model_file.convention != "loss" else self.model_file.name
        expected = _expected_gradients(names)
        parts: dict[str, object]
        if isinstance(result, Mapping):
            unknown = [k for k in result if k not in names]
            if unknown:
                raise UserCodeError(
                    f"{self.label}: {role} returned a gradient for {unknown[0]!r}, which is not "
                    f"an input; the inputs are {', '.join(names)}"
                )
            parts = dict(result)
        elif isinstance(result, (tuple, list)):
            if len(result) == len(names):
                parts = dict(zip(names, result, strict=True))
            elif len(result) == len(floating):
                parts = dict(zip(floating, result, strict=True))
            else:
                raise UserCodeError(
                    f"{self.label}: {role} must return {expected}; got {_describe(result)}"
                )
        elif len(floating) == 1 and _numeric(result) is not None:
            parts = {floating[0]: result}
        else:
            raise UserCodeError(
                f"{self.label}: {role} must return {expected}; got {_describe(result)}"
            )
        gradients: Gradients = {}
        for name in names:
            value = parts.get(name)
            like = inputs[name]
            if value is None or np.asarray(like).dtype.kind not in "fc":
                gradients[name] = None
                continue
            part = _gradient_part(
                self.label, f"d{name}", value, like=like, like_name=name, role=role
            )
            gradients[name] = part * scale if scale != 1.0 else part
        return gradients


def _expected_gradients(names: Sequence[str]) -> str:
    listed = ", ".join(f"d{n}" for n in names)
    if len(names) == 2:
        return f"({listed}), a pair of arrays"
    return f"({listed}): one gradient per input in forward's order, or a dict by name"


def bind(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    params: Mapping[str, object] | None = None,
    *,
    dtype: str = "float64",
    cotangents: int = 2,
    seed: int = 0,
    nondet_tol: float = 0.0,
    fallback: Mapping[str, Supplied] | None = None,
    probes: bool = True,
    copy_inputs: bool = True,
    copying: bool = False,
) -> Bound:
    """The scalar models to check for this file at its inputs.

    Calls forward once at the inputs. A scalar output gives one model, forward itself. Array
    outputs give `cotangents` models <forward(inputs), v>, each with its own standard normal v
    per output, drawn from np.random.default_rng(seed); their gradient is the user's VJP for v.
    With `probes`, then checks that forward and backward are deterministic (`nondet_tol`), and
    finds the precision forward computes in (a worker skips both: the parent did them). The
    inputs are the check's own copies (`copy_inputs`): it moves their entries in place.
    """
    if cotangents < 1:
        raise ValueError(f"cotangents must be at least 1; got {cotangents}")
    inputs, sources, passed = resolve_arguments(
        model_file, supplied, params or {}, dtype=dtype, fallback=fallback, copy=copy_inputs
    )
    caller = Caller(model_file, list(inputs), passed)
    caller.copying = copying
    functions = _Functions(model_file, caller, list(inputs))
    before = _digests(inputs)

    def again_with_copies() -> Bound:
        # The user's code wrote into its arguments through our read-only views (np.add.at,
        # numba and C code ignore the flag): start over with fresh inputs and copies per call.
        return bind(
            model_file,
            supplied,
            params,
            dtype=dtype,
            cotangents=cotangents,
            seed=seed,
            nondet_tol=nondet_tol,
            fallback=fallback,
            probes=probes,
            copy_inputs=copy_inputs,
            copying=True,
        )

    outputs = functions.forward(inputs)
    if not copying and _digests(inputs) != before:
        return again_with_copies()
    label = model_file.label
    where_given = _given(inputs)
    for output in outputs.arrays:
        if np.iscomplexobj(output) and not any(np.iscomplexobj(a) for a in inputs.values()):
            raise UserCodeError(f"{label}: forward returned complex values for real inputs")
        bad = ~np.isfinite(output)
        if bad.any():
            call = f"forward({', '.join(inputs)})"
            if output.ndim == 0:
                where = f"{call} = {output.item()}"
            else:
                index = _first(bad)
                where = f"{call}[{_format_index(index)}] = {output[index].item()}"
            raise UserCodeError(
                f"{label}: {where} at the given {where_given}; it must be finite there"
            )

    scalar = len(outputs.arrays) == 1 and outputs.arrays[0].ndim == 0
    if model_file.convention == "plain":
        n_args = len(caller.arguments(inputs)[0]) + (0 if scalar else 1)
        _check_backward_arity(
            model_file, list(inputs), n_args=n_args, scalar=scalar, shape=outputs.arrays[0].shape
        )
    shapes = tuple(o.shape for o in outputs.arrays)
    working: np.dtype[Any] = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    models: list[Model] = []
    if scalar:
        models.append(
            FileModel(model_file.name, model_file.formula, functions, model_file.complex_safe)
        )
        output_shape: OutputShape = None
    else:
        for number in range(1, cotangents + 1):
            # Drawn in float64 and cast, so a seed gives the same directions whatever the dtype.
            vectors = []
            for shape in shapes:
                v = np.asarray(rng.standard_normal(shape), dtype=working)
                v.flags.writeable = False
                vectors.append(v)
            models.append(
                _contracted(functions, shapes, vectors, number=number, of=cotangents, seed=seed)
            )
        output_shape = shapes[0] if len(shapes) == 1 else shapes
    eps = None
    if probes:
        try:
            _check_deterministic(functions, inputs, outputs, models, nondet_tol)
        except UserCodeError:
            if not copying and _digests(inputs) != before:
                return again_with_copies()
            raise
        if not copying and _digests(inputs) != before:
            return again_with_copies()
        eps = _forward_precision(functions, inputs, outputs)
    from_file = model_file.from_file
    recipe = ModelRecipe(
        path=str(model_file.path) if from_file else None,
        entry=model_file.name if from_file and model_file.convention != "plain" else None,
        model_file=None if from_file else model_file,
        params=dict(params or {}),
        dtype=dtype,
        cotangents=cotangents,
        seed=seed,
        copying=caller.copying,
    )
    precision = Precision(eps=eps, noise=nondet_tol)
    return Bound(
        model_file, inputs, sources, passed, models, output_shape, precision, recipe, functions
    )


def _digests(inputs: Inputs) -> list[bytes]:
    """A fingerprint of every input's bytes: did the user's code write into one?"""
    return [hashlib.blake2b(np.ascontiguousarray(a).data).digest() for a in inputs.values()]


def _given(inputs: Inputs) -> str:
    return ", ".join(inputs) if len(inputs) <= 4 else "inputs"


def _check_deterministic(
    functions: _Functions,
    inputs: Inputs,
    first: Outputs,
    models: Sequence[Model],
    tolerance: float,
) -> None:
    """Two more forward calls and two backward calls at the same inputs must agree to within
    `tolerance` (0: bitwise), or no verdict could be trusted: a fresh dropout mask or an
    unseeded rng moves f by far more than any step's difference."""
    label = functions.label
    hint = (
        "a dropout layer left on, or an unseeded random number generator? Seed it, or allow "
        "the difference with --nondet-tol"
    )
    for _ in range(2):
        again = functions.forward(inputs)
        for a, b in zip(first.arrays, again.arrays, strict=True):
            if a.shape != b.shape:
                raise UserCodeError(
                    f"{label}: forward is not deterministic: two calls at the same inputs gave "
                    f"shapes {a.shape} and {b.shape}"
                )
            with np.errstate(all="ignore"):
                gap = float(np.max(np.abs(a - b), initial=0.0))
            if not gap <= tolerance:
                shown = f" ({a.item():.10g} and {b.item():.10g})" if a.ndim == 0 else ""
                raise UserCodeError(
                    f"{label}: forward is not deterministic: two calls at the same inputs "
                    f"differ by {gap:.3g}{shown}, more than --nondet-tol {tolerance:g}; {hint}"
                )
    model = models[0]
    one = model.gradient(inputs)
    moved: list[str] = []
    if tolerance == 0:
        # Bitwise: fingerprints suffice, and a second full gradient is never held.
        first_prints = {n: _digests({n: g}) for n, g in one.items() if g is not None}
        del one
        two = model.gradient(inputs)
        moved = [
            name
            for name, prints in first_prints.items()
            if (later := two.get(name)) is not None and _digests({name: later}) != prints
        ]
        if not moved:
            return
        # Only now hold two gradients at once, to say by how much they differ.
        one = model.gradient(inputs)
    else:
        two = model.gradient(inputs)
    for name, first_gradient in one.items():
        second_gradient = two.get(name)
        if first_gradient is None or second_gradient is None:
            continue
        with np.errstate(all="ignore"):
            difference = np.asarray(first_gradient) - np.asarray(second_gradient)
            gap = float(np.max(np.abs(difference), initial=0.0))
        if not gap <= tolerance:
            raise UserCodeError(
                f"{label}: backward is not deterministic: two calls at the same inputs give "
                f"d{name} differing by {gap:.3g}, more than --nondet-tol {tolerance:g}; {hint}"
            )
    if moved:  # it moved between the first two calls, if not between these two
        raise UserCodeError(
            f"{label}: backward is not deterministic: two calls at the same inputs give "
            f"different d{moved[0]}, more than --nondet-tol 0; {hint}"
        )


LOW_PRECISIONS = (np.float16, np.float32)


def _forward_precision(functions: _Functions, inputs: Inputs, outputs: Outputs) -> float | None:
    """The eps of the precision forward computes in, when coarser than the inputs'.

    An output of dtype float32 says so itself; a Python float or a float64 array computed in
    float32 (`float(np.sum(x.astype(np.float32)))`) holds only float32 values. Those are told
    from float64 results by the values at the inputs and at two points a float64 step away:
    a float64 computation gives values that float32 cannot hold, except with probability
    about 2^-29 each.
    """
    floats = [np.asarray(a) for a in inputs.values() if np.asarray(a).dtype.kind == "f"]
    finest = min((float(np.finfo(a.dtype).eps) for a in floats), default=float(np.finfo(float).eps))
    declared = [float(np.finfo(o.dtype).eps) for o in outputs.arrays if o.dtype.kind == "f"]
    if declared and max(declared) > finest:
        return max(declared)
    wide = [o.reshape(-1) for o in outputs.arrays if o.dtype == np.float64]
    if not wide:
        return None
    samples = [np.concatenate(wide)]
    central = SCHEMES["central"]
    for name, array in inputs.items():
        if len(samples) >= 3:
            break
        if np.asarray(array).dtype.kind != "f" or np.asarray(array).size == 0:
            continue
        # The entry is moved in place (the check's own array; no copy of a big input) and put
        # back exactly. A step that no float32 number holds (not a power of two): a float64
        # forward then gives values float32 cannot hold, even at whole-number inputs.
        work = np.asarray(array)
        flat = work.reshape(-1) if work.flags.c_contiguous and work.flags.writeable else None
        if flat is None:
            work = np.array(array, copy=True)
            flat = work.reshape(-1)
        start = flat[0]
        try:
            flat[0] = start + default_steps(central, flat[:1])[0] * (1 + np.pi / 10)
            again = functions.forward({**inputs, name: work})
        finally:
            flat[0] = start
        samples.append(np.concatenate([o.reshape(-1) for o in again.arrays]).astype(np.float64))
    every = np.concatenate(samples)
    every = every[np.isfinite(every)]
    if every.size < 3 or np.all(every == np.round(every)):
        return None  # integers are exact in any precision: they tell nothing
    for low in LOW_PRECISIONS:
        with np.errstate(over="ignore"):
            held = every.astype(low).astype(np.float64) == every
        if np.all(held) and float(np.finfo(low).eps) > finest:
            return float(np.finfo(low).eps)
    return None


def _contracted(
    functions: _Functions,
    shapes: tuple[tuple[int, ...], ...],
    vectors: Sequence[Array],
    *,
    number: int,
    of: int,
    seed: int,
) -> ContractedModel:
    label = functions.label

    def contracted(inputs: Inputs) -> Array:
        outputs = functions.forward(inputs, quiet=True).arrays
        for out, shape in zip(outputs, shapes, strict=True):
            if out.shape != shape:
                names = " and ".join(inputs) if len(inputs) <= 4 else "its inputs"
                raise UserCodeError(
                    f"{label}: forward returned shape {out.shape} here but shape {shape} at the "
                    f"given {_given(inputs)}; its output shape must not depend on the values of "
                    f"{names}"
                )
        # One contraction over every output: <out_1, v_1> + <out_2, v_2> + ...
        return np.asarray(sum(np.sum(o * v) for o, v in zip(outputs, vectors, strict=True)))

    def vjp(inputs: Inputs) -> Gradients:
        return functions.backward(inputs, vectors)

    model_file = functions.model_file
    return ContractedModel(
        name=f"{model_file.name}/v{number}",
        formula=f"<{model_file.formula}, v>, v ~ N(0, 1), seed {seed}, cotangent {number} of {of}",
        contracted=contracted,
        vjp=vjp,
        number=number,
        complex_analytic=model_file.complex_safe,
        vectors=tuple(vectors),
    )


def cotangent_vectors(model: Model) -> tuple[Array, ...]:
    """The cotangent of a contracted model (one array per output); () for a scalar model."""
    return model.vectors if isinstance(model, ContractedModel) else ()


@dataclass(frozen=True)
class FileModel:
    """A scalar model file: f = forward(inputs), with the gradient from its backward."""

    name: str
    formula: str
    functions: _Functions
    complex_analytic: bool = False
    """Only a file that declares complex_safe = True: nobody else knows whether the user's code
    is holomorphic."""

    def value(self, inputs: Inputs) -> float | complex:
        """f at `inputs`. The numerics call it with numpy's floating-point errors silenced
        (a shifted point may overflow), so it does not silence them again: it is the hot path.
        No finiteness check: a NaN at a perturbed input is for the numerics to report."""
        functions = self.functions
        if functions.model_file.convention == "plain":
            functions.model_file.counter.forward += 1
            result = functions.caller.call_forward(inputs, quiet=True)
            if type(result) is float:  # the common case: float(np.sum(...))
                return result
            out = functions._numeric_output(result, "forward")
        else:
            out = functions.forward(inputs, quiet=True).arrays[0]
        if out.shape != ():
            raise UserCodeError(
                f"{self.functions.label}: forward returned shape {out.shape} here but a scalar "
                f"at the given {_given(inputs)}; its output shape must not depend on the values "
                "of its inputs"
            )
        return complex(out) if np.iscomplexobj(out) else float(out)

    def gradient(self, inputs: Inputs) -> Gradients:
        return self.functions.backward(inputs, ())


def _check_backward_arity(
    model_file: ModelFile,
    names: Sequence[str],
    *,
    n_args: int,
    scalar: bool,
    shape: tuple[int, ...],
) -> None:
    """Say up front that backward takes the wrong arguments, rather than a TypeError per call."""
    assert model_file.backward is not None
    try:
        signature = inspect.signature(model_file.backward)
    except (TypeError, ValueError):  # some builtins have none: let the call tell
        return
    try:
        signature.bind(*range(n_args))
    except TypeError:
        listed = ", ".join(names)
        called = f"backward({listed})" if scalar else f"backward({listed}, grad_output)"
        because = (
            "forward returns a scalar" if scalar else f"forward returns an array of shape {shape}"
        )
        raise UserCodeError(
            f"{model_file.label}: {because}, so backward is called as {called}; "
            f"but its signature is backward{signature}"
        ) from None


def _gradient_part(
    file: str, label: str, value: object, *, like: Array, like_name: str, role: str = "backward"
) -> Array:
    part = _numeric(value)
    if part is None:
        raise UserCodeError(f"{file}: {role} returned a {label} that is {_describe(value)}")
    if part.shape != np.shape(like):
        raise UserCodeError(
            f"{file}: {role} returned {label} of shape {part.shape}; "
            f"expected {np.shape(like)}, the shape of {like_name}"
        )
    if np.iscomplexobj(part) and not np.iscomplexobj(like):
        raise UserCodeError(f"{file}: {role} returned a complex {label} for a real {like_name}")
    bad = ~np.isfinite(part)
    if bad.any():
        index = _first(bad)
        raise UserCodeError(
            f"{file}: {role} returned a non-finite "
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
