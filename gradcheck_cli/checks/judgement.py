"""The one place a verdict is decided: the tolerance policy and the judgement of each entry.

A verdict is |analytic - numerical| <= tolerance. By default the tolerance follows from each
entry's own error estimate (truncation + round-off, see numerics/estimates.py):
    tolerance = atol + rtol * |numerical| + SAFETY * error_estimate
with a tiny rtol for the analytic gradient's own rounding. Given rtol or atol, the tolerance is
fixed: atol + rtol * |numerical|. A verdict that is not "ok" carries its reason; an entry whose
error estimate is too large to vouch for anything is "inconclusive": neither passed nor failed,
and never part of a pass. Every check (full, fast, tangents, perturb) judges its entries here.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.estimates import DerivativeEstimates
from gradcheck_cli.numerics.models import Array, Inputs, Model, closed_form_model
from gradcheck_cli.numerics.schemes import SCHEMES, FloatArray, Precision, Scheme, machine_epsilon
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings, Naming

SAFETY = 10.0
"""Tolerance = SAFETY x the estimated error: the estimates are first-order, allow for their own
error. A wrong gradient still fails as soon as its error is 10x what differencing explains."""

DOUBT = 1e-2
"""Evidence: an error estimate above this share of the size of what is compared (the entry's
own gradient, or the largest of its input's) cannot vouch for a verdict: such an entry is
inconclusive. Between this share of the entry's own size and of its input's, it passes with a
reason (doubtful)."""

ANALYTIC_RTOL_ULPS = 64
"""Default rtol in estimate mode, in units of eps: room for the analytic gradient's own rounding."""

FIXED_RTOL = {"float64": 1e-6, "float32": 1e-3, "float16": 1e-2}
FIXED_ATOL = {"float64": 1e-9, "float32": 1e-5, "float16": 1e-3}
"""Defaults for the tolerance left unspecified when only one of --rtol/--atol is given."""


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    mode: str  # "estimate" or "fixed"

    @staticmethod
    def resolve(dtype: np.dtype[np.generic], rtol: float | None, atol: float | None) -> Tolerance:
        """The estimate-based tolerance, or the fixed one when rtol or atol is given (the other
        then defaults per dtype). The values were validated with the settings."""
        if rtol is None and atol is None:
            return Tolerance(ANALYTIC_RTOL_ULPS * machine_epsilon(dtype), 0.0, "estimate")
        key = np.dtype(dtype).name
        return Tolerance(
            FIXED_RTOL[key] if rtol is None else rtol,
            FIXED_ATOL[key] if atol is None else atol,
            "fixed",
        )

    def of(self, numerical: FloatArray, estimate: FloatArray) -> FloatArray:
        with np.errstate(invalid="ignore"):
            tol = self.atol + self.rtol * np.abs(numerical)
            if self.mode == "estimate":
                tol = tol + SAFETY * estimate
        return np.asarray(tol)


@dataclass(frozen=True)
class VerdictRule:
    """What produced a verdict: the scheme, the step (one for every entry, or None for each
    entry's default), the tolerance, and how precisely f is known. Reports state it."""

    scheme: Scheme
    delta: float | None
    tolerance: Tolerance
    precision: Precision = Precision()

    @staticmethod
    def of(
        asked: CheckSettings,
        model: Model,
        inputs: Inputs,
        precision: Precision,
        naming: Naming = COMMAND_LINE,
    ) -> VerdictRule:
        """The rule for `asked` on `model` at `inputs` (complex-step only where it applies)."""
        dtype = working_dtype(inputs)
        return VerdictRule(
            resolve_scheme(asked.method, model, naming),
            asked.delta,
            Tolerance.resolve(dtype, asked.rtol, asked.atol),
            precision,
        )


@dataclass(frozen=True)
class Verdicts:
    """Per-entry judgement for a batch (arrays of shape (B,))."""

    analytic: FloatArray
    numerical: FloatArray
    abs_error: FloatArray
    error_estimate: FloatArray
    tolerance: FloatArray
    steps: FloatArray
    reasons: NDArray[np.str_]
    passed: NDArray[np.bool_]

    @functools.cached_property
    def inconclusive(self) -> NDArray[np.bool_]:
        return np.asarray(self.reasons == "inconclusive")

    @functools.cached_property
    def failed(self) -> NDArray[np.bool_]:
        return np.asarray(~self.passed & ~self.inconclusive)

    @functools.cached_property
    def badness(self) -> FloatArray:
        """How far past its tolerance each entry is (> 1 fails): orders the worst first."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(
                self.tolerance > 0,
                self.abs_error / self.tolerance,
                np.where(self.abs_error > 0, np.inf, 0.0),
            )
        return np.asarray(np.where(np.isfinite(self.numerical), ratio, np.inf))


def resolve_scheme(method: str, model: Model, naming: Naming = COMMAND_LINE) -> Scheme:
    """The scheme called `method`; complex-step only for a model known to be holomorphic."""
    if method not in SCHEMES:
        raise InputError(f"unknown method {method!r}: expected one of {', '.join(SCHEMES)}")
    scheme = SCHEMES[method]
    if scheme.imaginary and not model.complex_analytic:
        raise InputError(
            f"method complex-step needs a model that is complex-analytic; {model.name} is not "
            "(a kink such as relu, abs or max, or a model file that does not declare "
            f"complex_safe = True): use {naming.setting('method', 'central')}"
        )
    return scheme


def validate_delta(
    delta: float | None, values: Array, label: str, naming: Naming = COMMAND_LINE
) -> None:
    """A fixed step must be large enough to move every checked entry (the settings checked
    that it is finite and positive)."""
    if delta is None:
        return
    flat = np.asarray(values).reshape(-1)
    moved = flat + flat.dtype.type(delta)
    stuck = np.flatnonzero(moved == flat)
    if stuck.size:
        value = float(flat[stuck[0]])
        raise InputError(
            f"{naming.setting('delta', f'{delta:g}')} is too small for {flat.dtype.name}: "
            f"{label} + delta == {label} ({value:g}); "
            f"use a delta above {float(np.spacing(np.abs(flat[stuck[0]]))):.3g}"
        )


def judge(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat: NDArray[np.intp],
    analytic: FloatArray,
    estimates: DerivativeEstimates,
    tolerance: Tolerance,
    *,
    scale: float,
    recheck: Callable[[NDArray[np.intp]], DerivativeEstimates] | None,
    slopes: Callable[[NDArray[np.intp], FloatArray], DerivativeEstimates] | None,
    user_step: bool,
    rounding: FloatArray | None = None,
    resolution: FloatArray | None = None,
    unresolved: bool = False,
    doubt: float = DOUBT,
) -> Verdicts:
    """Verdict and reason per entry.

    `scale` is the size of the input's gradient (the largest |numerical| of its entries): an
    entry's estimate is weighed against it and against the entry's own size. `recheck`
    recomputes entries at the default step; `slopes` gives one-sided slopes at the given steps
    where `estimates` lacks them (the dense path). `rounding` is the error of the analytic
    gradient itself, per entry, when it is computed in a low precision (`precision.py`): it adds
    to the estimate, so it widens the tolerance and weighs in the evidence like the
    difference's own error (an entry it leaves too unsure is inconclusive, never passed); an
    entry beyond its tolerance by less than its `resolution` (what that precision's rounding of
    cancelling terms can make, which no estimate from outside the code sees) is inconclusive
    too, not failed. `unresolved`: the precision's own rounding is so coarse that no tolerance
    built on it resolves an error of DOUBT (SAFETY x u > 1%: bfloat16): nothing it agrees with
    is vouched for, every entry that would pass is inconclusive (exact zeros aside). `doubt`:
    the share of what is compared above which an estimate cannot vouch (DOUBT, or what a
    coarse precision resolves at best where its formula was verified in float64).
    """
    numerical = estimates.numerical
    with np.errstate(invalid="ignore"):
        abs_error = np.abs(analytic - numerical)
    estimate = estimates.error if rounding is None else estimates.error + rounding
    tol = tolerance.of(numerical, estimate)
    with np.errstate(invalid="ignore"):
        within = abs_error <= tol
    finite = np.isfinite(numerical)
    size = np.maximum(np.abs(analytic), np.abs(numerical))
    # An exact zero on both sides (a dead relu, a zero weight) needs no estimate: f did not
    # move at all, and the gradient says so.
    exact_zero = (analytic == 0) & (numerical == 0)
    seen = finite & (size > 0)
    # Below the noise floor the difference cannot see the gradient itself; it can still vouch
    # for it to the input's scale.
    saturated = seen & (size < SAFETY / 2 * estimates.roundoff)
    # Evidence: the estimate clearly below what is compared: the entry, its input's gradient,
    # or (where they cancel) the terms the derivative sums.
    compared = np.maximum(np.maximum(size, scale), estimates.terms)
    conclusive = exact_zero | (finite & (estimate <= doubt * compared))
    doubtful = seen & ~saturated & (estimate > doubt * size)
    step_reason = np.where(
        estimates.roundoff >= estimates.truncation, "step-too-small", "step-too-large"
    )

    if rounding is not None:  # the gradient's own precision, not the step, is what is unsure
        step_reason = np.where(rounding >= estimates.error, "rounding", step_reason)
    reasons = np.full(flat.shape, "ok", dtype="<U14")
    passed = within & conclusive
    reasons[doubtful] = step_reason[doubtful]
    reasons[saturated] = "saturated"
    # Saturated entries differ by less than their own noise floor: within reach of any
    # tolerance built on the estimate, so they pass wherever the estimate is small next to the
    # input's scale.
    passed[saturated] = conclusive[saturated]

    # A kink within the step explains a disagreement or a large estimate, but the gradient
    # must still lie between the one-sided slopes there.
    suspect = finite & ~exact_zero & (~within | doubtful | estimates.shrunk)
    # A jump is no kink: no gradient lies right or wrong between slopes that grow like 1/h.
    jump = jumps_within_step(model, wrt, estimates, suspect, size)
    kink = kinks_within_step(model, inputs, wrt, flat, estimates, suspect & ~jump, size)
    if kink.any():
        at_kink = np.flatnonzero(kink)
        sided = estimates.subset(at_kink)
        if np.isnan(sided.forward_slope).any() and slopes is not None:
            sided = slopes(flat[at_kink], estimates.steps[at_kink])
        low = np.minimum(sided.forward_slope, sided.backward_slope)
        high = np.maximum(sided.forward_slope, sided.backward_slope)
        sided_error = (
            sided.slope_error if rounding is None else sided.slope_error + rounding[at_kink]
        )
        slack = tolerance.of(high, sided_error)
        with np.errstate(invalid="ignore"):
            between = (analytic[at_kink] >= low - slack) & (analytic[at_kink] <= high + slack)
        reasons[at_kink] = np.where(between, "kink", "kink-mismatch")
        passed[at_kink] = between
        tol[at_kink] = np.where(between, tol[at_kink], slack)

    failing = finite & ~within & ~saturated & ~kink & ~jump
    # At a step the user chose, every entry that is not plainly "ok" gets a second opinion at the
    # default step: a user's step can be the very reason for a noise floor, a kink within reach or
    # a mismatch. If the gradient passes there, the step was the problem, not the gradient
    # (unless the default step has its own reason: a kink, saturation); if it fails, it is wrong.
    suspects = finite & ~kink & ((reasons != "ok") | ~passed)
    if user_step and recheck is not None and suspects.any():
        where = np.flatnonzero(suspects)
        again = recheck(flat[where])
        second = judge(
            model,
            inputs,
            wrt,
            flat[where],
            analytic[where],
            again,
            tolerance,
            scale=scale,
            recheck=None,
            slopes=slopes,
            user_step=False,
            rounding=None if rounding is None else rounding[where],
            resolution=None if resolution is None else resolution[where],
            doubt=doubt,
        )
        blame_step = np.isin(second.reasons, ("ok", "step-too-small", "step-too-large"))
        # Which way the user's step was off.
        blame = np.where(estimates.steps[where] < again.steps, "step-too-small", "step-too-large")
        reasons[where] = np.where(second.passed & blame_step, blame, second.reasons)
        passed[where] = second.passed
    else:
        reasons[failing] = "mismatch"
        if resolution is not None:
            # Beyond the rounding estimated, not beyond what the precision can make: undecided.
            with np.errstate(invalid="ignore"):
                reasons[failing & (abs_error <= resolution)] = "inconclusive"
        # Within the tolerance but without the evidence to vouch for it.
        unproven = finite & (within | saturated) & ~conclusive & ~kink
        reasons[unproven] = "inconclusive"
    reasons[jump] = "inconclusive"
    passed[jump] = False
    reasons[~finite] = "non-finite"
    passed[~finite] = False
    if unresolved:
        unvouched = passed & ~exact_zero
        reasons[unvouched] = "inconclusive"
        passed[unvouched] = False
    return Verdicts(analytic, numerical, abs_error, estimate, tol, estimates.steps, reasons, passed)


JUMP_GROWTH = 2.0
"""The one-sided slopes' gap at h against its growth from h/2 (|gap(h) - 2 gap(h/2)|): about 0
for a smooth f, about the gap itself for a kink (the gap stays put as the step halves), about
three times it for a jump (the gap doubles: a slope of J / h on the jump's side). Beyond this
many gaps, f is taken to jump within the step."""


def jumps_within_step(
    model: Model,
    wrt: str,
    estimates: DerivativeEstimates,
    suspect: NDArray[np.bool_],
    size: FloatArray,
) -> NDArray[np.bool_]:
    """Where f jumps within the step (int(sum(x)) at an integer sum, a threshold's step), among
    the suspect entries of a black box: f is not continuous there, so its one-sided slopes
    bound nothing (one of them is J / h) and no gradient is vouched for (inconclusive, not
    passed; a step elsewhere shows f's slope). The built-in models are continuous."""
    if closed_form_model(model, wrt) is not None:
        return np.zeros(suspect.shape, dtype=bool)
    growing = _slopes_part(estimates, suspect, size)
    return np.asarray(growing & (estimates.gap_growth > JUMP_GROWTH * estimates.one_sided_gap))


def _slopes_part(
    estimates: DerivativeEstimates, suspect: NDArray[np.bool_], size: FloatArray
) -> NDArray[np.bool_]:
    """Where a black box's one-sided slopes do not come together as a smooth f's do when the
    step halves (their gap's growth is above round-off and the gap or it above DOUBT of the
    entry): a kink, or a jump, within the step."""
    gap, growth = estimates.one_sided_gap, estimates.gap_growth
    return np.asarray(
        suspect & (np.maximum(gap, growth) > DOUBT * size) & (growth > SAFETY * estimates.roundoff)
    )


def kinks_within_step(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat: NDArray[np.intp],
    estimates: DerivativeEstimates,
    suspect: NDArray[np.bool_],
    size: FloatArray,
) -> NDArray[np.bool_]:
    """Where a kink lies within the step, among the suspect entries."""
    if not suspect.any():
        return np.zeros(flat.shape, dtype=bool)
    structured = closed_form_model(model, wrt)
    if structured is not None:
        X, W = inputs["X"], inputs["W"]
        rows, cols = np.unravel_index(flat, inputs[wrt].shape)
        with np.errstate(all="ignore"):
            hit = structured.kink_within(
                X,
                W,
                X @ W,
                wrt,  # type: ignore[arg-type]  # X or W: closed_form_model says so
                np.asarray(rows),
                np.asarray(cols),
                estimates.reach,
            )
        return np.asarray(suspect & hit)
    # A black box shows a kink by its one-sided slopes: their gap stays put as the step halves,
    # where for a smooth f it would halve with it.
    apart = _slopes_part(estimates, suspect, size)
    return np.asarray(apart & (estimates.gap_growth > 0.25 * estimates.one_sided_gap))


def scale_of(numerical: FloatArray) -> float:
    """The size of an input's gradient: the largest finite |numerical| of its entries."""
    finite = np.abs(numerical[np.isfinite(numerical)])
    return float(finite.max()) if finite.size else 0.0


def floating(array: Array) -> bool:
    """Inputs that can be perturbed: real floating arrays (integers and booleans are labels,
    masks and counts: constants)."""
    return np.asarray(array).dtype.kind in "fc"


def working_dtype(inputs: Inputs) -> np.dtype[np.generic]:
    """The working precision: that of the floating inputs (float64 when there are none)."""
    kinds = [np.asarray(a).dtype for a in inputs.values() if floating(a)]
    return np.result_type(*kinds) if kinds else np.dtype(np.float64)
