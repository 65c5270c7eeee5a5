"""What a model file's code does at the given inputs, found out before any check trusts it:
whether forward and backward are deterministic, and the precision forward computes in.

A fresh dropout mask or an unseeded rng moves f by far more than any step's difference, so no
verdict could be trusted; and a forward computed in float32 bounds how precisely f is known,
which sets the steps and tolerances of the numerics (`Precision`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.numerics.models import Inputs, Model
from gradcheck_cli.numerics.schemes import SCHEMES, default_steps
from gradcheck_cli.subject.calling import fingerprints
from gradcheck_cli.subject.functions import ModelFunctions, Outputs
from gradcheck_cli.subject.side_effects import uninitialised_filled

LOW_PRECISIONS = (np.float16, np.float32)


def check_deterministic(
    functions: ModelFunctions,
    inputs: Inputs,
    first: Outputs,
    models: Sequence[Model],
    tolerance: float,
    *,
    backward: bool = True,
) -> None:
    """Two more forward calls and two backward calls at the same inputs must agree to within
    `tolerance` (0: bitwise), or no verdict could be trusted: a fresh dropout mask or an
    unseeded rng moves f by far more than any step's difference. `backward` False leaves
    backward to the side-effect checks, whose not-reentrant verdict says the same of it."""
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
                cause = _unwritten_memory(functions, inputs) or hint
                raise UserCodeError(
                    f"{label}: forward is not deterministic: two calls at the same inputs "
                    f"differ by {gap:.3g}{shown}, more than --nondet-tol {tolerance:g}; {cause}"
                )
    if not backward:
        return
    model = models[0]
    one = model.gradient(inputs)
    moved: list[str] = []
    if tolerance == 0:
        # Bitwise: fingerprints suffice, and a second full gradient is never held.
        first_prints = {n: fingerprints({n: g}) for n, g in one.items() if g is not None}
        del one
        two = model.gradient(inputs)
        moved = [
            name
            for name, prints in first_prints.items()
            if (later := two.get(name)) is not None and fingerprints({name: later}) != prints
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


def _unwritten_memory(functions: ModelFunctions, inputs: Inputs) -> str | None:
    """Why forward differs between calls when it is memory np.empty left unwritten: with that
    memory filled with NaN, two calls agree (and hold NaN where they read it)."""
    outputs = []
    for _ in range(2):
        try:
            with uninitialised_filled(functions.model_file.forward):
                outputs.append(functions.forward(inputs).arrays)
        except UserCodeError:
            return None
    one, two = outputs
    same = all(
        a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
        for a, b in zip(one, two, strict=True)
    )
    holes = [np.argwhere(np.isnan(a)) for a in one if a.dtype.kind in "fc"]
    if not same or not any(h.size for h in holes):
        return None
    return (
        "it reads memory np.empty (or empty_like) left unwritten: with that memory filled with "
        "NaN, two calls agree and hold NaN where it is read. Write every entry (np.zeros)"
    )


def forward_precision(functions: ModelFunctions, inputs: Inputs, outputs: Outputs) -> float | None:
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
