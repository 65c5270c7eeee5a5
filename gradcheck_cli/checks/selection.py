"""Which inputs and entries a check covers, and what it needs of them first.

`resolve_wrt` picks the checked inputs (floating, with a gradient); `select_entries` the entries
of each (all, K random ones, or a list written `w[0,1]` or a bare `I,J` for each checked input);
`describe_inputs` says for every input where it came from and whether it is checked or why not.
`validate_gradient` and `require_finite_value` refuse, up front, a gradient of the wrong shape
and an f that is not finite at the given point: nothing could be differenced there.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.judgement import floating
from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import Array, ElementwiseModel, Gradients, Inputs, Model
from gradcheck_cli.report import InputInfo
from gradcheck_cli.settings import EntrySelection

Ref = tuple[str | None, tuple[int, ...]]
"""An entry as the user names it: (input name, or None for "each checked input"; index)."""


def validate_gradient(model: Model, inputs: Inputs) -> Gradients:
    """The model's gradient at `inputs`, each part shaped like its input."""
    if isinstance(model, ElementwiseModel):
        require_finite_product(model, inputs)
    gradients = model.gradient(inputs)
    for name, grad in gradients.items():
        if grad is None or name not in inputs:
            continue
        like = inputs[name]
        if np.shape(grad) != np.shape(like):
            raise InputError(
                f"{model.name}: gradient d{name} has shape {np.shape(grad)}; "
                f"expected {np.shape(like)}, the shape of {name}"
            )
    return gradients


def checkable(inputs: Inputs, gradients: Mapping[str, Array | None]) -> list[str]:
    """The inputs a check covers by default: floating, with a gradient."""
    return [n for n, a in inputs.items() if floating(a) and gradients.get(n) is not None]


def resolve_wrt(
    inputs: Inputs,
    gradients: Mapping[str, Array | None],
    wrt: Sequence[str] | None,
    *,
    option: str = "--wrt",
) -> list[str]:
    """The checked inputs: those named (each must exist, float, with a gradient), or by default
    every floating input the model gives a gradient for."""
    if wrt is None:
        names = checkable(inputs, gradients)
        if not names:
            raise InputError(
                "nothing to check: no floating input has a gradient "
                f"(inputs: {', '.join(inputs) or 'none'})"
            )
        return names
    # A dict argument's name stands for its arrays: --wrt parameters is parameters.W1, ...
    wrt = [m for name in wrt for m in _members(name, inputs, gradients)]
    for name in wrt:
        if name not in inputs:
            raise InputError(
                f"{option} {name}: no input of that name; the inputs are {', '.join(inputs)}"
            )
        if not floating(inputs[name]):
            raise InputError(
                f"{option} {name}: {name} is a {inputs[name].dtype} array, a constant "
                "(only floating inputs are perturbed)"
            )
        if gradients.get(name) is None:
            raise InputError(f"{option} {name}: the backward gives no gradient for {name}")
    return list(dict.fromkeys(wrt))


def _members(name: str, inputs: Inputs, gradients: Mapping[str, Array | None]) -> list[str]:
    """`name`, or when it is a dict argument's (`parameters`), its floating arrays with a
    gradient (`parameters.W1`, ...)."""
    if name in inputs:
        return [name]
    members = [n for n in inputs if n.startswith(f"{name}.")]
    checked = [n for n in members if floating(inputs[n]) and gradients.get(n) is not None]
    return checked or members or [name]


def describe_inputs(
    inputs: Inputs,
    sources: Mapping[str, str],
    checked: Sequence[str],
    gradients: Gradients | None,
    *,
    selected_by: str = "--wrt",
) -> dict[str, InputInfo]:
    """Every input: where it came from, its shape and dtype, and whether it was checked or why
    not."""
    infos: dict[str, InputInfo] = {}
    for name, array in inputs.items():
        array = np.asarray(array)
        why: str | None = None
        if name not in checked:
            if array.dtype.kind == "b":
                why = "constant: a boolean array"
            elif array.dtype.kind in "iu":
                why = "constant: an integer array"
            elif gradients is not None and gradients.get(name) is None:
                why = "not checked: the backward gives no gradient for it"
            else:
                why = f"not checked: not selected ({selected_by})"
        infos[name] = InputInfo(
            name=name,
            source=sources.get(name, "array"),
            shape=tuple(int(s) for s in array.shape),
            dtype=str(array.dtype),
            checked=name in checked,
            why=why,
        )
    return infos


