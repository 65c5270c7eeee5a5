"""The checks: compare an analytic gradient with finite differences and judge each entry.

`run_check` (every entry, or a selection, of every checked input), `perturb_check` (the seed's
experiment: add delta to one entry and compare the change in f with the predicted one) and
`sweep_check` (the Taylor test). Each returns a report object (report.py); the CLI decides exit
codes, renderers draw.

Inputs are named arrays of any shape (`{"x": ..., "w": ..., "b": ...}`); an entry is a flat
index into one of them, reported as an index tuple of that array's own rank.

A verdict is |analytic - numerical| <= tolerance. By default the tolerance follows from each
entry's own error estimate (truncation + round-off, see differences.py):
    tolerance = atol + rtol * |numerical| + SAFETY * error_estimate
with a tiny rtol for the analytic gradient's own rounding. Given --rtol or --atol, the
tolerance is fixed: atol + rtol * |numerical|. A verdict that is not "ok" carries its reason;
an entry whose error estimate is too large to vouch for anything is "inconclusive": neither
passed nor failed, and never part of a pass.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.diagnosis import Diagnosis, diagnose
from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics import kernels, workers
from gradcheck_cli.numerics.blas import single_threaded_blas
from gradcheck_cli.numerics.estimates import (
    DerivativeEstimates,
    estimate_at_default_steps,
    estimate_derivatives,
    one_step_estimates,
)
from gradcheck_cli.numerics.models import Array, ElementwiseModel, Gradients, Inputs, Model
from gradcheck_cli.numerics.schemes import SCHEMES, FloatArray, Precision, Scheme, machine_epsilon
from gradcheck_cli.numerics.workers import Parallel
from gradcheck_cli.report import (
    EntryCheck,
    InputInfo,
    InputSummary,
    ModelInfo,
    OutputShape,
    Perturbation,
    PerturbReport,
    RunReport,
    Settings,
    SweepReport,
    SweepRow,
    entry_label,
)

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

FIXED_RTOL = {"float64": 1e-6, "float32": 1e-3}
FIXED_ATOL = {"float64": 1e-9, "float32": 1e-5}
"""Defaults for the tolerance left unspecified when only one of --rtol/--atol is given."""

AUTO_LIST_LIMIT = 1000
"""--details auto lists every entry up to this many; beyond, the failed and the worst ones."""

ProgressCallback = Callable[[float, int], None]
"""progress(done, total), in entries."""


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    mode: str  # "estimate" or "fixed"

    @staticmethod
    def resolve(dtype: np.dtype[np.generic], rtol: float | None, atol: float | None) -> Tolerance:
        for name, value in (("rtol", rtol), ("atol", atol)):
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise InputError(f"--{name} must be a finite number >= 0, got {value}")
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


def resolve_scheme(method: str, model: Model) -> Scheme:
    if method not in SCHEMES:
        raise InputError(f"unknown method {method!r}: expected one of {', '.join(SCHEMES)}")
    scheme = SCHEMES[method]
    if scheme.imaginary and not model.complex_analytic:
        raise InputError(
            f"method complex-step needs a model that is complex-analytic; {model.name} is not "
            "(a kink such as relu, abs or max, or a model file that does not declare "
            "complex_safe = True): use --method central"
        )
    return scheme


def validate_delta(delta: float | None, values: Array, label: str) -> None:
    """A fixed step must be positive, finite, and large enough to move every checked entry."""
    if delta is None:
        return
    if not (np.isfinite(delta) and delta > 0):
        raise InputError(f"--delta must be a finite number > 0, got {delta}")
    flat = np.asarray(values).reshape(-1)
    moved = flat + flat.dtype.type(delta)
    stuck = np.flatnonzero(moved == flat)
    if stuck.size:
        value = float(flat[stuck[0]])
        raise InputError(
            f"--delta {delta:g} is too small for {flat.dtype.name}: "
            f"{label} + delta == {label} ({value:g}); "
            f"use a delta above {float(np.spacing(np.abs(flat[stuck[0]]))):.3g}"
        )


def _judge(
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
) -> Verdicts:
    """Verdict and reason per entry.

    `scale` is the size of the input's gradient (the largest |numerical| of its entries): an
    entry's estimate is weighed against it and against the entry's own size. `recheck`
    recomputes entries at the default step; `slopes` gives one-sided slopes at the given steps
    where `estimates` lacks them (the dense path).
    """
    numerical = estimates.numerical
    with np.errstate(invalid="ignore"):
        abs_error = np.abs(analytic - numerical)
    estimate = estimates.error
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
    conclusive = exact_zero | (finite & (estimate <= DOUBT * compared))
    doubtful = seen & ~saturated & (estimate > DOUBT * size)
    step_reason = np.where(
        estimates.roundoff >= estimates.truncation, "step-too-small", "step-too-large"
    )

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
    kink = _kinks(model, inputs, wrt, flat, estimates, suspect, size)
    if kink.any():
        at_kink = np.flatnonzero(kink)
        sided = estimates.subset(at_kink)
        if np.isnan(sided.forward_slope).any() and slopes is not None:
            sided = slopes(flat[at_kink], estimates.steps[at_kink])
        low = np.minimum(sided.forward_slope, sided.backward_slope)
        high = np.maximum(sided.forward_slope, sided.backward_slope)
        slack = tolerance.of(high, sided.slope_error)
        with np.errstate(invalid="ignore"):
            between = (analytic[at_kink] >= low - slack) & (analytic[at_kink] <= high + slack)
        reasons[at_kink] = np.where(between, "kink", "kink-mismatch")
        passed[at_kink] = between
        tol[at_kink] = np.where(between, tol[at_kink], slack)

    failing = finite & ~within & ~saturated & ~kink
    # At a step the user chose, every entry that is not plainly "ok" gets a second opinion at the
    # default step: a user's step can be the very reason for a noise floor, a kink within reach or
    # a mismatch. If the gradient passes there, the step was the problem, not the gradient
    # (unless the default step has its own reason: a kink, saturation); if it fails, it is wrong.
    suspects = finite & ~kink & ((reasons != "ok") | ~passed)
    if user_step and recheck is not None and suspects.any():
        where = np.flatnonzero(suspects)
        again = recheck(flat[where])
        second = _judge(
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
        )
        blame_step = np.isin(second.reasons, ("ok", "step-too-small", "step-too-large"))
        # Which way the user's step was off.
        blame = np.where(estimates.steps[where] < again.steps, "step-too-small", "step-too-large")
        reasons[where] = np.where(second.passed & blame_step, blame, second.reasons)
        passed[where] = second.passed
    else:
        reasons[failing] = "mismatch"
        # Within the tolerance but without the evidence to vouch for it.
        unproven = finite & (within | saturated) & ~conclusive & ~kink
        reasons[unproven] = "inconclusive"
    reasons[~finite] = "non-finite"
    passed[~finite] = False
    return Verdicts(analytic, numerical, abs_error, estimate, tol, estimates.steps, reasons, passed)


def _kinks(
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
    if isinstance(model, ElementwiseModel) and wrt in ("X", "W"):
        X, W = inputs["X"], inputs["W"]
        rows, cols = np.unravel_index(flat, inputs[wrt].shape)
        with np.errstate(all="ignore"):
            hit = model.kink_within(
                X,
                W,
                X @ W,
                wrt,  # type: ignore[arg-type]  # X or W: checked above
                np.asarray(rows),
                np.asarray(cols),
                estimates.reach,
            )
        return np.asarray(suspect & hit)
    # A black box shows a kink by its one-sided slopes: their gap stays put as the step halves,
    # where for a smooth f it would halve with it.
    gap, growth = estimates.one_sided_gap, estimates.gap_growth
    return np.asarray(
        suspect
        & (np.maximum(gap, growth) > DOUBT * size)
        & (growth > SAFETY * estimates.roundoff)
        & (growth > 0.25 * gap)
    )


def _black_box(model: Model, wrt: str, structured: bool) -> bool:
    return not (structured and isinstance(model, ElementwiseModel) and wrt in ("X", "W"))


def check_input(
    model: Model,
    inputs: Inputs,
    wrt: str,
    flat: NDArray[np.intp],
    analytic_full: Array,
    scheme: Scheme,
    delta: float | None,
    tolerance: Tolerance,
    f0: float,
    *,
    structured: bool,
    progress: Callable[[float], None] | None,
    precision: Precision = Precision(),
    scale: float | None = None,
) -> Verdicts:
    """Verdicts for the entries `flat` of input `wrt`.

    A black-box model at default steps is estimated in two stages: the scheme at one step for
    every entry, then the full estimate (Richardson's extra steps, one-sided slopes, shrunk
    steps) only for the entries that step did not settle (`differences.one_step_estimates`).
    """

    def at_default_steps(
        indices: NDArray[np.intp],
        report: Callable[[float], None] | None = None,
        known: Mapping[complex, Array] | None = None,
        wanted: FloatArray | None = None,
    ) -> DerivativeEstimates:
        return estimate_at_default_steps(
            model,
            inputs,
            wrt,
            indices,
            scheme,
            f0=f0,
            structured=structured,
            progress=report,
            known=known,
            wanted=wanted,
            eps=precision.eps,
            noise=precision.noise,
        )

    def one_sided(indices: NDArray[np.intp], steps: FloatArray) -> DerivativeEstimates:
        return estimate_derivatives(
            model,
            inputs,
            wrt,
            indices,
            steps,
            scheme,
            f0=f0,
            structured=structured,
            allow_dense=False,
            eps=precision.eps,
            noise=precision.noise,
        )

    analytic = np.asarray(np.asarray(analytic_full).reshape(-1)[flat], dtype=np.float64)
    staged = (
        delta is None
        and tolerance.mode == "estimate"
        and not scheme.imaginary
        and _black_box(model, wrt, structured)
    )
    if staged:
        first, known = one_step_estimates(
            model,
            inputs,
            wrt,
            flat,
            scheme,
            f0=f0,
            progress=progress,
            eps=precision.eps,
            noise=precision.noise,
        )
        input_scale = _scale(first.numerical) if scale is None else scale
        tol = tolerance.of(first.numerical, first.roundoff)
        with np.errstate(invalid="ignore"):
            settled = (
                np.isfinite(first.numerical)
                & (np.abs(analytic - first.numerical) <= tol)
                & (first.roundoff <= DOUBT * np.maximum(np.abs(analytic), input_scale))
            )
        estimates = first
        rest = np.flatnonzero(~settled)
        if rest.size:
            # The error a verdict needs: clearly below what is compared (see _judge).
            needed = DOUBT * np.maximum(np.abs(analytic[rest]), input_scale)
            again = at_default_steps(
                flat[rest], known={o: d[rest] for o, d in known.items()}, wanted=needed
            )
            estimates = first.replaced(rest, again)
        scale = input_scale
    elif delta is None:
        estimates = at_default_steps(flat, progress)
    else:
        steps = np.full(flat.shape, delta, dtype=np.float64)
        estimates = estimate_derivatives(
            model,
            inputs,
            wrt,
            flat,
            steps,
            scheme,
            f0=f0,
            structured=structured,
            progress=progress,
            eps=precision.eps,
            noise=precision.noise,
        )
    return _judge(
        model,
        inputs,
        wrt,
        flat,
        analytic,
        estimates,
        tolerance,
        scale=_scale(estimates.numerical) if scale is None else scale,
        recheck=at_default_steps,
        slopes=one_sided,
        user_step=delta is not None,
    )


def _scale(numerical: FloatArray) -> float:
    finite = np.abs(numerical[np.isfinite(numerical)])
    return float(finite.max()) if finite.size else 0.0


def _rel_error(abs_error: float, reference: float) -> float | None:
    if reference != 0:
        return abs_error / abs(reference)
    return 0.0 if abs_error == 0 else None


def floating(array: Array) -> bool:
    """Inputs that can be perturbed: real floating arrays (integers and booleans are labels,
    masks and counts: constants)."""
    return np.asarray(array).dtype.kind in "fc"


def validate_gradient(model: Model, inputs: Inputs) -> Gradients:
    """The model's gradient at `inputs`, each part shaped like its input."""
    if isinstance(model, ElementwiseModel):
        _require_finite_product(model, inputs)
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


