"""What the user asked for, validated once at the edge: `CheckSettings`, and `Naming`, how each
face of gradcheck (the command line, the Python API) spells a setting or an input in a message.

The command line and the API build the same frozen `CheckSettings` and hand it to the session;
everything below reads it and never re-parses an option. A message about a setting is worded
by the face the user typed it in: `--rtol` on the command line, `rtol=` in Python.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from gradcheck_cli.errors import InputError

Face = Literal["command line", "api", "config"]

METHODS = ("forward", "backward", "central", "five-point", "complex-step")
"""The finite-difference schemes, by name (numerics.schemes.SCHEMES has the same keys)."""

DETAILS = ("auto", "all", "worst")
MODES = ("full", "fast", "jvp")
DTYPES = ("float64", "float32", "float16", "bfloat16")
"""The precisions a run checks in: float32 and float16 (numpy), bfloat16 (PyTorch and JAX),
judged against float64 at the same quantised inputs."""


@dataclass(frozen=True)
class Naming:
    """How one face of gradcheck names things in its messages."""

    face: Face

    def setting(self, name: str, value: object = None) -> str:
        """`--rtol` / `rtol`; with a value, `--mode fast` / `mode='fast'` / (in a config)
        `mode = "fast"`."""
        if self.face == "command line":
            option = f"--{name.replace('_', '-')}"
            return option if value is None else f"{option} {value}"
        if self.face == "config":
            shown = f'"{value}"' if isinstance(value, str) else value
            return name if value is None else f"{name} = {shown}"
        return name if value is None else f"{name}={value!r}"

    def give_input(self, name: str) -> str:
        """How to give an array for input `name`."""
        if self.face == "command line":
            return f"give an array with --input {name}=PATH (or --inputs FILE.npz)"
        return f"give it as inputs={{{name!r}: array}}"

    def give_parameter(self, name: str) -> str:
        """How to give a value that is not an array for parameter `name`."""
        if self.face == "command line":
            return f"anything else with --param {name}=JSON"
        return f"anything else as params={{{name!r}: value}}"


COMMAND_LINE = Naming("command line")
API = Naming("api")
CONFIG = Naming("config")


@dataclass(frozen=True)
class EntrySelection:
    """Which entries of the checked inputs: all, `random` K per input (seeded), or a `listed`
    set of entries, each (input name or None for "each checked input", index)."""

    kind: Literal["all", "random", "listed"] = "all"
    count: int = 0
    listed: tuple[tuple[str | None, tuple[int, ...]], ...] = ()

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        if self.kind == "random":
            return f"random:{self.count}"
        return ";".join(_entry_text(name, index) for name, index in self.listed)

    @property
    def names_inputs(self) -> bool:
        """Every listed entry names its input: they choose the checked inputs themselves."""
        return self.kind == "listed" and all(name is not None for name, _ in self.listed)


# A name may be dotted: parameters.W1 is the array W1 of the dict argument parameters.
INPUT_NAME = re.compile(r"^(?!\d)\w+(?:\.\w+)*$")
_NAMED_ENTRY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\[([^\]]*)\]\s*$")


def parse_entry(text: str) -> tuple[str | None, tuple[int, ...]]:
    """`b[3]`, `kernel[1,0,2,2]`, `scale[]`, `parameters.W1[0,3]`, or `I,J` (any number of
    indices) as (name or None, index); ValueError else."""
    match = _NAMED_ENTRY.match(text)
    name, digits = (match.group(1), match.group(2)) if match else (None, text)
    parts = [p.strip() for p in digits.split(",")] if digits.strip() else []
    if not all(p.isdigit() for p in parts) or (name is None and not parts):
        raise ValueError(text)
    return name, tuple(int(p) for p in parts)


def parse_entries(text: str) -> EntrySelection:
    """`all`, `random:K` or `w[0,1];b[2]` (a bare `I,J` for each checked input); ValueError
    with the reason else."""
    text = text.strip()
    if text == "all":
        return EntrySelection()
    if text.startswith("random:"):
        count = text.removeprefix("random:")
        if not count.isdigit() or int(count) == 0:
            raise ValueError(f"expected random:K with K a positive integer; got {text!r}")
        return EntrySelection("random", count=int(count))
    listed = []
    for item in filter(None, text.split(";")):
        try:
            listed.append(parse_entry(item))
        except ValueError:
            raise ValueError(
                "expected an entry such as w[0,1], b[3], scale[] or (with --wrt) 0,1: "
                f"non-negative integers; got {item!r}"
            ) from None
    if not listed:
        raise ValueError(f"expected all, random:K or w[0,1];b[2];...; got {text!r}")
    return EntrySelection("listed", listed=tuple(listed))


def parse_names(text: str) -> tuple[str, ...]:
    """`w,b` (input names, dotted for a dict argument's arrays), or `both` (X and W);
    ValueError else."""
    text = text.strip()
    if text == "both":
        return ("X", "W")
    names = tuple(n.strip() for n in text.split(","))
    if not all(INPUT_NAME.match(n) for n in names):
        raise ValueError(f"expected input names separated by commas, e.g. w,b; got {text!r}")
    return names


def _entry_text(name: str | None, index: tuple[int, ...]) -> str:
    digits = ",".join(str(i) for i in index)
    return digits if name is None else f"{name}[{digits}]"


@dataclass(frozen=True)
class CheckSettings:
    """How to check: the scheme, step and tolerance, which inputs and entries, the mode, how
    much to list, and the resources (worker processes, a budget of forward calls)."""

    method: str = "central"
    delta: float | None = None
    """One step for every entry; None: each entry its default step."""
    rtol: float | None = None
    atol: float | None = None
    """Given either, the tolerance is fixed (atol + rtol |numerical|); else from the estimate."""
    wrt: tuple[str, ...] | None = None
    """The inputs to check; None: every floating input the backward gives a gradient for."""
    entries: EntrySelection = field(default_factory=EntrySelection)
    details: str = "auto"
    top: int = 10
    mode: str = "full"
    """full: every selected entry; fast: random directions, then bisection; jvp: forward mode."""
    order: int = 1
    """2: after the gradient, its Hessian-vector product."""
    tangents: int = 2
    directions: int = 4
    seed: int = 0
    reference: str | None = None
    jobs: int | None = 1
    """Worker processes for a black-box model's forward calls; None: one per core."""
    max_calls: int = 0
    """Refuse up front a full check of a model file needing more forward calls (0: no limit)."""

    def validate(self, naming: Naming) -> None:
        """Raise InputError, worded for `naming`'s face, for a setting out of range or two
        settings that cannot go together."""
        say = naming.setting
        _one_of(naming, "method", self.method, METHODS)
        _one_of(naming, "details", self.details, DETAILS)
        _one_of(naming, "mode", self.mode, MODES)
        for name, value in (("rtol", self.rtol), ("atol", self.atol)):
            if value is not None and not (_is_number(value) and value >= 0):
                raise InputError(f"{say(name)} must be a finite number >= 0, got {value}")
        if self.delta is not None and not (_is_number(self.delta) and self.delta > 0):
            raise InputError(f"{say('delta')} must be a finite number > 0, got {self.delta}")
        for name, count in (
            ("top", self.top),
            ("tangents", self.tangents),
            ("directions", self.directions),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InputError(f"{say(name)} must be an integer >= 1; got {count!r}")
        if self.order not in (1, 2):
            raise InputError(f"{say('order')} must be 1 or 2; got {self.order!r}")
        if self.jobs is not None and (
            isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1
        ):
            raise InputError(f"{say('jobs')} must be an integer >= 1 (or None); got {self.jobs!r}")
        if self.mode != "full" and self.delta is not None:
            raise InputError(
                f"{say('mode', self.mode)} picks its own step per "
                f"{'direction' if self.mode == 'fast' else 'tangent'}; drop {say('delta')}"
            )
        if self.mode != "full" and self.reference is not None:
            raise InputError(f"{say('reference')} needs {say('mode', 'full')}")
        if self.mode == "jvp" and self.order == 2:
            raise InputError(
                f"use just one of {say('mode', 'jvp')} (first order, forward mode) or "
                f"{say('order', 2)}"
            )
        if (self.mode == "jvp" or self.order == 2) and self.entries.kind != "all":
            raise InputError(
                f"{say('order', 2)} and {say('mode', 'jvp')} check every element along random "
                f"tangents; drop {say('entries')}"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(naming: Naming, name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(
            f"{naming.setting(name)} must be one of {', '.join(allowed)}; got {value!r}"
        )
