"""The user's code in a low precision (--dtype float32, float16), and the float64 forward it is
judged against (issue 23).

`low_precision_gradients` gives the gradient the code computes at the quantised inputs, and how
far it moves at rounding-level perturbations: the floating inputs moved by an ulp or two each
(random signs), the arrays forward saved for backward moved the same way, and the gradient of
the output scaled by a factor that is no power of two (so every product rounds differently);
the largest change over `DITHERS` such runs is `checks.precision`'s spread. A perturbation of
the inputs by an ulp is one the precision cannot tell apart, so what it changes is what the
precision cannot resolve.

`float64_reference` binds the float64 forward the numerical side differences: the model's own
at the same quantised inputs (when it computes in float64 there), or a reference forward the
user names (`--reference-model FILE.py:NAME`, `reference_forward=` in Python), taking the same
inputs by name and returning forward's output(s). Its cotangents are the low-precision run's,
drawn from the same seed and rounded the same way.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcheck_cli.checks.judgement import working_dtype
from gradcheck_cli.checks.precision import UNIT_ROUNDOFF
from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.numerics.bfloat16 import BFLOAT16, in_dtype
from gradcheck_cli.numerics.models import Array, Gradients, Inputs, Model
from gradcheck_cli.settings import Naming
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.backward_calls import fresh_copy
from gradcheck_cli.subject.binding import Bound, bind, cotangent_vectors
from gradcheck_cli.subject.builtin import BuiltinSubject, builtin_subject
from gradcheck_cli.subject.conventions import ModelFile, UserFunction
from gradcheck_cli.subject.functions import Outputs
from gradcheck_cli.subject.side_effects import arrays_in

DITHERS = 4
"""Runs at rounding-level perturbations: with 4, a correct softmax, layer norm or attention
stayed within 3 units of the rounding estimate on 900 random cases per precision (2 runs left
7, 3 runs 5: the spread of fewer runs can miss how far the rounding goes)."""

SCALES = (1 + 1 / 3, 1 + 2 / 3 + 1 / 97, 1.5 + 1 / 7, 1.25 + 1 / 11)
"""The factors the output's gradient is scaled by, one per run: no power of two, so that each
product the backward forms rounds differently."""

LOW_DTYPES = ("float32", "float16", "bfloat16")

OWN_FORWARD = "the model's own forward"
"""How a report names the float64 reference when it is the model's own code."""

Named = tuple[str, Path | None, UserFunction]
"""A named reference forward: how reports call it (`ref.py:softmax`), its file, the function."""

NO_REFERENCE = "none"
"""A report's reference when the model's forward does not compute in float64 and none was
named: the whole check then runs in the low precision, its forward differenced there."""

_ROUNDING_STEPS = 2.0
"""Each floating entry moves by this many units of roundoff (one or two ulps) per run."""


def unit_roundoff(subject: Bound | BuiltinSubject, dtype: str) -> float:
    """u of the precision the subject's code computes in: `dtype`'s, or the coarser one its
    forward was found to compute in at those inputs (a float16 kernel given float32)."""
    own = UNIT_ROUNDOFF.get(dtype) or float(np.finfo(np.dtype(dtype)).eps) / 2
    return max(own, (subject.precision.eps or 0.0) / 2)


def check_precision(subject: Bound | BuiltinSubject) -> str:
    """The precision the subject's code runs in: its floating inputs' dtype, or bfloat16 for
    a framework's function bound in it (its arrays are float64 holding bfloat16 numbers)."""
    if isinstance(subject, Bound) and subject.recipe.dtype == BFLOAT16:
        return BFLOAT16
    return working_dtype(subject.inputs).name