def describe_inputs(
    inputs: Inputs,
    sources: Mapping[str, str],
    checked: Sequence[str],
    gradients: Gradients | None,
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
                why = "not checked: not selected (--wrt)"
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


def _require_finite_product(model: ElementwiseModel, inputs: Inputs) -> None:
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


Batch = tuple[str, int | None, NDArray[np.intp], Verdicts]
"""(input name, cotangent number or None, flat indices, verdicts) for one checked input."""


def _check_models(
    models: Sequence[Model],
    inputs: Inputs,
    selections: Mapping[str, NDArray[np.intp]],
    scheme: Scheme,
    delta: float | None,
    tolerance: Tolerance,
    structured: bool,
    advance: Callable[[float], None],
    precision: Precision,
    parallel: Parallel | None = None,
    first_gradients: Gradients | None = None,
) -> tuple[float | complex, list[Batch], int]:
    """f at the inputs, the verdicts for each model and each selected input, and how many
    processes evaluated them."""
    first = models[0]
    started = time.perf_counter()
    with np.errstate(all="ignore"):
        f0 = first.value(inputs)
    seconds = time.perf_counter() - started
    require_finite_value(first, f0, inputs)
    entries = sum(flat.size for flat in selections.values())
    # About two forward calls per entry and model on a smooth, correct model.
    estimated = 2 * entries * len(models) * seconds
    batches: list[Batch] = []
    with workers.running(parallel, inputs, models, estimated_seconds=estimated) as jobs:
        _check_each(
            models,
            inputs,
            selections,
            scheme,
            delta,
            tolerance,
            structured,
            advance,
            precision,
            f0,
            batches,
            first_gradients,
        )
    return f0, batches, jobs


def _check_each(
    models: Sequence[Model],
    inputs: Inputs,
    selections: Mapping[str, NDArray[np.intp]],
    scheme: Scheme,
    delta: float | None,
    tolerance: Tolerance,
    structured: bool,
    advance: Callable[[float], None],
    precision: Precision,
    f0: float | complex,
    batches: list[Batch],
    first_gradients: Gradients | None,
) -> None:
    first = models[0]
    for number, each in enumerate(models, start=1):
        with np.errstate(all="ignore"):
            f_each = each.value(inputs) if each is not first else f0
        # Only the checked inputs' gradients are kept: another's may be as large as a big X.
        if number == 1 and first_gradients is not None:
            gradients = dict(first_gradients)
        else:
            gradients = {
                name: g for name, g in validate_gradient(each, inputs).items() if name in selections
            }

        def check(
            item: tuple[str, NDArray[np.intp]],
            each: Model = each,
            gradients: Gradients = gradients,
            f_each: float | complex = f_each,
        ) -> Verdicts:
            name, flat = item
            gradient = gradients.get(name)
            assert gradient is not None
            return check_input(
                each,
                inputs,
                name,
                flat,
                gradient,
                scheme,
                delta,
                tolerance,
                float(np.real(f_each)),
                structured=structured,
                progress=advance,
                precision=precision,
            )

        items = list(selections.items())
        # The built-in models' numerics are pure numpy: X and W can be checked side by side.
        # A user's model is called from this thread only: nobody promised it is thread-safe.
        builtin = structured and isinstance(each, ElementwiseModel)
        results = kernels.map_in_parallel(check, items) if builtin else [check(i) for i in items]
        for (name, flat), verdicts in zip(items, results, strict=True):
            batches.append((name, number if len(models) > 1 else None, flat, verdicts))


def run_check(
    model: Model | Sequence[Model],
    inputs: Inputs,
    *,
    model_info: ModelInfo | None = None,
    sources: Mapping[str, str] | None = None,
    wrt: Sequence[str] | None = None,
    entries: Mapping[str, NDArray[np.intp]] | None = None,
    method: str = "central",
    delta: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    details: str = "auto",
    top: int = 10,
    structured: bool = True,
    reference: Mapping[str, Array] | None = None,
    progress: ProgressCallback | None = None,
    extra_settings: Mapping[str, object] | None = None,
    precision: Precision = Precision(),
    output_shape: OutputShape = None,
    parallel: Parallel | None = None,
) -> RunReport:
    """Check every selected entry of every checked input's gradient against finite differences.

    `model` may be a sequence of models: the contracted views of a vector-valued model, one per
    cotangent; their entries are tagged with the cotangent's number, and an entry fails when it
    fails for any of them. `wrt` defaults to every floating input the gradient covers.
    """
    models = [model] if isinstance(model, Model) else list(model)
    first = models[0]
    scheme = resolve_scheme(method, first)
    dtype = _dtype(inputs)
    tolerance = Tolerance.resolve(dtype, rtol, atol)
    # BLAS held from the first product on: threads it wakes outside the hold would spin on the
    # cores the check's own pool is about to use.
    with single_threaded_blas():
        given = validate_gradient(first, inputs)
        checked = resolve_wrt(inputs, given, wrt)
        # Whether each input has a gradient is all the report needs of them from here on, and
        # the check needs the checked ones' (another's may be as large as a big X: not kept).
        gradients: Gradients = {
            name: None if g is None else np.empty(0) for name, g in given.items()
        }
        checked_gradients: Gradients = {name: given[name] for name in checked}
        del given
        selections = select_entries(inputs, checked, entries)
        for name, flat in selections.items():
            validate_delta(delta, np.asarray(inputs[name]).reshape(-1)[flat], name)

        total = len(models) * sum(s.size for s in selections.values())
        done = 0.0

        def advance(count: float) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, total)

        f0, batches, jobs = _check_models(
            models,
            inputs,
            selections,
            scheme,
            delta,
            tolerance,
            structured,
            advance,
            precision,
            parallel,
            checked_gradients,
        )
    del checked_gradients
    return assemble_run_report(
        first,
        model_info,
        describe_inputs(inputs, sources or {}, checked, gradients),
        inputs,
        scheme,
        delta,
        tolerance,
        float(np.real(f0)),
        batches,
        details=details,
        top=top,
        reference=reference,
        extra={
            "wrt": checked,
            "cotangents": len(models) if output_shape is not None else None,
            "jobs": jobs,
        }
        | dict(extra_settings or {}),
        output_shape=output_shape,
        precision=precision,
    )


