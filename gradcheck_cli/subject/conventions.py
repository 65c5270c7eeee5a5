"""How a model file's functions are meant to be called: its conventions, over named inputs.

The conventions, all over named inputs (the parameter names of the forward function):

- plain (`model.py`): `forward(x, w, b, ...)` and `backward(...)` taking the same arguments.
  A scalar forward's backward returns the gradients; an array forward's backward takes
  `grad_output` after them and returns the vector-Jacobian product for it. The check contracts
  the output with seeded random cotangents v (`ContractedModel`).
- layer (`layers.py:affine`, CS231n style): `affine_forward(x, w, b) -> (out, cache)` and
  `affine_backward(dout, cache) -> (dx, dw, db)`; the pairs are found by `pairs` (markers
  anywhere in the name, `NAME` with `NAME_backward`, `batchnorm_backward_alt`). Several outputs
  are allowed (`(next_h, next_c, cache)` with `backward(dnext_h, dnext_c, cache)`); a scalar
  single output (a loss) gets dout = 1.0. Backward's other parameters are given by name
  (`backward_calls`).
- loss (`layers.py:softmax_loss`, a function with no backward to pair): one function that
  returns `(loss, gradients)`, as CS231n's loss functions do.
- derivative (`net.py:sigmoid` with `sigmoid_prime`, or a class's `gradient(x)`): the
  derivative takes forward's arguments; for an array output its result is the elementwise
  derivative (the VJP for v is v * gradient) or the Jacobian (shape output + input).
- class (`layers.py:Linear`): a class, instantiated when it is bound (`classes` finds its
  methods, `instances` builds the instance and its functions).

Gradients come back as a tuple in forward's parameter order (one per input; or one per floating
input), as a dict by name, or as a single array when one input is floating; `None` (or a
missing key) for an input the backward gives no gradient for: that input is not checked.

Parameters without a default are inputs. A parameter with a default is an input when an array
is given for it, and otherwise a parameter passed through unchanged (`conv_param`, `bn_param`):
from `--param NAME=JSON`, the file's `example_inputs()` (a dict of arrays and parameters used
for whatever the command line does not give) or its default. Integer and boolean arrays
(labels, masks) are constants, never perturbed. A dict whose values are all arrays
(`parameters`) is a dict of inputs, one per key (`parameters.W1`).

Optional module-level `name` and `formula` strings label the report; `complex_safe = True`
allows complex-step; `hvp(...)` and `jvp(...)` are second-order and forward-mode derivatives
to check. Whatever the user's code does wrong becomes a one-line `UserCodeError` that names
the file.

Nothing here knows about click or rich.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.frameworks import Adapted, adapt
from gradcheck_cli.subject.classes import ClassPlan, class_plan
from gradcheck_cli.subject.composed import loss_of_output
from gradcheck_cli.subject.messages import describe
from gradcheck_cli.subject.pairs import (
    FORWARD_MARKERS,
    AmbiguousName,
    Pair,
    backward_name_for,
    derivative_of,
    find_layer,
    layer_pairs,
    loss_for,
    starting_with,
    stem,
)

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
    """plain, layer, loss, derivative or class (see the module docstring)."""
    example_inputs: UserFunction | None = None
    sample_inputs: UserFunction | None = None
    """`sample_inputs(rng)` (or NAME_sample_inputs): further input points for `--points`."""
    complex_safe: bool = False
    hvp: UserFunction | None = None
    jvp: UserFunction | None = None
    counter: CallCounter = field(default_factory=CallCounter, compare=False)
    from_file: bool = False
    """Loaded by load_model_file (a worker imports the file again), not handed over in Python
    (a worker unpickles the functions)."""
    entry: str | None = None
    """What followed the colon in `--model FILE.py:NAME` (a worker loads the same), or None."""
    of_class: ClassPlan | None = None
    """For a class (convention "class"): its methods, until `instances` instantiates it."""
    adapted: Adapted | None = None
    """A PyTorch or JAX function adapted to the plain convention (frameworks/): its NAME, device
    and batched forward."""

    @property
    def label(self) -> str:
        """How messages name the file: `model.py`, or `layers.py:affine`."""
        entry = self.entry
        if entry is None and self.convention != "plain":
            entry = self.name
        return self.path.name if entry is None else f"{self.path.name}:{entry}"


ADAPTED_ROLES = ("forward", "backward", "example_inputs", "hvp", "jvp", "name", "formula")
"""What a framework's adapted function gives a model file."""