def low_precision_gradients(
    subject: Bound | BuiltinSubject, unit: float, *, seed: int
) -> tuple[tuple[Gradients, ...], tuple[dict[str, Array], ...]]:
    """The gradient of each model (cotangent) at the subject's inputs, as float64, and how far
    each entry moves over `DITHERS` runs at rounding-level perturbations of `unit` (see the
    module)."""
    inputs = subject.inputs
    rng = np.random.default_rng(seed)
    precision = check_precision(subject)
    gradients: list[Gradients] = []
    spreads: list[dict[str, Array]] = []
    for model in subject.models:
        first = model.gradient(inputs)
        spread = {n: np.zeros(np.shape(g)) for n, g in first.items() if g is not None}
        for scale in SCALES[:DITHERS]:
            moved = {n: _moved(a, rng, unit, precision) for n, a in inputs.items()}
            try:
                again = _dithered(subject, model, moved, scale, rng, unit)
            except UserCodeError:
                # The code fails an ulp away (a NaN, an assertion on exact values): nothing
                # near these inputs can be vouched for in this precision.
                spread = {n: np.full(np.shape(g), np.inf) for n, g in spread.items()}
                break
            for name in spread:
                other = again.get(name)
                base = first[name]
                if other is None or base is None:
                    continue
                with np.errstate(all="ignore"):
                    change = np.abs(np.asarray(other, np.float64) - np.asarray(base, np.float64))
                spread[name] = np.fmax(spread[name], np.where(np.isfinite(change), change, np.inf))
        gradients.append(
            {n: None if g is None else np.asarray(g, dtype=np.float64) for n, g in first.items()}
        )
        spreads.append(spread)
    return tuple(gradients), tuple(spreads)


def computes_in_float64(subject: Bound | BuiltinSubject) -> bool:
    """Whether the subject's gradient (at float64 inputs) holds values float32 cannot: its
    backward computes in float64 (a backward that casts to float32 inside gives only values
    float32 holds, except with probability about 2^-29 per entry). Asked a hair away from the
    inputs, which a float16 run rounded: products of float16 values are exact in float32."""
    hair = 1.0 + np.pi / 10 * 2.0**-30
    moved = {
        n: a * hair if np.asarray(a).dtype.kind == "f" else a for n, a in subject.inputs.items()
    }
    try:
        gradients = subject.models[0].gradient(moved)
    except UserCodeError:  # it refuses a point off the inputs' grid: it is asked at them alone
        return True
    values = [np.asarray(g).reshape(-1) for g in gradients.values() if g is not None]
    every = np.concatenate(values) if values else np.zeros(0)
    every = every[np.isfinite(every) & (every != np.round(every))]  # integers tell nothing
    if every.size == 0:
        return True
    with np.errstate(over="ignore"):
        return bool(np.any(every.astype(np.float32).astype(np.float64) != every))


def _moved(array: Array, rng: np.random.Generator, unit: float, precision: str) -> Array:
    """A floating array with every entry moved by a rounding step or two (random signs), in
    its own dtype (rounded to bfloat16 for a check in it); anything else as it is."""
    value = np.asarray(array)
    if value.dtype.kind != "f":
        return array
    signs = rng.choice((-1.0, 1.0), size=value.shape)
    with np.errstate(over="ignore"):
        wide = value.astype(np.float64) * (1.0 + signs * _ROUNDING_STEPS * unit)
        moved = in_dtype(wide, precision) if precision == BFLOAT16 else wide.astype(value.dtype)
    # An entry at the top of the format's range stays where it is rather than become inf.
    return np.asarray(np.where(np.isfinite(moved), moved, value))


def _dithered(
    subject: Bound | BuiltinSubject,
    model: Model,
    moved: Inputs,
    scale: float,
    rng: np.random.Generator,
    unit: float,
) -> Gradients:
    """The gradient at the moved inputs, with what forward saved moved too and the output's
    gradient scaled by `scale` (and the result by 1 / scale)."""
    functions = subject.functions
    if functions is None:  # a built-in model: no cache, no cotangent
        return model.gradient(moved)
    vectors = cotangent_vectors(model)
    outputs = functions.forward(moved)
    cache = outputs.cache
    if functions.model_file.convention == "layer":
        cache = fresh_copy(cache)
        for _, array in arrays_in(cache, "cache"):
            if array.dtype.kind == "f" and array.flags.writeable:
                array[...] = _moved(array, rng, unit, array.dtype.name)
    at = Outputs(outputs.arrays, cache)
    if not vectors:
        return functions.backward(moved, (), at)
    scaled = [np.asarray(np.asarray(v, np.float64) * scale).astype(v.dtype) for v in vectors]
    gradients = functions.backward(moved, scaled, at)
    return {
        n: None if g is None else np.asarray(g, np.float64) / scale for n, g in gradients.items()
    }