def check_in_mode(
    mode: str,
    models: Sequence[Model],
    inputs: Inputs,
    *,
    directions: int,
    seed: int,
    delta: float | None,
    details: str,
    parallel: Parallel | None,
    extra_settings: Mapping[str, object],
    reference: Mapping[str, Array] | None = None,
    **common: Any,
) -> RunReport:
    """`run_check` for mode "full", `fast.fast_check` for "fast": the one place the CLI and the
    API choose between them. `common` holds the arguments both take (model_info, sources, wrt,
    entries, method, rtol, atol, top, precision, output_shape, progress)."""
    if mode == "fast":
        from gradcheck_cli.checks.fast import fast_check  # fast builds on this module

        return fast_check(
            models,
            inputs,
            directions=directions,
            seed=seed,
            extra_settings=extra_settings,
            **common,
        )
    return run_check(
        models,
        inputs,
        delta=delta,
        details=details,
        reference=reference,
        extra_settings={**extra_settings, "mode": "full"},
        parallel=parallel,
        **common,
    )


def _dtype(inputs: Inputs) -> np.dtype[np.generic]:
    """The working precision: that of the floating inputs (float64 when there are none)."""
    kinds = [np.asarray(a).dtype for a in inputs.values() if floating(a)]
    return np.result_type(*kinds) if kinds else np.dtype(np.float64)


