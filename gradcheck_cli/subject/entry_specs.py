"""Which entries a check looks at, as the command line names them (`--entries "w[0,1];b[2]"`,
`--entries random:K`, `--entry I,J`), resolved against the inputs' shapes.

Indices are tuples of the input's own rank; a bare `I,J` (no input name) stands in each input
of --wrt. Raises `InputError` (exit 2) for an index that does not fit its input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import Array

Ref = tuple[str | None, tuple[int, ...]]
"""An entry as the command line names it: (input name or None for "each input of --wrt"),
index)."""


def ref_text(ref: Ref) -> str:
    """`x[0,1]` or `0,1`, as the user wrote the entry."""
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
    bad = [k for k, (i, n) in enumerate(zip(index, shape, strict=True)) if i >= n]
    if bad:
        if len(shape) == 2:
            limits = f"I must be 0..{shape[0] - 1} and J 0..{shape[1] - 1}"
        else:
            limits = ", ".join(f"index {k + 1} must be 0..{shape[k] - 1}" for k in bad)
        raise InputError(f"{option} {shown} is out of range for {name} of shape {shape}: {limits}")
    return int(np.ravel_multi_index(index, shape)) if shape else 0


def entries_of_spec(
    spec: tuple[str, Any],
    inputs: Mapping[str, Array],
    wrt: Sequence[str],
    seed: int,
    *,
    option: str = "--entries",
) -> tuple[list[str], dict[str, Any] | None]:
    """(checked inputs, flat indices per input or None for every entry) for --entries.

    `random:K` takes K seeded entries of each checked input; a list takes named entries in
    their own input and bare `I,J` in each input of `wrt`. Named entries without --wrt choose
    the inputs that are checked.
    """
    kind, value = spec
    if kind == "all":
        return list(wrt), None
    rng = np.random.default_rng(seed)
    chosen: dict[str, Any] = {}
    if kind == "random":
        for name in wrt:
            size = int(np.size(inputs[name]))
            count = min(int(value), size)
            chosen[name] = np.sort(rng.choice(size, size=count, replace=False)).astype(np.intp)
        return list(wrt), chosen
    picked: dict[str, set[int]] = {}
    for ref in value:
        name, index = ref.name, ref.index
        targets = [name] if name is not None else list(wrt)
        for target in targets:
            if target not in inputs:
                raise InputError(
                    f"{option} {ref_text((name, index))}: no input named {target}; the inputs "
                    f"are {', '.join(inputs)}"
                )
            picked.setdefault(target, set()).add(flat_index((name, index), target, inputs, option))
    names = [n for n in wrt if n in picked] + [n for n in picked if n not in wrt]
    for name in names:
        chosen[name] = np.asarray(sorted(picked[name]), dtype=np.intp)
    return names, chosen