# --- The float64 reference ----------------------------------------------------------------------


def float64_reference(
    subject: Bound | BuiltinSubject,
    dtype: str,
    *,
    params: Mapping[str, object],
    reference: Named | None,
    cotangents: int,
    seed: int,
    nondet_tol: float,
) -> Bound | BuiltinSubject | None:
    """The float64 forward at the subject's quantised inputs: the model's own (None when it
    does not compute in float64 there, so there is nothing to difference in float64), or
    `reference` (its label, its file, the function) bound to the same inputs by name."""
    quantised = {
        n: np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a
        for n, a in subject.inputs.items()
    }
    if isinstance(subject, BuiltinSubject):
        supplied = {n: Supplied(a, subject.sources[n]) for n, a in quantised.items()}
        return builtin_subject(subject.builtin, supplied, "float64")
    supplied = {n: Supplied(a, subject.sources.get(n, "array")) for n, a in quantised.items()}
    like = subject.unbound or subject.model_file
    if reference is None:
        model_file = like
    else:
        label, path, function = reference
        model_file = _reference_file(label, path, function, subject)
    try:
        bound = bind(
            model_file,
            supplied,
            params,
            dtype="float64",
            cotangents=cotangents,
            seed=seed,
            nondet_tol=nondet_tol,
            cotangent_dtype=dtype,
        )
    except (InputError, UserCodeError) as error:
        if reference is None:
            raise
        raise type(error)(f"{reference[0]} (the float64 reference): {error}") from None
    if bound.precision.eps is not None:
        if reference is None:
            return None
        computed = "float32" if bound.precision.eps >= np.finfo(np.float32).eps else "float16"
        raise UserCodeError(
            f"{reference[0]}: the reference forward computes in {computed} at float64 inputs; "
            "it must compute in float64 to be a reference"
        )
    if bound.output_shape != subject.output_shape:
        raise UserCodeError(
            f"{reference[0] if reference else model_file.label}: the float64 forward returns "
            f"shape {_shape_text(bound.output_shape)}; the model's returns "
            f"{_shape_text(subject.output_shape)}"
        )
    return bound


def _shape_text(shape: object) -> str:
    return "a number" if shape is None else str(shape)


def _reference_file(
    label: str, path: Path | None, function: UserFunction, subject: Bound
) -> ModelFile:
    """A model file whose forward is the reference `function`, returning forward's output(s)
    the way the model's convention reads them (a layer's with no cache), and no backward of
    its own (the numerical side never asks for one)."""
    outputs = _output_count(subject.output_shape)
    layer = subject.model_file.convention == "layer"

    def reference(*args: Any, **kwargs: Any) -> object:
        result = function(*args, **kwargs)
        if isinstance(result, (tuple, list)):
            parts = list(result)
            # A layer's forward returns (out..., cache); a loss's (loss, gradients).
            kept = parts[:outputs] if len(parts) > outputs or not layer else parts
            if layer:
                return (*kept, None)
            return kept[0]
        return (result, None) if layer else result

    with contextlib.suppress(TypeError, ValueError):  # no signature: called as it is
        reference.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
    reference.__name__ = str(getattr(function, "__name__", "reference"))
    model = subject.model_file
    return ModelFile(
        path=path or model.path,
        name=model.name,
        formula=f"{label} (float64 reference)",
        forward=reference,
        backward=_no_backward,
        convention="layer" if layer else "plain",
        from_file=False,
    )


def _no_backward(*args: object, **kwargs: object) -> dict[str, object]:
    """A reference needs no gradient of its own: only its values are differenced."""
    return {}


_no_backward.gradcheck_stand_in = True  # type: ignore[attr-defined]


