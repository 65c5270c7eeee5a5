"""How a model file's functions are meant to be called: its conventions, over named inputs.

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
to check. Whatever the user's code does wrong becomes a one-line `UserCodeError` that names
the file.

Nothing here knows about click or rich.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.frameworks import Adapted, adapt
from gradcheck_cli.subject.messages import describe

UserFunction = Callable[..., object]


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
    adapted: Adapted | None = None
    """A PyTorch or JAX function adapted to the plain convention (frameworks/): its NAME, device
    and batched forward."""

    @property
    def label(self) -> str:
        """How messages name the file: `model.py`, or `layers.py:affine`."""
        entry = "" if self.convention == "plain" else f":{self.name}"
        if self.adapted is not None and self.adapted.entry is not None:
            entry = f":{self.adapted.entry}"
        return f"{self.path.name}{entry}"


def signature_of(model_file: ModelFile) -> inspect.Signature:
    """forward's signature: its parameters name the inputs and parameters of every call."""
    try:
        return inspect.signature(model_file.forward)
    except (TypeError, ValueError) as error:
        raise UserCodeError(
            f"{model_file.label}: cannot read the parameters of forward ({error})"
        ) from None


def model_file_from_module(
    module: ModuleType, path: Path, entry: str | None, *, device: str | None = None
) -> ModelFile:
    """The functions and labels of an imported model file, by the convention they follow.

    `entry` names a layer (`entry_forward`/`entry_backward`) or a loss function (`entry`,
    returning (loss, grads)); without it, the file defines `forward` and `backward`. A PyTorch
    or JAX function (`entry`, or `forward`) is adapted to the plain convention by frameworks/,
    its tensors on `device`.
    """
    adapted = adapt(module, path, entry, device=device)
    if adapted is not None:
        roles = ("forward", "backward", "example_inputs", "hvp", "jvp", "name", "formula")
        return ModelFile(
            path=path, from_file=True, adapted=adapted, **{r: getattr(adapted, r) for r in roles}
        )
    if device not in (None, "cpu"):
        raise InputError(
            f"--device {device}: {path.name} is a numpy model file; --device places the tensors "
            "of a PyTorch or JAX model"
        )
    complex_safe = getattr(module, "complex_safe", False)
    if not isinstance(complex_safe, bool):
        raise UserCodeError(
            f"{path.name}: complex_safe must be True or False; got {describe(complex_safe)}"
        )
    common: dict[str, Any] = {
        "path": path,
        "example_inputs": _optional_function(module, "example_inputs", path),
        "complex_safe": complex_safe,
        "hvp": _optional_function(module, "hvp", path),
        "jvp": _optional_function(module, "jvp", path),
    }
    if entry is not None:
        return _entry_model_file(module, entry, common)

    problems = []
    functions: dict[str, UserFunction] = {}
    for attribute in ("forward", "backward"):
        function = getattr(module, attribute, None)
        if function is None:
            problems.append(f"no {attribute}")
        elif not callable(function):
            problems.append(f"{attribute} is not callable (it is {describe(function)})")
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


def _entry_model_file(module: ModuleType, entry: str, common: dict[str, Any]) -> ModelFile:
    """The layer or loss function `entry` of a file of several."""
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
        raise UserCodeError(f"{path.name}: {attribute} must be a function; got {describe(value)}")
    return value


def _label(module: ModuleType, attribute: str, *, default: str, path: Path) -> str:
    value = getattr(module, attribute, None)
    if value is None:
        return default
    if not isinstance(value, str):
        raise UserCodeError(f"{path.name}: {attribute} must be a string; got {describe(value)}")
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