def _worst(among: NDArray[np.intp] | None, badness: FloatArray, count: int) -> NDArray[np.intp]:
    """Positions of the `count` largest badness values (among the given positions)."""
    pool = np.arange(badness.size) if among is None else among
    if pool.size <= count:
        return np.asarray(pool, dtype=np.intp)
    part = np.argpartition(-badness[pool], count - 1)[:count]
    return np.asarray(pool[part], dtype=np.intp)


def _summaries(
    batches: Sequence[Batch],
    shapes: Mapping[str, tuple[int, ...]],
    references: Mapping[str, Array],
    listed: Mapping[str, int],
) -> dict[str, InputSummary]:
    """Per input, each entry counted once: it fails if it fails for any cotangent, is
    inconclusive if it fails for none but is inconclusive for one, and doubtful if it passes
    for all with a reason other than ok for one."""
    parts: dict[str, list[tuple[Verdicts, NDArray[np.intp]]]] = {}
    for name, _, flat, verdicts in batches:
        parts.setdefault(name, []).append((verdicts, flat))
    summary: dict[str, InputSummary] = {}
    for label, pieces in parts.items():
        flats = np.concatenate([f for _, f in pieces])
        abs_errors = np.concatenate([v.abs_error for v, _ in pieces])
        numerical = np.concatenate([v.numerical for v, _ in pieces])
        bad = np.concatenate([v.badness for v, _ in pieces])
        analytic = np.concatenate([v.analytic for v, _ in pieces])
        if len(pieces) == 1:
            # One batch per input (no cotangents): its entries are distinct already.
            count = flats.size
            where = np.arange(count)
        else:
            entries, where = np.unique(flats, return_inverse=True)
            count = entries.size

        def per_entry(
            mask: NDArray[np.bool_], where: NDArray[np.intp] = where, count: int = count
        ) -> NDArray[np.bool_]:
            # Any of an entry's rows: a count per entry, above zero.
            return np.asarray(np.bincount(where, weights=mask, minlength=count) > 0)

        failed = per_entry(np.concatenate([v.failed for v, _ in pieces]))
        inconclusive = per_entry(np.concatenate([v.inconclusive for v, _ in pieces])) & ~failed
        reasoned = per_entry(np.concatenate([v.passed & (v.reasons != "ok") for v, _ in pieces]))
        doubtful = reasoned & ~failed & ~inconclusive
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(numerical != 0, abs_errors / np.abs(numerical), np.nan)
        finite_abs = abs_errors[np.isfinite(abs_errors)]
        finite_rel = rel[np.isfinite(rel)]
        worst = int(np.argmax(bad)) if bad.size else None
        worst_index = (
            None
            if worst is None
            else tuple(int(i) for i in np.unravel_index(int(flats[worst]), shapes[label]))
        )
        ref = references.get(label)
        summary[label] = InputSummary(
            entries=int(count),
            failed=int(np.count_nonzero(failed)),
            inconclusive=int(np.count_nonzero(inconclusive)),
            doubtful=int(np.count_nonzero(doubtful)),
            max_abs_error=float(finite_abs.max()) if finite_abs.size else 0.0,
            max_rel_error=float(finite_rel.max()) if finite_rel.size else None,
            worst_index=worst_index,
            listed=listed.get(label, 0),
            max_reference_diff=(
                None
                if ref is None
                else float(
                    np.max(np.abs(np.asarray(ref).reshape(-1)[flats] - analytic), initial=0.0)
                )
            ),
        )
    return summary