def _output_count(shape: object) -> int:
    if shape is None:
        return 1
    assert isinstance(shape, tuple)
    return len(shape) if shape and isinstance(shape[0], tuple) else 1


def reference_names(subject: Bound) -> list[str]:
    """What `--reference-model FILE.py` (with no NAME) looks for: the model's forward's own
    name, then the layer's or entry's name."""
    names = [str(getattr(subject.model_file.forward, "__name__", "forward"))]
    unbound = subject.unbound or subject.model_file
    for name in (unbound.entry, unbound.name, "forward"):
        if name and name.isidentifier():
            names.append(name)
    return list(dict.fromkeys(names))


def reported_dtype(array: Array, precision: str) -> str:
    """How a report names an input's dtype: its own, or bfloat16 for a floating input of a
    check in it (held as float64: numpy has no bfloat16)."""
    own = np.asarray(array).dtype
    return precision if precision == BFLOAT16 and own.kind == "f" else str(own)


def bfloat16_refused(naming: Naming, *, without_reference: str | None = None) -> InputError:
    """Why a check in bfloat16 cannot run: it is judged entry by entry (--mode full, --order
    1) against a float64 forward, and `without_reference`'s own forward is none."""
    dtype = naming.setting("dtype", BFLOAT16)
    if without_reference is None:
        # 8 bits: a difference of bfloat16 values resolves nothing a check could vouch for.
        return InputError(
            f"{dtype} is judged entry by entry against a float64 forward: it needs "
            f"{naming.setting('mode', 'full')} and {naming.setting('order', 1)} (differencing "
            "bfloat16 itself, whose 8 bits leave no step, could vouch for nothing)"
        )
    how = (
        "--reference-model FILE.py:NAME"
        if naming.face == "command line"
        else "reference_forward= (--reference-model on the command line)"
    )
    return InputError(
        f"{dtype}: {without_reference}'s forward does not compute in float64 at float64 inputs, "
        f"so it is no float64 reference of itself; name one with {how}"
    )


def check_dtype(dtype: str, *, option: str, what: str | ModelFile) -> None:
    """numpy has float32 and float16, not bfloat16: a numpy model cannot run in it (a PyTorch
    or JAX model runs in it at the adapter's edge)."""
    if dtype != BFLOAT16:
        return
    if isinstance(what, ModelFile) and what.adapted is not None:
        return
    name = what if isinstance(what, str) else what.path.name
    given = f"{option}'bfloat16'" if option.endswith("=") else f"{option} bfloat16"
    raise InputError(
        f"{given}: numpy has no bfloat16, and {name} is numpy code; bfloat16 is for "
        "PyTorch and JAX models (numpy's half precision is float16)"
    )


def reference_loader(
    dtype: str,
    *,
    params: Mapping[str, object],
    named: Callable[[Bound], Named] | None,
    cotangents: int,
    seed: int,
    nondet_tol: float,
) -> Callable[[Bound | BuiltinSubject], tuple[Bound | BuiltinSubject, str] | None]:
    """How a subject in a low precision gets its float64 forward and its description: the
    reference `named` finds for it, or the model's own (`float64_reference`)."""

    def reference(subject: Bound | BuiltinSubject) -> tuple[Bound | BuiltinSubject, str] | None:
        given = None
        if named is not None:
            if not isinstance(subject, Bound):
                raise InputError("a built-in model is its own float64 reference: name none")
            given = named(subject)
        against = float64_reference(
            subject,
            dtype,
            params=params,
            reference=given,
            cotangents=cotangents,
            seed=seed,
            nondet_tol=nondet_tol,
        )
        if against is None:
            return None
        return against, OWN_FORWARD if given is None else given[0]

    return reference


def callable_reference(function: Callable[..., object]) -> Named:
    """The API's `reference_forward=`: its label and file, as the command line's spec gives."""
    name = str(getattr(function, "__name__", "reference_forward"))
    try:
        source = inspect.getsourcefile(function)
    except TypeError:
        source = None
    return name, Path(source) if source else None, function
