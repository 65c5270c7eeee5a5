"""The side-effect checks of a PyTorch or JAX function (issue 23): the numpy checks' verdicts,
decided and worded alike (`effect_words`), on what the framework's adapter sees at its edge
(`frameworks.effects`: version counters and values of the tensors autograd hands the user's
code, uninitialised memory filled by the framework itself).

The calls, as for numpy code: forward once recording for backward (what it wrote into its
inputs), and once more with uninitialised memory filled with NaN rather than otherwise (whether
its outputs moved); the user's backward twice on that one record, the second time with memory
filled with NaN, and a third time as the first only when the two differ (the first and third
agree: it reads memory it never wrote; they differ too: it is not re-entrant). A backward that
wrote into what forward saved would see its own writes the second time: its later calls each
get a record of their own. Where the record holds no backward of the user's (autograd's own
formulas) only forward is checked. JAX arrays cannot be written into and `jnp.empty` is zeros: a JAX
function's probe has re-entrancy alone (`EffectProbe.kinds`).

Pure numpy: the framework stays behind the probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.frameworks.effects import Backwarded, EffectProbe, Forwarded
from gradcheck_cli.numerics.models import Array
from gradcheck_cli.report import SideEffect
from gradcheck_cli.subject.calling import call_user_function
from gradcheck_cli.subject.conventions import ModelFile
from gradcheck_cli.subject.effect_words import (
    cache_effect,
    dout_effect,
    gradients_gap,
    input_effect,
    outputs_gap,
    reentrant_effect,
    uninitialised_effect,
)

MOVED_VERSION = " (its version counter moved: an in-place operation on it)"
"""How a write is told that left every value as it was."""


def framework_side_effects(
    model_file: ModelFile,
    probe: EffectProbe,
    named: Mapping[str, object],
    cotangents: Sequence[Array],
    tolerance: float,
) -> tuple[SideEffect, ...]:
    """Every check of `probe.kinds`, each passed or not, at the arguments `named` (inputs and
    parameters) with the cotangents the check's first model uses (none for a scalar)."""
    dialect = probe.dialect
    kinds = probe.kinds
    vectors = list(cotangents) or None

    def forward(filled: bool) -> Forwarded:
        found = call_user_function(
            model_file, probe.forward_role, probe.forward, [named], {"filled": filled}
        )
        return cast(Forwarded, found)

    first = forward(False)
    effects = []
    role = probe.forward_role
    if "input-modified" in kinds:
        effects.append(
            input_effect(role, first.writes, "forward", dialect, unchanged=MOVED_VERSION)
        )
    if "uninitialised-memory" in kinds:
        try:
            filled: list[Array] | str = forward(True).outputs
        except UserCodeError as error:
            filled = str(error)
        gap = outputs_gap(first.outputs, filled, tolerance)
        effects.append(uninitialised_effect(role, gap, "the output", dialect))
    backward_role = first.backward_role
    if backward_role is None or isinstance(first.outputs, str):
        return tuple(effects)

    def backward(graph: object, filled: bool) -> Backwarded:
        try:
            found = call_user_function(
                model_file, backward_role, probe.backward, [graph, vectors], {"filled": filled}
            )
        except UserCodeError as error:
            return Backwarded(str(error))
        return cast(Backwarded, found)

    # The first call fails as any call of the check would: its error is the run's.
    once = cast(
        Backwarded,
        call_user_function(
            model_file, backward_role, probe.backward, [first.graph, vectors], {"filled": False}
        ),
    )
    if "dout-modified" in kinds:
        effects.append(
            dout_effect(
                backward_role, once.dout_writes, first.douts, dialect, unchanged=MOVED_VERSION
            )
        )
    cache = " and ".join(first.cache) or "the cache"
    if "cache-modified" in kinds:
        effects.append(
            cache_effect(backward_role, once.cache_writes, cache, unchanged=MOVED_VERSION)
        )

    def record() -> object:
        """The record a further call uses: the first, unless backward wrote into it."""
        return forward(False).graph if once.cache_writes else first.graph

    given = [*first.douts, cache]
    memory = "uninitialised-memory" in kinds
    second = backward(record(), memory)
    gap = gradients_gap(once.gradients, second.gradients, tolerance)
    if gap is None or not memory:
        if "not-reentrant" in kinds:
            effects.append(reentrant_effect(backward_role, gap, tolerance, given))
        if memory:
            effects.append(uninitialised_effect(backward_role, None, "the result", dialect))
        return tuple(effects)
    # Once more as the first call was (its memory filled the other way, last: what the check's
    # own calls are handed afterwards is no NaN of ours).
    third = backward(record(), False)
    repeat = gradients_gap(once.gradients, third.gradients, tolerance)
    if "not-reentrant" in kinds:
        effects.append(reentrant_effect(backward_role, repeat, tolerance, given))
    if repeat is None:  # the same twice, not with memory filled: it reads what it never wrote
        effects.append(uninitialised_effect(backward_role, gap, "the result", dialect))
    return tuple(effects)