def assemble_run_report(
    model: Model,
    model_info: ModelInfo | None,
    input_infos: Mapping[str, InputInfo],
    inputs: Inputs,
    scheme: Scheme,
    delta: float | None,
    tolerance: Tolerance,
    f0: float,
    batches: list[Batch],
    *,
    details: str,
    top: int,
    reference: Mapping[str, Array] | None,
    extra: Mapping[str, object],
    output_shape: OutputShape = None,
    precision: Precision = Precision(),
    tag: str = "cotangent",
) -> RunReport:
    """The report of a check from its batches. `tag` says what a batch's number is: the
    cotangent of an array-valued forward, or the tangent of an hvp or jvp check."""
    shapes = {name: tuple(np.shape(a)) for name, a in inputs.items()}
    references = dict(reference or {})
    total = sum(v.passed.size for _, _, _, v in batches)
    list_all = details == "all" or (details == "auto" and total <= AUTO_LIST_LIMIT)

    # Choose the listed entries over all batches at once: the failed and inconclusive (worst
    # first, capped) and the `top` worst overall.
    badness = np.concatenate([v.badness for *_, v in batches]) if batches else np.empty(0)
    unpassed = np.concatenate([~v.passed for *_, v in batches]) if batches else np.empty(0)
    if list_all:
        chosen = np.arange(total)
    else:
        # Partial selection, not a full sort: a million-entry check lists a few rows.
        failed = np.flatnonzero(unpassed)
        chosen = np.unique(
            np.concatenate([_worst(failed, badness, AUTO_LIST_LIMIT), _worst(None, badness, top)])
        )
        chosen = chosen[np.argsort(-badness[chosen], kind="stable")]

    checks: list[EntryCheck] = []
    starts = np.cumsum([0] + [flat.size for _, _, flat, _ in batches])
    for position in chosen.tolist():
        b = int(np.searchsorted(starts, position, side="right")) - 1
        k = position - int(starts[b])
        name, cotangent, flat, v = batches[b]
        index = tuple(int(i) for i in np.unravel_index(int(flat[k]), shapes[name]))
        abs_error = float(v.abs_error[k])
        # A reference is of the first cotangent's contraction (or of the scalar f).
        ref = references.get(name) if cotangent in (None, 1) else None
        checks.append(
            EntryCheck(
                wrt=name,
                index=index,
                analytic=float(v.analytic[k]),
                numerical=float(v.numerical[k]),
                abs_error=abs_error,
                rel_error=_rel_error(abs_error, float(v.numerical[k])),
                error_estimate=float(v.error_estimate[k]),
                tolerance=float(v.tolerance[k]),
                step=float(v.steps[k]),
                reason=str(v.reasons[k]),
                passed=bool(v.passed[k]),
                cotangent=cotangent if tag == "cotangent" else None,
                tangent=cotangent if tag == "tangent" else None,
                reference=None if ref is None else float(np.asarray(ref).reshape(-1)[flat[k]]),
            )
        )
    listed: dict[str, int] = {}
    for c in checks:
        listed[c.wrt] = listed.get(c.wrt, 0) + 1

    dtype = _dtype(inputs)
    settings = Settings(
        method=scheme.name,
        delta=delta,
        step_rule=_step_rule(scheme, delta, precision, dtype),
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        tolerance=tolerance.mode,  # type: ignore[arg-type]
        safety=SAFETY,
        dtype=str(dtype),
        extra={"details": details, **_precision_settings(precision), **extra},
    )
    ratios, diagnoses = _error_maps(batches, inputs)
    return RunReport(
        model=model_info or ModelInfo(model.name, model.formula, "api"),
        inputs=dict(input_infos),
        settings=settings,
        f=f0,
        checks=tuple(checks),
        summary=_summaries(batches, shapes, references, listed),
        omitted=total - len(checks),
        output_shape=output_shape,
        diagnosis=tuple(diagnoses),
        error_ratios=ratios,
    )