def select_entries(
    inputs: Inputs, wrt: Sequence[str], entries: Mapping[str, NDArray[np.intp]] | None
) -> dict[str, NDArray[np.intp]]:
    """Flat indices to check per input of `wrt`: the given ones, or every entry."""
    selections: dict[str, NDArray[np.intp]] = {}
    for name in wrt:
        chosen = None if entries is None else entries.get(name)
        size = int(np.asarray(inputs[name]).size)
        selections[name] = np.arange(size, dtype=np.intp) if chosen is None else chosen
    return selections


def require_finite_product(model: ElementwiseModel, inputs: Inputs) -> None:
    """A built-in model differences X @ W: where it overflows nothing can be differenced (and
    a saturating activation would hide it in f)."""
    X, W = inputs["X"], inputs["W"]
    with np.errstate(all="ignore"):
        product = X @ W
    bad = ~np.isfinite(product)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise InputError(
            f"{model.name}: X @ W overflows to {product[i, j]} at [{i}, {j}] (X {X.shape}, W "
            f"{W.shape} in {X.dtype}); it must be finite: scale the inputs down"
        )


def require_finite_value(model: Model, value: float | complex, inputs: Inputs) -> None:
    """f must be finite at the given point: nothing can be differenced around inf or NaN."""
    if not np.isfinite(value):
        shapes = ", ".join(f"{n} {tuple(np.shape(a))}" for n, a in inputs.items())
        raise InputError(
            f"{model.name}: f = {np.real(value)} at the given inputs ({shapes}); it must be "
            "finite there (scale the inputs down?)"
        )


def ref_text(ref: Ref) -> str:
    """`w[0,1]`, or `0,1` for an entry of each checked input."""
    name, index = ref
    digits = ",".join(str(i) for i in index)
    return digits if name is None else f"{name}[{digits}]"


def flat_index(ref: Ref, name: str, inputs: Mapping[str, Array], option: str) -> int:
    """The flat index of `ref` in input `name`, or InputError saying what is out of range."""
    shape = tuple(np.shape(inputs[name]))
    _, index = ref
    shown = ref_text(ref)
    if len(index) != len(shape):
        dimensions = "dimension" if len(shape) == 1 else "dimensions"
        written = f"{name}[{','.join('0' * len(shape))}]"
        raise InputError(
            f"{option} {shown} has {len(index)} {'index' if len(index) == 1 else 'indices'}, "
            f"but {name} has {len(shape)} {dimensions} (shape {shape}; write {written})"
        )
    bad = [k for k, (i, n) in enumerate(zip(index, shape, strict=True)) if i >= n or i < 0]
    if bad:
        if len(shape) == 2:
            limits = f"I must be 0..{shape[0] - 1} and J 0..{shape[1] - 1}"
        else:
            limits = ", ".join(f"index {k + 1} must be 0..{shape[k] - 1}" for k in bad)
        raise InputError(f"{option} {shown} is out of range for {name} of shape {shape}: {limits}")
    return int(np.ravel_multi_index(index, shape)) if shape else 0


def chosen_entries(
    selection: EntrySelection,
    inputs: Mapping[str, Array],
    wrt: Sequence[str],
    seed: int,
    *,
    option: str = "--entries",
) -> tuple[list[str], dict[str, NDArray[np.intp]] | None]:
    """(checked inputs, flat indices per input, or None for every entry).

    `random` takes K seeded entries of each checked input; `listed` takes named entries in their
    own input and bare `I,J` in each input of `wrt`. Listed entries that all name their input
    choose the checked inputs themselves (`wrt` then only orders them).
    """
    if selection.kind == "all":
        return list(wrt), None
    rng = np.random.default_rng(seed)
    chosen: dict[str, NDArray[np.intp]] = {}
    if selection.kind == "random":
        for name in wrt:
            size = int(np.size(inputs[name]))
            count = min(selection.count, size)
            chosen[name] = np.sort(rng.choice(size, size=count, replace=False)).astype(np.intp)
        return list(wrt), chosen
    picked: dict[str, set[int]] = {}
    for named, index in selection.listed:
        targets: list[str] = [named] if named is not None else list(wrt)
        for target in targets:
            if target not in inputs:
                raise InputError(
                    f"{option} {ref_text((named, index))}: no input named {target}; the inputs "
                    f"are {', '.join(inputs)}"
                )
            picked.setdefault(target, set()).add(flat_index((named, index), target, inputs, option))
    names = [n for n in wrt if n in picked] + [n for n in picked if n not in wrt]
    for name in names:
        chosen[name] = np.asarray(sorted(picked[name]), dtype=np.intp)
    return names, chosen
