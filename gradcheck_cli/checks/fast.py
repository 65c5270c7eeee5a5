"""--mode fast: check random directions instead of every entry, then localise what is wrong.

A full check of a black-box model costs a few forward passes per entry. One directional
derivative of f along a random v, against <g, v>, costs a few forward passes in all, and
disagrees, almost surely, as soon as the gradient is wrong anywhere: for v ~ N(0, I) and an
error vector e in the gradient, <e, v> ~ N(0, |e|^2), which is rarely small. So: test a few
random directions over every selected entry; if one fails, bisect. A block of entries is tested
with a fresh random direction restricted to it; failing blocks are halved until they are small
enough to check entry by entry. When a block fails but neither half does (a coin flip near the
tolerance, or errors that only add up over the whole block), the halves are tried again with
fresh directions, and then the block is checked one by one, or reported as a failing block
when it is too large for that: nothing a direction found is ever dropped.

Each directional derivative (numerics/directional.py) is a five-point difference from
f(x +- h v) and f(x +- 2h v), with its truncation estimated against a second five-point
difference that uses f(x +- 3h v), and the round-off of f's own size at that step. The same
evaluations give one-sided slopes, so a kink along v is judged as in the full check: the
gradient must lie between them.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.assembly import Batch, assemble_run_report, run_settings
from gradcheck_cli.checks.full import check_input
from gradcheck_cli.checks.judgement import (
    ANALYTIC_RTOL_ULPS,
    DOUBT,
    SAFETY,
    Tolerance,
    VerdictRule,
    working_dtype,
)
from gradcheck_cli.checks.selection import (
    describe_inputs,
    require_finite_value,
    resolve_wrt,
    select_entries,
    validate_gradient,
)
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.blas import single_threaded_blas
from gradcheck_cli.numerics.directional import (
    FIVE_POINT,
    directional_estimates,
    largest_entry_step,
)
from gradcheck_cli.numerics.estimates import DerivativeEstimates
from gradcheck_cli.numerics.models import Array, Gradients, Inputs, Model
from gradcheck_cli.numerics.schemes import Precision, Scheme, machine_epsilon
from gradcheck_cli.report import (
    DirectionCheck,
    FastEvidence,
    FastSettings,
    InputSummary,
    RunReport,
    UnlocalisedBlock,
)
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings, Naming

DEFAULT_DIRECTIONS = 4
"""Random directions over all selected entries. One already catches a wrong entry almost
surely; a few more make the chance of an unlucky cancellation negligible (see FastEvidence)."""

LEAF_SIZE = 8
"""Blocks this small are checked entry by entry rather than bisected further."""

RETRIES = 2
"""When a block fails and both its halves pass, the halves get this many more fresh
directions before the block is checked one by one."""

ONE_BY_ONE_LIMIT = 64
"""A failing block whose halves keep passing is checked one by one up to this size; a larger
one is reported as a failing block (its index range)."""

LOCALISE_LIMIT = 20
"""Stop localising after this many wrong entries: a gradient wrong everywhere would otherwise
cost more than the full check. The report says the count is a lower bound."""

ESCAPE_PROBABILITY = 1e-6
"""A passing run states the smallest error that would have shown except with this probability."""

Block = dict[str, NDArray[np.intp]]


def fast_check(
    target: Target,
    asked: CheckSettings = CheckSettings(mode="fast"),
    *,
    selections: Mapping[str, NDArray[np.intp]] | None = None,
    progress: Callable[[float, int], None] | None = None,
    jobs: int = 1,
    naming: Naming = COMMAND_LINE,
) -> RunReport:
    """Directional checks, then bisection to the wrong entries when a direction fails."""
    models, inputs, precision = list(target.models), target.inputs, target.precision
    rule = VerdictRule.of(asked, models[0], inputs, precision, naming)
    scheme, tolerance = rule.scheme, rule.tolerance
    directions = asked.directions
    gradients = validate_gradient(models[0], inputs)
    checked = resolve_wrt(inputs, gradients, asked.wrt, option=naming.setting("wrt"))
    everything: Block = select_entries(inputs, checked, selections)
    rng = np.random.default_rng(asked.seed)
    with np.errstate(all="ignore"):
        f0 = float(np.real(models[0].value(inputs)))
    require_finite_value(models[0], f0, inputs)
    found: list[Batch] = []
    checks: list[DirectionCheck] = []
    unlocalised: list[UnlocalisedBlock] = []
    stopped: set[str] = set()
    detectable: list[float] = []
    total_steps = len(models) * directions
    done = 0
    with single_threaded_blas():
        for number, each in enumerate(models, start=1):
            label = number if len(models) > 1 else None
            with np.errstate(all="ignore"):
                f_each = f0 if number == 1 else float(np.real(each.value(inputs)))
            probe = _Prober(
                each,
                inputs,
                validate_gradient(each, inputs),
                scheme,
                tolerance,
                f_each,
                rng,
                label,
                precision,
            )
            top_level = []
            for _ in range(directions):
                check = probe.direction(everything, depth=0)
                checks.append(check)
                top_level.append(check)
                done += 1
                if progress is not None:
                    progress(done, total_steps)
                if not check.passed:
                    break
            if all(c.passed for c in top_level):
                detectable.append(_detectable_error(top_level))
            elif all(c.passed or c.reason == "inconclusive" for c in top_level):
                pass  # nothing to localise: f's noise hides the gradient along a direction
            else:
                probe.localise(everything, limit=LOCALISE_LIMIT)
                found.extend(probe.leaves)
                checks.extend(probe.trail)
                unlocalised.extend(probe.unlocalised)
                stopped.update(probe.stopped)

    # Entries checked one by one (leaves of the bisection) become the report's checks.
    settings = run_settings(
        asked,
        rule,
        working_dtype(inputs),
        checked,
        cotangents=target.cotangents,
        jobs=jobs,
        details="all",
        mode="fast",
        fast=FastSettings(
            directions=directions,
            direction_scheme="complex-step"
            if scheme.imaginary
            else "five-point at h and 2h; truncation against a five-point at h and 3h",
            localise_limit=LOCALISE_LIMIT,
        ),
    )
    report = assemble_run_report(
        models[0],
        inputs,
        found,
        settings,
        f0=f0,
        about=target.about,
        input_infos=describe_inputs(
            inputs, target.sources, checked, gradients, selected_by=naming.setting("wrt")
        ),
        top=asked.top,
        output_shape=target.output_shape,
        lower_bounds=stopped,
    )
    # Entries covered by the directions, with the figures of those checked one by one.
    summary: dict[str, InputSummary] = {}
    for name, flat in everything.items():
        leaves = report.summary.get(name)
        one_by_one = leaves.entries if leaves else 0
        base = leaves or InputSummary(
            0, 0, 0, 0, 0.0, None, None, 0, failed_at_least=name in stopped
        )
        summary[name] = dataclasses.replace(
            base, entries=int(flat.size), checked_one_by_one=one_by_one
        )
    failed_somewhere = any(not c.passed for c in checks if c.depth == 0)
    evidence = FastEvidence(
        directions=directions,
        detectable_error=None if failed_somewhere or not detectable else max(detectable),
        escape_probability=ESCAPE_PROBABILITY,
        unlocalised=tuple(unlocalised),
    )
    return dataclasses.replace(
        report, summary=summary, directions=tuple(checks), omitted=0, fast=evidence
    )


def _detectable_error(passed: Sequence[DirectionCheck]) -> float:
    """The smallest error norm |e| that escapes every passed direction with probability at most
    ESCAPE_PROBABILITY.

    A direction passes with an error e in the gradient only if |<e, v>| <= c, where c is its
    tolerance plus the numerical derivative's own error (at most the tolerance again). For
    v ~ N(0, I), <e, v> ~ N(0, |e|^2), so P(|<e, v>| <= c) <= 2c / (sqrt(2 pi) |e|); over K
    independent directions the product. Setting it to p: |e| = sqrt(2/pi) geomean(c) p^(-1/K).
    """
    reach = [2 * c.tolerance for c in passed]
    if any(r == 0 for r in reach):
        return 0.0
    geometric = math.exp(sum(math.log(r) for r in reach) / len(reach))
    escape: float = ESCAPE_PROBABILITY ** (-1 / len(reach))
    return math.sqrt(2 / math.pi) * geometric * escape


DIRECTIONAL_JUMP_GROWTH = 1.25
"""The directional estimate's gap grows from h to 2h (|gap(2h) - 2 gap(h)|): about the gap for
a kink (it stays put), one and a half gaps for a jump (it halves: J / h on the jump's side).
Beyond this many gaps, f jumps along v within the step (judgement.JUMP_GROWTH, from h and h/2,
is the same test)."""


class _Prober:
    """Directional checks of one model at its inputs, and the bisection that localises
    failures (into `leaves`, `trail` and `unlocalised`)."""

    def __init__(
        self,
        model: Model,
        inputs: Inputs,
        gradients: Gradients,
        scheme: Scheme,
        tolerance: Tolerance,
        f0: float,
        rng: np.random.Generator,
        cotangent: int | None,
        precision: Precision,
    ) -> None:
        self.model, self.inputs = model, inputs
        self.gradients = gradients
        self.scheme, self.tolerance, self.f0 = scheme, tolerance, f0
        self.rng = rng
        self.cotangent = cotangent
        self.precision = precision
        dtype = working_dtype(inputs)
        self.eps = max(machine_epsilon(dtype), precision.eps or 0.0)
        self.leaves: list[Batch] = []
        self.trail: list[DirectionCheck] = []
        self.unlocalised: list[UnlocalisedBlock] = []
        self.wrong = 0
        self.stopped: set[str] = set()
        """Inputs with failing blocks left unexplored when localising reached its limit."""
        # The gradient's size per input: what a leaf's estimates are weighed against.
        self.scales = {
            name: float(np.max(np.abs(g), initial=0.0))
            for name, g in gradients.items()
            if g is not None
        }

    def direction(self, block: Block, depth: int) -> DirectionCheck:
        """The directional derivative along a fresh random v on `block` against <g, v>."""
        vectors = {}
        for name, flat in block.items():
            target = np.asarray(self.inputs[name])
            entries = np.zeros(target.size, dtype=np.float64)
            entries[flat] = self.rng.standard_normal(flat.size)
            vectors[name] = entries.reshape(target.shape)
        g_dot_v = 0.0
        g_abs_v = 0.0
        for name, v in vectors.items():
            gradient = np.asarray(self.gradients[name], dtype=np.float64)
            g_dot_v += float(np.sum(gradient * v))
            g_abs_v += float(np.sum(np.abs(gradient * v)))
        # Five-point for every real method: one derivative per direction is worth the better
        # stencil. No entry moves further than the block's largest entry's own step.
        stencil = self.scheme if self.scheme.imaginary else FIVE_POINT
        step = largest_entry_step(
            stencil,
            self.inputs,
            vectors,
            block,
            eps=self.eps,
            magnitude=abs(self.f0),
            variation=max(self.scales.values(), default=1.0),
        )
        estimates, _ = directional_estimates(
            self._value,
            self.inputs,
            vectors,
            ["f"],
            eps=self.eps,
            noise=self.precision.uncertainty,
            base={"f": np.asarray(self.f0)},
            scheme=stencil,
            step=step,
        )
        found = estimates["f"]
        numerical = float(found.numerical[0])
        estimate = float(found.error[0])
        reason = "ok"
        kink = None if self.scheme.imaginary else self._kink(found, g_dot_v)
        jumped = kink is not None and float(found.gap_growth[0]) > DIRECTIONAL_JUMP_GROWTH * float(
            found.one_sided_gap[0]
        )
        # <g, v> is a sum of many products: allow for its rounding in proportion to sum |g v|.
        tol = self.tolerance.atol + self.tolerance.rtol * abs(numerical)
        tol += ANALYTIC_RTOL_ULPS * self.eps * g_abs_v
        if self.tolerance.mode == "estimate":
            tol += SAFETY * estimate
        error = abs(numerical - g_dot_v)
        passed = bool(np.isfinite(numerical) and error <= tol)
        if jumped:  # f jumps along v within the step: no slope to vouch for (judgement.py)
            passed, reason = False, "inconclusive"
        elif kink is not None:
            low, high, slack = kink
            passed = bool(low - slack <= g_dot_v <= high + slack)
            reason = "kink" if passed else "kink-mismatch"
            tol = max(tol, slack)
        elif not passed:
            reason = "mismatch" if np.isfinite(numerical) else "non-finite"
        elif estimate > DOUBT * max(abs(g_dot_v), abs(numerical)):
            # Agreement within an estimate as large as what is compared shows nothing.
            passed, reason = False, "inconclusive"
        names = list(block)
        check = DirectionCheck(
            wrt=names[0] if len(names) == 1 else "+".join(names),
            entries=int(sum(f.size for f in block.values())),
            depth=depth,
            analytic=g_dot_v,
            numerical=numerical,
            abs_error=error,
            error_estimate=estimate,
            tolerance=tol,
            step=step,
            passed=passed,
            cotangent=self.cotangent,
            reason=reason,
        )
        if depth > 0:
            self.trail.append(check)
        return check

    def _value(self, inputs: Inputs) -> dict[str, Array]:
        """f as the directional estimator takes a function: one part, `f`."""
        return {"f": np.asarray(self.model.value(inputs))}

    def _kink(
        self, found: DerivativeEstimates, g_dot_v: float
    ) -> tuple[float, float, float] | None:
        """Where the direction fails and its one-sided slopes show a kink along v (a gap between
        them that does not shrink with the step), the range <g, v> must lie in, and its slack."""
        five = float(found.numerical[0])
        gap = float(found.one_sided_gap[0])
        growth = float(found.gap_growth[0])
        roundoff = float(found.roundoff[0])
        failing = not abs(five - g_dot_v) <= SAFETY * float(found.error[0])
        if not (
            failing
            and np.isfinite(five)
            and gap > DOUBT * max(abs(g_dot_v), abs(five))
            and growth > SAFETY * roundoff
            and growth > 0.25 * gap
        ):
            return None
        forward = float(found.forward_slope[0])
        backward = float(found.backward_slope[0])
        slope_error = float(found.slope_error[0])
        slack = SAFETY * slope_error + self.tolerance.rtol * max(abs(forward), abs(backward))
        return min(forward, backward), max(forward, backward), slack

    def localise(self, block: Block, *, limit: int) -> None:
        """Find the wrong entries behind a failed top-level direction, up to `limit` of them.

        Each input's entries are tested on their own first, then bisected."""
        parts = [(name, flat) for name, flat in block.items() if flat.size]
        self._settle_children(parts, depth=1, limit=limit, parent=None)

    def _settle_children(
        self,
        parts: Sequence[tuple[str, NDArray[np.intp]]],
        *,
        depth: int,
        limit: int,
        parent: tuple[str, NDArray[np.intp]] | None,
    ) -> None:
        """Test each part with fresh directions (retrying when none fails), then bisect those
        that fail. If none ever fails, the parent is checked one by one or reported."""
        failing: list[tuple[str, NDArray[np.intp]]] = []
        for _ in range(1 + RETRIES):
            failing = [
                (name, flat)
                for name, flat in parts
                if not self.direction({name: flat}, depth).passed
            ]
            if failing:
                break
        if not failing:
            # The parent failed, every part keeps passing: the error is real but spread too
            # thin, or sits on a tolerance's edge. Never drop it.
            blocks = [parent] if parent is not None else list(parts)
            for name, flat in blocks:
                if flat.size <= ONE_BY_ONE_LIMIT:
                    self._one_by_one(name, flat)
                else:
                    self._report_block(name, flat)
            return
        for position, (name, flat) in enumerate(failing):
            if self.wrong >= limit:
                self.stopped.update(other for other, _ in failing[position:])
                return
            if flat.size <= LEAF_SIZE:
                self._one_by_one(name, flat)
                continue
            half = flat.size // 2
            self._settle_children(
                [(name, flat[:half]), (name, flat[half:])],
                depth=depth + 1,
                limit=limit,
                parent=(name, flat),
            )

    def _one_by_one(self, name: str, flat: NDArray[np.intp]) -> None:
        gradient = self.gradients[name]
        assert gradient is not None
        verdicts = check_input(
            self.model,
            self.inputs,
            name,
            flat,
            gradient,
            self.scheme,
            None,
            self.tolerance,
            self.f0,
            structured=True,
            progress=None,
            precision=self.precision,
            scale=self.scales.get(name, 0.0),
        )
        self.leaves.append((name, self.cotangent, flat, verdicts))
        self.wrong += int(np.count_nonzero(verdicts.failed))

    def _report_block(self, name: str, flat: NDArray[np.intp]) -> None:
        shape = np.shape(self.inputs[name])
        first, last = (
            tuple(int(i) for i in np.unravel_index(int(k), shape)) for k in (flat.min(), flat.max())
        )
        self.unlocalised.append(UnlocalisedBlock(name, first, last, int(flat.size)))