def in_precision(model_file: ModelFile, dtype: str) -> ModelFile:
    """A PyTorch or JAX model file whose floating tensors the adapter makes in `dtype` (bfloat16,
    which numpy has not: the arrays stay float64, holding bfloat16 numbers)."""
    assert model_file.adapted is not None
    adapted = model_file.adapted.in_precision(dtype)
    return dataclasses.replace(
        model_file, adapted=adapted, **{r: getattr(adapted, r) for r in ADAPTED_ROLES}
    )


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
    """The functions and labels of an imported model file, by the convention they follow: the
    one place that decides how a file's NAME is called.

    `entry` names a layer (found by `pairs`: its name, its forward's or backward's), a class, a
    function with its derivative, or a loss function returning (loss, grads); without it, the
    file defines `forward` and `backward`. A PyTorch or JAX function (`entry`, or `forward`) is
    adapted to the plain convention by frameworks/, its tensors on `device`.
    """
    adapted = adapt(module, path, entry, device=device)
    if adapted is not None:
        return ModelFile(
            path=path,
            from_file=True,
            adapted=adapted,
            entry=entry,
            **{r: getattr(adapted, r) for r in ADAPTED_ROLES},
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
        "sample_inputs": _optional_function(module, "sample_inputs", path),
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
    """The layer, class, derivative or loss function `entry` of a file of several."""
    path: Path = common["path"]
    namespace = vars(module)
    try:
        pair = find_layer(namespace, entry)
        if pair is None and not callable(namespace.get(entry)):
            pair = starting_with(namespace, entry)
    except AmbiguousName as ambiguous:
        raise UserCodeError(_ambiguous(path, ambiguous)) from None
    # A file of several layers gives each its own examples (their x, w, b differ in shape):
    # NAME_example_inputs() wins over the file's example_inputs(), NAME being the name given,
    # the layer's or its forward's stem; likewise NAME_sample_inputs, NAME_hvp and NAME_jvp.
    owners = [entry]
    if pair is not None:  # the layer's name, then its forward's (layernorm for layernorm_alt)
        owners += [pair.name, stem(pair.forward, FORWARD_MARKERS) or pair.forward]
    for role in ("example_inputs", "sample_inputs", "hvp", "jvp"):
        for owner in dict.fromkeys(owners):
            own = _optional_function(module, f"{owner}_{role}", path)
            if own is not None:
                common = {**common, role: own}
                break
    if pair is not None:
        required, every = parameter_names(namespace)
        loss = loss_for(pair, required, every)
        if loss is not None:  # L_model_backward(AL, Y, caches) with compute_cost(AL, Y)
            label = f"{path.name}:{entry}"
            return ModelFile(
                from_file=True,
                entry=entry,
                name=pair.name,
                formula=(
                    f"{loss.loss}({pair.forward}(...)[0], ...) from {path.name}, gradient "
                    f"{pair.backward}"
                ),
                forward=loss_of_output(
                    namespace[pair.forward],
                    namespace[pair.backward],
                    namespace[loss.loss],
                    loss,
                    label=label,
                ),
                backward=None,
                convention="loss",
                **common,
            )
        return layer_model_file(namespace, pair, entry, common)
    value = namespace.get(entry)
    if isinstance(value, type):
        plan = class_plan(value, entry, path)
        if plan.kind == "pair" and plan.static:
            # Static forward(...) -> (out, cache) and backward(dout, cache): a layer's pair.
            assert plan.backward is not None
            return ModelFile(
                from_file=True,
                entry=entry,
                name=entry,
                formula=f"{entry}.{plan.forward}(...) from {path.name}",
                forward=getattr(value, plan.forward),
                backward=getattr(value, plan.backward),
                convention="layer",
                **common,
            )
        return ModelFile(
            from_file=True,
            entry=entry,
            name=entry,
            formula=f"{entry}().{plan.forward}(...) from {path.name}",
            forward=plan.placeholder(),
            backward=None,
            convention="class",
            of_class=plan,
            **common,
        )
    if callable(value):
        derivative = derivative_of(namespace, entry)
        if derivative is not None:
            return ModelFile(
                from_file=True,
                entry=entry,
                name=entry,
                formula=f"{entry}(...) from {path.name}, derivative {derivative}",
                forward=value,
                backward=namespace[derivative],
                convention="derivative",
                **common,
            )
        return ModelFile(
            from_file=True,
            entry=entry,
            name=entry,
            formula=f"{entry}(...)[0] from {path.name}",
            forward=value,
            backward=None,
            convention="loss",
            **common,
        )
    forward_name = f"{entry}_forward"
    backward_name = f"{entry}_backward"
    missing = backward_name if callable(namespace.get(forward_name)) else forward_name
    raise UserCodeError(
        f"{path.name}: no {missing}; --model {path.name}:{entry} takes {forward_name} and "
        f"{backward_name} (a layer), a class {entry}, or {entry} returning (loss, gradients); "
        f"{_known(module)}"
    )


def layer_model_file(
    namespace: dict[str, Any], pair: Pair, entry: str, common: dict[str, Any]
) -> ModelFile:
    """The layer `pair` of a file: its forward and backward."""
    path: Path = common["path"]
    formula = f"{pair.forward}(...) from {path.name}"
    if pair.backward != backward_name_for(pair.forward):  # batchnorm_backward_alt
        formula += f", backward {pair.backward}"
    return ModelFile(
        from_file=True,
        entry=entry,
        name=pair.name,
        formula=formula,
        forward=namespace[pair.forward],
        backward=namespace[pair.backward],
        convention="layer",
        **common,
    )


def parameter_names(
    namespace: dict[str, Any],
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each function's parameters without a default, and all of them (those whose signature
    can be read; not *args and **kwargs)."""
    required: dict[str, list[str]] = {}
    every: dict[str, list[str]] = {}
    for name, value in namespace.items():
        if not inspect.isfunction(value):
            continue
        try:
            parameters = list(inspect.signature(value).parameters.values())
        except (TypeError, ValueError):
            continue
        named = [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        every[name] = [p.name for p in named]
        required[name] = [p.name for p in named if p.default is inspect.Parameter.empty]
    return required, every


def _ambiguous(path: Path, ambiguous: AmbiguousName) -> str:
    listed = ", ".join(p.describe() for p in ambiguous.candidates)
    first = ambiguous.candidates[0].name
    return (
        f"{path.name}: {ambiguous.entry} names {len(ambiguous.candidates)} layers: {listed}; "
        f"name one of them, as in --model {path.name}:{first}"
    )


def _known(module: ModuleType) -> str:
    """What the file does define: its layers and classes."""
    layers = _layer_names(module)
    classes = [
        n
        for n, v in vars(module).items()
        if isinstance(v, type) and v.__module__ == module.__name__
    ]
    parts = []
    if layers:
        parts.append(f"the layers it defines are {', '.join(layers)}")
    if classes:
        parts.append(f"the classes {', '.join(classes)}")
    return "; ".join(parts) if parts else "it defines no layer and no class"


def _layer_names(module: ModuleType) -> list[str]:
    """The name of every layer the file defines (see `pairs`)."""
    return [pair.name for pair in layer_pairs(vars(module))]


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