def _error_maps(
    batches: Sequence[Batch], inputs: Inputs
) -> tuple[dict[str, FloatArray], list[Diagnosis]]:
    """Per checked input, |analytic - numerical| / tolerance in the input's shape (the worst over
    cotangents; NaN where not checked), and the diagnosis of its failures. A vector-Jacobian
    product is diagnosed through the first cotangent whose check failed: the pattern of a bug
    (a factor, a slice) is the same through every cotangent."""
    ratios: dict[str, FloatArray] = {}
    diagnoses: list[Diagnosis] = []
    diagnosed: set[str] = set()
    for name, _, flat, verdicts in batches:
        shape = np.shape(inputs[name])
        ratio = ratios.setdefault(name, np.full(shape, np.nan))
        flat_ratio = ratio.reshape(-1)
        badness = verdicts.badness
        flat_ratio[flat] = np.fmax(flat_ratio[flat], badness)
        failed = verdicts.failed
        if name in diagnosed or not failed.any():
            continue
        diagnosed.add(name)
        arrays = {}
        for key, values in (
            ("analytic", verdicts.analytic),
            ("numerical", verdicts.numerical),
            ("tolerance", verdicts.tolerance),
        ):
            full = np.full(int(np.prod(shape)), np.nan)
            full[flat] = values
            arrays[key] = full.reshape(shape)
        mask = np.zeros(int(np.prod(shape)), dtype=bool)
        mask[flat] = failed
        diagnoses.extend(
            diagnose(
                name,
                arrays["analytic"],
                arrays["numerical"],
                arrays["tolerance"],
                mask.reshape(shape),
                np.asarray(inputs[name], dtype=np.float64),
            )
        )
    return ratios, diagnoses


def _step_rule(
    scheme: Scheme, delta: float | None, precision: Precision, dtype: np.dtype[np.generic]
) -> str:
    if delta is not None:
        return f"{delta:g} (--delta)"
    rule = scheme.step_rule
    if precision.eps is not None and precision.eps > machine_epsilon(dtype):
        rule += f", with eps = {precision.eps:.3g} (the precision the forward computes in)"
    return rule


def _precision_settings(precision: Precision) -> dict[str, object]:
    return {"forward_eps": precision.eps, "nondet_tol": precision.noise}


