"""Dicts of arrays as one argument (`L_model_forward(X, parameters)`): each array is an input of
its own, named `parameters.W1`, and the dict is put together again for every call.

Pure standard library and numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SEPARATOR = "."


@dataclass(frozen=True)
class Slot:
    """One of forward's array arguments: an input (`x`), or a dict of inputs (`parameters`,
    its members `parameters.W1`, ...)."""

    name: str
    members: tuple[str, ...]
    group: bool

    def key(self, member: str) -> str:
        """`W1` for the member `parameters.W1`."""
        return member[len(self.name) + len(SEPARATOR) :] if self.group else member


def member_name(head: str, key: str) -> str:
    """`parameters.W1`: the input name of the dict argument `head`'s array `key`."""
    return f"{head}{SEPARATOR}{key}"


def head_of(name: str) -> str:
    """The argument an input belongs to: `parameters` for `parameters.W1`, `x` for `x`."""
    return name.partition(SEPARATOR)[0]


def slots(names: Sequence[str]) -> list[Slot]:
    """forward's array arguments, in the order of the inputs `names` (forward's order)."""
    found: list[Slot] = []
    for name in names:
        head, separator, _ = name.partition(SEPARATOR)
        if not separator:
            found.append(Slot(name, (name,), group=False))
        elif found and found[-1].group and found[-1].name == head:
            found[-1] = Slot(head, (*found[-1].members, name), group=True)
        else:
            found.append(Slot(head, (name,), group=True))
    return found


def assemble(values: Mapping[str, object]) -> dict[str, object]:
    """`values` by argument: the members `parameters.W1`, ... become one fresh dict
    `parameters` (by key, in their order); everything else stays as it is."""
    assembled: dict[str, object] = {}
    for name, value in values.items():
        head, separator, key = name.partition(SEPARATOR)
        if not separator:
            assembled[name] = value
            continue
        group = assembled.setdefault(head, {})
        if isinstance(group, dict):
            group[key] = value
    return assembled


def is_dict_of_arrays(value: object) -> bool:
    """A dict of arrays by string key, one level, at least one array (`parameters`): every
    value a numeric array. A dict with anything else in it (`bn_param`) is a parameter."""
    if not isinstance(value, Mapping) or not value:
        return False
    return all(
        isinstance(k, str) and k and isinstance(v, np.ndarray) and v.dtype.kind in "biufc"
        for k, v in value.items()
    )
