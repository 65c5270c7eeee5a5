"""How the side-effect checks compare two results and say what they found: one wording for
numpy code (`side_effects`) and a framework's (`framework_effects`), which differ only in the
`Dialect` (np.empty or torch.empty, `.copy()` or `.clone()`).

Pure numpy: nothing here knows about click or rich, nor imports a framework.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gradcheck_cli.frameworks.effects import INPUT_HELD, Dialect, Write
from gradcheck_cli.numerics.models import Array
from gradcheck_cli.report import SideEffect

NUMPY = Dialect()


@dataclass(frozen=True)
class Gap:
    """How two results differ: in what (`dx`), by how much, and at which entry (`dx[0,2]`)
    with its two values; or, with no entry, the message of a call that failed."""

    name: str
    size: float
    entry: str
    first: str
    second: str


def failure_gap(message: str) -> Gap:
    """A call that failed where the other returned: the difference is its error."""
    return Gap("", float("inf"), "", "", message.partition(": ")[2] or message)


def values_gap(name: str, a: Array, b: Array) -> Gap | None:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return Gap(name, float("inf"), f"the shape of {name}", str(a.shape), str(b.shape))
    with np.errstate(all="ignore"):
        lone_nan = np.isnan(a) != np.isnan(b)
        difference = np.where(np.isnan(a) | np.isnan(b), 0.0, np.abs(a - b))
    if not (lone_nan.any() or (difference > 0).any()):
        return None
    size = float("inf") if lone_nan.any() else float(np.max(difference))
    where = lone_nan if lone_nan.any() else difference == np.max(difference)
    at = tuple(int(i) for i in np.argwhere(where)[0])
    entry = f"{name}[{','.join(map(str, at))}]" if at else name
    return Gap(name, size, entry, f"{a[at].item():.6g}", f"{b[at].item():.6g}")


def outputs_gap(
    one: Sequence[Array] | str, two: Sequence[Array] | str, tolerance: float
) -> Gap | None:
    """Where two calls' outputs differ beyond `tolerance`; an output may be the error a call
    failed with (the same error twice is no difference)."""
    if isinstance(one, str) or isinstance(two, str):
        if one == two:
            return None
        return failure_gap(two if isinstance(two, str) else str(one))
    for number, (a, b) in enumerate(zip(one, two, strict=False), start=1):
        name = "out" if len(one) == 1 else f"out{number}"
        gap = values_gap(name, a, b)
        if gap is not None and not gap.size <= tolerance:
            return gap
    return None


def gradients_gap(
    one: Mapping[str, Array | None] | str, two: Mapping[str, Array | None] | str, tolerance: float
) -> Gap | None:
    """Where two results of backward differ beyond `tolerance`; a result may be the error a
    call failed with (the same error twice is no difference)."""
    if isinstance(one, str) or isinstance(two, str):
        if one == two:
            return None
        return failure_gap(two if isinstance(two, str) else str(one))
    for name, a in one.items():
        b = two.get(name)
        if a is None or b is None:
            continue
        gap = values_gap(f"d{name}", a, b)
        if gap is not None and not gap.size <= tolerance:
            return gap
    return None


# --- What each check says ------------------------------------------------------------------------


def names_of(written: Sequence[Write]) -> list[str]:
    return list(dict.fromkeys(w.name for w in written))


def example(written: Sequence[Write]) -> str:
    """`dout[0,2] was 0.31, is 0 after the call`: the first entry that changed."""
    if not written:
        return ""
    first = written[0]
    now, before = np.asarray(first.now), np.asarray(first.before)
    if now.shape != before.shape:
        return f": {first.name} changed shape"
    with np.errstate(all="ignore"):
        moved = ~((now == before) | (np.isnan(now) & np.isnan(before)))
    if not moved.any():
        return ""
    at = tuple(int(i) for i in np.argwhere(moved)[0])
    index = f"[{','.join(map(str, at))}]" if at else ""
    return (
        f": {first.name}{index} was {before[at].item():.6g}, is {now[at].item():.6g} after the call"
    )


def listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def dout_effect(
    role: str,
    written: Sequence[Write],
    arguments: Sequence[str],
    dialect: Dialect = NUMPY,
    *,
    unchanged: str = "",
) -> SideEffect:
    """`unchanged`: how the write was seen where no value changed."""
    names = names_of(written)
    if not names:
        told = f"{role} leaves {listed(list(arguments))} as it was given"
        return SideEffect("dout-modified", role, True, (), told)
    message = (
        f"{role} writes into {listed(names)}, the gradient of forward's output it is given"
        f"{example(written) or unchanged}: the caller's upstream gradient is corrupted (work on "
        f"a copy: {names[0] if dialect.whole else names[0].partition('[')[0]}{dialect.copy})"
    )
    return SideEffect("dout-modified", role, False, tuple(names), message)


def cache_effect(
    role: str, written: Sequence[Write], cache: str, *, unchanged: str = ""
) -> SideEffect:
    names = names_of(written)
    if not names:
        return SideEffect(
            "cache-modified", role, True, (), f"{role} leaves {cache} as forward saved it"
        )
    held = [w.holds for w in written if w.holds]
    # forward's inputs x and w together: `forward's input x and w`
    inputs = [h.removeprefix(INPUT_HELD) for h in held if h.startswith(INPUT_HELD)]
    others = [h for h in held if not h.startswith(INPUT_HELD)]
    holding = list(dict.fromkeys(([INPUT_HELD + listed(inputs)] if inputs else []) + others))
    holds = f" (which holds {listed(holding)})" if holding else ""
    message = (
        f"{role} writes into {listed(names)}{holds}, what forward saved for it"
        f"{example(written) or unchanged}: a second backward on the same {cache} starts from "
        "what this one wrote"
    )
    return SideEffect("cache-modified", role, False, tuple(names), message)


def input_effect(
    role: str,
    written: Sequence[Write],
    which: str,
    dialect: Dialect = NUMPY,
    *,
    unchanged: str = " (a read-only view of it raised)",
) -> SideEffect:
    names = names_of(written)
    if not names:
        return SideEffect("input-modified", role, True, (), f"{role} leaves its inputs as given")
    message = (
        f"{role} writes into its input {listed(names)}{example(written) or unchanged}: the "
        f"caller's {dialect.array} changes with every call ({which} got a copy here, so the "
        "check's numbers are unaffected)"
    )
    return SideEffect("input-modified", role, False, tuple(names), message)


def reentrant_effect(role: str, gap: Gap | None, tolerance: float, given: list[str]) -> SideEffect:
    """`given`: what both calls got the same of (`dout and cache`)."""
    same = f"the same {listed(given)}" if given else "the same inputs"
    if gap is None:
        return SideEffect("not-reentrant", role, True, (), f"two calls of {role} with {same} agree")
    if not gap.entry:
        found = f"one call returns and the next fails ({gap.second})"
    else:
        found = (
            f"give {gap.entry} = {gap.first} and then {gap.second} (more than --nondet-tol "
            f"{tolerance:g} apart)"
        )
    message = (
        f"{role} is not re-entrant: two calls with {same} {found}: does it keep a buffer "
        "between calls, or add into a result it should assign?"
    )
    return SideEffect("not-reentrant", role, False, (gap.name,) if gap.name else (), message)


def uninitialised_effect(
    role: str, gap: Gap | None, what: str, dialect: Dialect = NUMPY
) -> SideEffect:
    if gap is None:
        told = f"{what} of {role} is the same with {dialect.memory} {dialect.either}"
        return SideEffect("uninitialised-memory", role, True, (), told)
    name = gap.name
    if not gap.entry:  # it failed: a NaN it returned, or one it could not take
        found = gap.second
        named = re.search(r"non-finite ([\w.]+)\[", found)
        name = named.group(1) if named else ""
    else:
        found = f"{gap.entry} is {gap.second} instead of {gap.first}"
    message = (
        f"{role} depends on uninitialised memory: with {dialect.memory} {dialect.filled}, "
        f"{found}: {dialect.reader} is read before it is written"
    )
    return SideEffect("uninitialised-memory", role, False, (name,) if name else (), message)