def perturb_check(
    model: Model,
    inputs: Inputs,
    *,
    model_info: ModelInfo | None = None,
    sources: Mapping[str, str] | None = None,
    entries: Sequence[tuple[str, tuple[int, ...]]] = (("X", (0, 0)),),
    delta: float = 1e-4,
    method: str = "central",
    rtol: float | None = None,
    atol: float | None = None,
    precision: Precision = Precision(),
    output_shape: OutputShape = None,
    extra_settings: Mapping[str, object] | None = None,
    reference: Mapping[str, Array] | None = None,
) -> PerturbReport:
    """The seed's experiment: add delta to each entry, compare the change of f with g * delta.

    The difference of a correct gradient is the O(delta^2) remainder, so it is judged after
    removing the curvature estimated from f(x - delta): what is left, delta * (central - g), is
    compared with the method's own error estimate at step delta (not a fixed tolerance).
    """
    scheme = resolve_scheme(method, model)
    dtype = _dtype(inputs)
    tolerance = Tolerance.resolve(dtype, rtol, atol)
    with np.errstate(all="ignore"):
        f0 = float(np.real(model.value(inputs)))
    require_finite_value(model, f0, inputs)
    gradients = validate_gradient(model, inputs)
    names = list(dict.fromkeys(name for name, _ in entries))
    resolve_wrt(inputs, gradients, names, option="--entry")
    perturbations = []
    for name in names:
        target = np.asarray(inputs[name])
        indices = [index for n, index in entries if n == name]
        flat = np.asarray(
            [np.ravel_multi_index(index, target.shape) if index else 0 for index in indices],
            dtype=np.intp,
        )
        for index, position in zip(indices, flat.tolist(), strict=True):
            validate_delta(
                delta, target.reshape(-1)[position : position + 1], entry_label(name, index)
            )
        gradient = gradients[name]
        assert gradient is not None
        steps = np.full(flat.shape, delta, dtype=np.float64)
        # Whole forward passes, as one does by hand: f at the perturbed input is a real evaluation.
        estimates = estimate_derivatives(
            model,
            inputs,
            name,
            flat,
            steps,
            scheme,
            f0=f0,
            structured=False,
            eps=precision.eps,
            noise=precision.noise,
        )

        def recheck(indices: NDArray[np.intp], name: str = name) -> DerivativeEstimates:
            return estimate_at_default_steps(
                model,
                inputs,
                name,
                indices,
                scheme,
                f0=f0,
                structured=False,
                eps=precision.eps,
                noise=precision.noise,
            )

        analytic = np.asarray(np.asarray(gradient).reshape(-1)[flat], dtype=np.float64)
        verdicts = _judge(
            model,
            inputs,
            name,
            flat,
            analytic,
            estimates,
            tolerance,
            scale=_scale(np.concatenate([estimates.numerical, analytic])),
            recheck=recheck,
            slopes=None,
            user_step=True,
        )
        moved = dict(inputs)
        for k, (index, position) in enumerate(zip(indices, flat.tolist(), strict=True)):
            plus_minus = []
            for sign in (1, -1):
                work = np.array(target, copy=True)
                work.reshape(-1)[position] = target.reshape(-1)[
                    position
                ] + sign * target.dtype.type(delta)
                moved[name] = work
                with np.errstate(all="ignore"):
                    plus_minus.append(float(np.real(model.value(moved))))
            f_plus, f_minus = plus_minus
            actual = f_plus - f0
            predicted = float(analytic[k]) * delta
            abs_error = abs(actual - predicted)
            perturbations.append(
                Perturbation(
                    wrt=name,
                    index=tuple(int(i) for i in index),
                    delta=delta,
                    f=f0,
                    f_perturbed=f_plus,
                    actual_change=actual,
                    predicted_change=predicted,
                    gradient=float(analytic[k]),
                    abs_error=abs_error,
                    rel_error=_rel_error(abs_error, actual),
                    remainder_estimate=(f_plus + f_minus - 2 * f0) / 2,
                    numerical=float(verdicts.numerical[k]),
                    error_estimate=float(verdicts.error_estimate[k]),
                    tolerance=float(verdicts.tolerance[k]),
                    reason=str(verdicts.reasons[k]),
                    passed=bool(verdicts.passed[k]),
                    reference=None
                    if reference is None or name not in reference
                    else float(np.asarray(reference[name]).reshape(-1)[position]),
                )
            )
    settings = Settings(
        method=scheme.name,
        delta=delta,
        step_rule=f"{delta:g} (--delta)",
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        tolerance=tolerance.mode,  # type: ignore[arg-type]
        safety=SAFETY,
        dtype=str(dtype),
        extra={"wrt": names, **_precision_settings(precision), **(extra_settings or {})},
    )
    return PerturbReport(
        model=model_info or ModelInfo(model.name, model.formula, "api"),
        inputs=describe_inputs(inputs, sources or {}, names, gradients),
        settings=settings,
        f=f0,
        perturbations=tuple(perturbations),
        output_shape=output_shape,
    )


SWEEP_FIT_POINTS = 4
"""The slope is fitted over the smallest deltas still clear of round-off: the asymptotic range."""
SWEEP_NOISE_MARGIN = 100.0
"""A residual counts for the fit only when it is this many times above its round-off floor."""


def _fit_slope(
    deltas: Sequence[float], residuals: FloatArray, floors: FloatArray
) -> tuple[float | None, NDArray[np.bool_], NDArray[np.bool_]]:
    """The log-log slope over the smallest deltas clear of round-off; which points are in the
    fit; which are clear."""
    clear = np.isfinite(residuals) & (residuals > SWEEP_NOISE_MARGIN * floors)
    order = np.argsort(np.asarray(deltas))  # smallest first
    fit = [int(k) for k in order if clear[k]][:SWEEP_FIT_POINTS]
    in_fit = np.zeros(len(deltas), dtype=bool)
    in_fit[fit] = True
    if len(fit) < 2:
        return None, in_fit, clear
    log_d = np.log10(np.asarray(deltas)[fit])
    log_r = np.log10(residuals[fit])
    return float(np.polyfit(log_d, log_r, 1)[0]), in_fit, clear


def sweep_check(
    model: Model,
    inputs: Inputs,
    *,
    model_info: ModelInfo | None = None,
    sources: Mapping[str, str] | None = None,
    direction: Mapping[str, Array],
    direction_info: Mapping[str, object],
    deltas: Sequence[float],
    precision: Precision = Precision(),
    output_shape: OutputShape = None,
) -> SweepReport:
    """The Taylor test along direction v (an array per moved input): residual(delta) should
    fall like delta^2.

    residual = |f(x + delta v) - f(x) - delta <g, v>|. A correct gradient leaves the O(delta^2)
    remainder (slope 2 on log-log axes); a wrong one leaves delta <g_true - g, v> (slope 1). So
    does a kink of f along v: the residuals at -delta tell the two apart. Where the gradient
    lies between the one-sided slopes of a kink, the residuals on both sides have the same sign
    (f lies above, or below, its linearisation on both sides); for a wrong gradient of a smooth
    f they have opposite signs.
    """
    dtype = _dtype(inputs)
    eps = max(machine_epsilon(dtype), precision.eps or 0.0)
    with np.errstate(all="ignore"):
        f0 = float(np.real(model.value(inputs)))
    require_finite_value(model, f0, inputs)
    gradients = validate_gradient(model, inputs)
    names = list(direction)
    resolve_wrt(inputs, gradients, names)
    slope_gv = 0.0
    for name in names:
        gradient = gradients[name]
        assert gradient is not None
        slope_gv += float(np.sum(np.asarray(gradient) * direction[name]))
    signed: dict[int, list[float]] = {1: [], -1: []}
    floors: list[float] = []
    for delta in deltas:
        for sign in (1, -1):
            moved = dict(inputs)
            for name in names:
                base = np.asarray(inputs[name])
                moved[name] = base + base.dtype.type(sign * delta) * direction[name]
            with np.errstate(all="ignore"):
                value = float(np.real(model.value(moved)))
            signed[sign].append(value - f0 - sign * delta * slope_gv)
            if sign == 1:
                floors.append(
                    4 * eps * (max(abs(f0), abs(value)) + abs(delta * slope_gv))
                    + 2 * precision.noise
                )
    plus = np.asarray(signed[1])
    minus = np.asarray(signed[-1])
    residual_array = np.abs(plus)
    floor_array = np.asarray(floors)
    slope, in_fit, clear = _fit_slope(deltas, residual_array, floor_array)
    reason = "inconclusive"
    passed = False
    if slope is not None:
        reason = "slope-2" if slope >= 1.5 else "slope-1"
        passed = slope >= 1.5
        if not passed:
            # Linear residuals: a wrong gradient, or a kink. The same sign on both sides, in
            # every fitted point, is a kink with the gradient between its one-sided slopes; a
            # side at round-off level is a kink whose slope on that side the gradient equals
            # (relu'(0) = 0). A wrong gradient of a smooth f leaves |e| delta on both sides.
            other, _, _ = _fit_slope(deltas, np.abs(minus), floor_array)
            quiet = np.abs(minus[in_fit]) <= SWEEP_NOISE_MARGIN * floor_array[in_fit]
            same_side = np.sign(plus[in_fit]) == np.sign(minus[in_fit])
            linear_other_side = other is not None and other < 1.5
            if bool(np.all(quiet)) or (linear_other_side and bool(np.all(same_side | quiet))):
                reason, passed = "kink", True
    elif not clear.any() and np.all(np.isfinite(residual_array)):
        # Every residual at round-off: f is linear along v, or the gradient term itself is
        # below round-off, where nothing was tested.
        linear_terms = np.abs(np.asarray(deltas) * slope_gv)
        seen = bool(np.any(linear_terms > SWEEP_NOISE_MARGIN * floor_array))
        reason, passed = ("round-off", True) if seen else ("inconclusive", False)
    rows = tuple(
        SweepRow(float(d), float(r), bool(f), float(abs(m)))
        for d, r, f, m in zip(
            deltas, residual_array.tolist(), in_fit.tolist(), minus.tolist(), strict=True
        )
    )
    settings = Settings(
        method="taylor",
        delta=None,
        step_rule="decades from --largest to --smallest",
        rtol=0.0,
        atol=0.0,
        tolerance="estimate",
        safety=SWEEP_NOISE_MARGIN,
        dtype=str(dtype),
        extra={"fit_points": SWEEP_FIT_POINTS, "wrt": names, **_precision_settings(precision)},
    )
    return SweepReport(
        model=model_info or ModelInfo(model.name, model.formula, "api"),
        inputs=describe_inputs(inputs, sources or {}, names, gradients),
        settings=settings,
        f=f0,
        direction=dict(direction_info),
        directional_derivative=slope_gv,
        rows=rows,
        slope=slope,
        noise_floor=float(max(floors)),
        reason=reason,
        passed=passed,
        output_shape=output_shape,
    )
