"""The checks: compare an analytic gradient with finite differences and judge each entry.

`run_check` (every entry, or a selection), `perturb_check` (the seed's experiment: add delta to
one entry and compare the change in f with the predicted one) and `sweep_check` (the Taylor
test). Each returns a report object (report.py); the CLI decides exit codes, renderers draw.

A verdict is |analytic - numerical| <= tolerance. By default the tolerance follows from each
entry's own error estimate (truncation + round-off, see differences.py):
    tolerance = atol + rtol * |numerical| + SAFETY * error_estimate
with a tiny rtol for the analytic gradient's own rounding. Given --rtol or --atol, the
tolerance is fixed: atol + rtol * |numerical|. A verdict that is not "ok" carries its reason.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli import blas, kernels
from gradcheck_cli.differences import (
    SCHEMES,
    DerivativeEstimates,
    FloatArray,
    Scheme,
    estimate_at_default_steps,
    estimate_derivatives,
    machine_epsilon,
)
from gradcheck_cli.errors import InputError
from gradcheck_cli.models import Array, ElementwiseModel, Model, Wrt
from gradcheck_cli.report import (
    EntryCheck,
    InputInfo,
    MatrixSummary,
    ModelInfo,
    Perturbation,
    PerturbReport,
    RunReport,
    Settings,
    SweepReport,
    SweepRow,
)

SAFETY = 10.0
"""Tolerance = SAFETY x the estimated error: the estimates are first-order, allow for their own
error. A wrong gradient still fails as soon as its error is 10x what differencing explains."""

DOUBT = 1e-2
"""An error estimate above this share of |gradient| makes a verdict doubtful: the finite
difference itself is too unsure to vouch for the gradient."""

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

    @property
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
            "(a kink such as relu, abs or max, or a user model file): use --method central"
        )
    return scheme


def validate_delta(delta: float | None, values: Array, label: str) -> None:
    """A fixed step must be positive, finite, and large enough to move every checked entry."""
    if delta is None:
        return
    if not (np.isfinite(delta) and delta > 0):
        raise InputError(f"--delta must be a finite number > 0, got {delta}")
    moved = values + values.dtype.type(delta)
    stuck = np.flatnonzero(moved == values)
    if stuck.size:
        i, j = np.unravel_index(int(stuck[0]), values.shape)
        raise InputError(
            f"--delta {delta:g} is too small for {values.dtype.name}: "
            f"{label}[{i}, {j}] + delta == {label}[{i}, {j}] ({float(values[i, j]):g}); "
            f"use a delta above {float(np.spacing(np.abs(values[i, j]))):.3g}"
        )


def _judge(
    model: Model,
    X: Array,
    W: Array,
    wrt: Wrt,
    flat: NDArray[np.intp],
    analytic: FloatArray,
    estimates: DerivativeEstimates,
    tolerance: Tolerance,
    *,
    recheck: Callable[[NDArray[np.intp]], DerivativeEstimates] | None,
    user_step: bool,
) -> Verdicts:
    """Verdict and reason per entry; `recheck` recomputes entries at the default step."""
    numerical = estimates.numerical
    with np.errstate(invalid="ignore"):
        abs_error = np.abs(analytic - numerical)
        estimate = estimates.error
        tol = tolerance.atol + tolerance.rtol * np.abs(numerical)
        if tolerance.mode == "estimate":
            tol = tol + SAFETY * estimate
        within = abs_error <= tol
    finite = np.isfinite(numerical)
    size = np.maximum(np.abs(analytic), np.abs(numerical))
    # Below the noise floor the difference cannot see the gradient. An exact zero on both sides
    # (a dead relu, a zero weight) is no doubt: f did not move at all, and the gradient says so.
    seen = finite & (size > 0)
    saturated = seen & (size < SAFETY / 2 * estimates.roundoff)
    doubtful = seen & ~saturated & (estimate > DOUBT * size)
    step_reason = np.where(
        estimates.roundoff >= estimates.truncation, "step-too-small", "step-too-large"
    )

    reasons = np.full(flat.shape, "ok", dtype="<U14")
    passed = within.copy()
    reasons[doubtful] = step_reason[doubtful]
    reasons[saturated] = "saturated"
    passed[saturated] = True
    failing = finite & ~within & ~saturated

    # A kink within the step explains a disagreement without blaming the gradient.
    kink = np.zeros(flat.shape, dtype=bool)
    if failing.any():
        target = X if wrt == "X" else W
        rows, cols = np.unravel_index(flat, target.shape)
        if isinstance(model, ElementwiseModel):
            kink = failing & model.kink_within(
                X, W, X @ W, wrt, np.asarray(rows), np.asarray(cols), estimates.reach
            )
        else:
            gap, growth = estimates.one_sided_gap, estimates.gap_growth
            kink = (
                failing
                & (np.maximum(gap, growth) > DOUBT * size)
                & (growth > SAFETY * estimates.roundoff)
                & (growth > 0.25 * gap)
            )
    reasons[kink] = "kink"
    passed[kink] = True

    # At a step the user chose, every entry that is not plainly "ok" gets a second opinion at the
    # default step: a user's step can be the very reason for a noise floor, a kink within reach or
    # a mismatch. If the gradient passes there, the step was the problem, not the gradient
    # (unless the default step has its own reason: a kink, saturation); if it fails, it is wrong.
    suspect = finite & ((reasons != "ok") | ~passed)
    if user_step and recheck is not None and suspect.any():
        again = recheck(flat[suspect])
        second = _judge(
            model,
            X,
            W,
            wrt,
            flat[suspect],
            analytic[suspect],
            again,
            tolerance,
            recheck=None,
            user_step=False,
        )
        blame_step = np.isin(second.reasons, ("ok", "step-too-small", "step-too-large"))
        # Which way the user's step was off; a kink within it stays the better explanation.
        blame = np.where(estimates.steps[suspect] < again.steps, "step-too-small", "step-too-large")
        blame = np.where(kink[suspect], "kink", blame)
        reasons[suspect] = np.where(second.passed & blame_step, blame, second.reasons)
        passed[suspect] = second.passed
    else:
        reasons[failing & ~kink] = "mismatch"
    reasons[~finite] = "non-finite"
    passed[~finite] = False
    return Verdicts(analytic, numerical, abs_error, estimate, tol, estimates.steps, reasons, passed)


def check_matrix(
    model: Model,
    X: Array,
    W: Array,
    wrt: Wrt,
    flat: NDArray[np.intp],
    analytic_full: Array,
    scheme: Scheme,
    delta: float | None,
    tolerance: Tolerance,
    f0: float,
    *,
    structured: bool,
    progress: Callable[[float], None] | None,
) -> Verdicts:
    def at_default_steps(
        indices: NDArray[np.intp], report: Callable[[float], None] | None = None
    ) -> DerivativeEstimates:
        return estimate_at_default_steps(
            model, X, W, wrt, indices, scheme, f0=f0, structured=structured, progress=report
        )

    if delta is None:
        estimates = at_default_steps(flat, progress)
    else:
        steps = np.full(flat.shape, delta, dtype=np.float64)
        estimates = estimate_derivatives(
            model, X, W, wrt, flat, steps, scheme, f0=f0, structured=structured, progress=progress
        )
    analytic = np.asarray(analytic_full.ravel()[flat], dtype=np.float64)
    return _judge(
        model,
        X,
        W,
        wrt,
        flat,
        analytic,
        estimates,
        tolerance,
        recheck=at_default_steps,
        user_step=delta is not None,
    )


def _input_infos(sources: Mapping[str, str], X: Array, W: Array) -> dict[str, InputInfo]:
    return {
        name: InputInfo(
            sources.get(name, "array"), (int(a.shape[0]), int(a.shape[1])), str(a.dtype)
        )
        for name, a in (("X", X), ("W", W))
    }


def _rel_error(abs_error: float, reference: float) -> float | None:
    if reference != 0:
        return abs_error / abs(reference)
    return 0.0 if abs_error == 0 else None


def validate_gradient(model: Model, X: Array, W: Array) -> tuple[Array, Array]:
    dX, dW = model.gradient(X, W)
    for label, grad, like in (("dF/dX", dX, X), ("dF/dW", dW, W)):
        if grad.shape != like.shape:
            raise InputError(
                f"{model.name}: gradient {label} has shape {grad.shape}; expected {like.shape}"
            )
    return dX, dW


def select_entries(
    X: Array, W: Array, wrt: Sequence[Wrt], entries: Mapping[str, NDArray[np.intp]] | None
) -> dict[Wrt, NDArray[np.intp]]:
    """Flat indices to check per matrix of `wrt`: the given ones, or every entry."""
    selections: dict[Wrt, NDArray[np.intp]] = {}
    for name in wrt:
        chosen = None if entries is None else entries.get(name)
        size = (X if name == "X" else W).size
        selections[name] = np.arange(size, dtype=np.intp) if chosen is None else chosen
    return selections


Batch = tuple[str, int | None, NDArray[np.intp], Verdicts]
"""(matrix name, cotangent number or None, flat indices, verdicts) for one checked matrix."""


def _check_models(
    models: Sequence[Model],
    X: Array,
    W: Array,
    selections: Mapping[Wrt, NDArray[np.intp]],
    scheme: Scheme,
    delta: float | None,
    tolerance: Tolerance,
    structured: bool,
    advance: Callable[[float], None],
) -> tuple[float | complex, list[Batch]]:
    """f at (X, W) and the verdicts for each model and each selected matrix."""
    first = models[0]
    f0 = first.value(X, W)
    batches: list[Batch] = []
    for number, each in enumerate(models, start=1):
        f_each = each.value(X, W) if each is not first else f0
        gradients = dict(zip(("X", "W"), validate_gradient(each, X, W), strict=True))

        def check(
            item: tuple[Wrt, NDArray[np.intp]],
            each: Model = each,
            gradients: dict[str, Array] = gradients,
            f_each: float | complex = f_each,
        ) -> Verdicts:
            name, flat = item
            return check_matrix(
                each,
                X,
                W,
                name,
                flat,
                gradients[name],
                scheme,
                delta,
                tolerance,
                float(np.real(f_each)),
                structured=structured,
                progress=advance,
            )

        items = list(selections.items())
        # The built-in models' numerics are pure numpy: X and W can be checked side by side.
        # A user's model is called from this thread only: nobody promised it is thread-safe.
        builtin = structured and isinstance(each, ElementwiseModel)
        results = kernels.map_in_parallel(check, items) if builtin else [check(i) for i in items]
        for (name, flat), verdicts in zip(items, results, strict=True):
            batches.append((name, number if len(models) > 1 else None, flat, verdicts))

    return f0, batches


def run_check(
    model: Model | Sequence[Model],
    X: Array,
    W: Array,
    *,
    model_info: ModelInfo | None = None,
    sources: Mapping[str, str] | None = None,
    wrt: Sequence[Wrt] = ("X", "W"),
    entries: Mapping[str, NDArray[np.intp]] | None = None,
    method: str = "central",
    delta: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    details: str = "auto",
    top: int = 10,
    structured: bool = True,
    reference: tuple[Array, Array] | None = None,
    progress: ProgressCallback | None = None,
    extra_settings: Mapping[str, object] | None = None,
) -> RunReport:
    """Check every selected entry of dF/dX and dF/dW against finite differences.

    `model` may be a sequence of models: the contracted views of a vector-valued model, one per
    cotangent; their entries are tagged with the cotangent's number.
    """
    models = [model] if isinstance(model, Model) else list(model)
    first = models[0]
    scheme = resolve_scheme(method, first)
    tolerance = Tolerance.resolve(X.dtype, rtol, atol)
    selections = select_entries(X, W, wrt, entries)
    for name, flat in selections.items():
        validate_delta(delta, (X if name == "X" else W).ravel()[flat][None, :], name)

    total = len(models) * sum(s.size for s in selections.values())
    done = 0.0

    def advance(count: float) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    # Built-in models are checked on our thread pool; BLAS threads would compete with it for
    # the cores from the first matrix product on (see blas.py).
    parallel = structured and isinstance(first, ElementwiseModel)
    with blas.single_threaded() if parallel else contextlib.nullcontext():
        f0, batches = _check_models(
            models, X, W, selections, scheme, delta, tolerance, structured, advance
        )
    return assemble_run_report(
        first,
        model_info,
        sources or {},
        X,
        W,
        scheme,
        delta,
        tolerance,
        float(np.real(f0)),
        batches,
        details=details,
        top=top,
        reference=reference,
        extra=extra_settings or {},
    )


def _worst(among: NDArray[np.intp] | None, badness: FloatArray, count: int) -> NDArray[np.intp]:
    """Positions of the `count` largest badness values (among the given positions)."""
    pool = np.arange(badness.size) if among is None else among
    if pool.size <= count:
        return np.asarray(pool, dtype=np.intp)
    part = np.argpartition(-badness[pool], count - 1)[:count]
    return np.asarray(pool[part], dtype=np.intp)


def assemble_run_report(
    model: Model,
    model_info: ModelInfo | None,
    sources: Mapping[str, str],
    X: Array,
    W: Array,
    scheme: Scheme,
    delta: float | None,
    tolerance: Tolerance,
    f0: float,
    batches: list[tuple[str, int | None, NDArray[np.intp], Verdicts]],
    *,
    details: str,
    top: int,
    reference: tuple[Array, Array] | None,
    extra: Mapping[str, object],
) -> RunReport:
    shapes = {"X": X.shape, "W": W.shape}
    references = dict(zip(("X", "W"), reference, strict=True)) if reference else {}
    total = sum(v.passed.size for _, _, _, v in batches)
    list_all = details == "all" or (details == "auto" and total <= AUTO_LIST_LIMIT)

    # Choose the listed entries over all batches at once: the failed (worst first, capped) and
    # the `top` worst overall.
    badness = np.concatenate([v.badness for *_, v in batches]) if batches else np.empty(0)
    failed_all = np.concatenate([~v.passed for *_, v in batches]) if batches else np.empty(0)
    if list_all:
        chosen = np.arange(total)
    else:
        # Partial selection, not a full sort: a million-entry check lists a few rows.
        failed = np.flatnonzero(failed_all)
        chosen = np.unique(
            np.concatenate([_worst(failed, badness, AUTO_LIST_LIMIT), _worst(None, badness, top)])
        )
        chosen = chosen[np.argsort(-badness[chosen], kind="stable")]

    checks: list[EntryCheck] = []
    summary_parts: dict[str, list[tuple[Verdicts, NDArray[np.intp]]]] = {}
    for name, _, flat, verdicts in batches:
        summary_parts.setdefault(name, []).append((verdicts, flat))
    starts = np.cumsum([0] + [flat.size for _, _, flat, _ in batches])
    for position in chosen.tolist():
        b = int(np.searchsorted(starts, position, side="right")) - 1
        k = position - int(starts[b])
        name, cotangent, flat, v = batches[b]
        index = tuple(int(i) for i in np.unravel_index(int(flat[k]), shapes[name]))
        abs_error = float(v.abs_error[k])
        ref = references.get(name)
        checks.append(
            EntryCheck(
                wrt=name,
                index=(index[0], index[1]),
                analytic=float(v.analytic[k]),
                numerical=float(v.numerical[k]),
                abs_error=abs_error,
                rel_error=_rel_error(abs_error, float(v.numerical[k])),
                error_estimate=float(v.error_estimate[k]),
                tolerance=float(v.tolerance[k]),
                step=float(v.steps[k]),
                reason=str(v.reasons[k]),
                passed=bool(v.passed[k]),
                cotangent=cotangent,
                reference=None if ref is None else float(ref.ravel()[flat[k]]),
            )
        )

    summary: dict[str, MatrixSummary] = {}
    for label, parts in summary_parts.items():
        abs_errors = np.concatenate([v.abs_error for v, _ in parts])
        numerical = np.concatenate([v.numerical for v, _ in parts])
        passed = np.concatenate([v.passed for v, _ in parts])
        reasons = np.concatenate([v.reasons for v, _ in parts])
        bad = np.concatenate([v.badness for v, _ in parts])
        flats = np.concatenate([f for _, f in parts])
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
        analytic = np.concatenate([v.analytic for v, _ in parts])
        summary[label] = MatrixSummary(
            entries=int(passed.size),
            failed=int(np.count_nonzero(~passed)),
            doubtful=int(np.count_nonzero(passed & (reasons != "ok"))),
            max_abs_error=float(finite_abs.max()) if finite_abs.size else 0.0,
            max_rel_error=float(finite_rel.max()) if finite_rel.size else None,
            worst_index=None if worst_index is None else (worst_index[0], worst_index[1]),
            listed=sum(1 for c in checks if c.wrt == label),
            max_reference_diff=(
                None
                if ref is None
                else float(np.max(np.abs(ref.ravel()[flats] - analytic), initial=0.0))
            ),
        )

    settings = Settings(
        method=scheme.name,
        delta=delta,
        step_rule=scheme.step_rule if delta is None else f"{delta:g} (--delta)",
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        tolerance=tolerance.mode,  # type: ignore[arg-type]
        safety=SAFETY,
        dtype=str(X.dtype),
        extra={"details": details, **extra},
    )
    return RunReport(
        model=model_info or ModelInfo(model.name, model.formula, "api"),
        inputs=_input_infos(sources, X, W),
        settings=settings,
        f=f0,
        checks=tuple(checks),
        summary=summary,
        omitted=total - len(checks),
    )


def perturb_check(
    model: Model,
    X: Array,
    W: Array,
    *,
    model_info: ModelInfo | None = None,
    sources: Mapping[str, str] | None = None,
    wrt: Wrt = "X",
    entries: Sequence[tuple[int, int]] = ((0, 0),),
    delta: float = 1e-4,
    method: str = "central",
    rtol: float | None = None,
    atol: float | None = None,
) -> PerturbReport:
    """The seed's experiment: add delta to each entry, compare the change of f with g * delta.

    The difference of a correct gradient is the O(delta^2) remainder, so it is judged after
    removing the curvature estimated from f(x - delta): what is left, delta * (central - g), is
    compared with the method's own error estimate at step delta (not a fixed tolerance).
    """
    scheme = resolve_scheme(method, model)
    tolerance = Tolerance.resolve(X.dtype, rtol, atol)
    target = X if wrt == "X" else W
    flat = np.asarray(
        [np.ravel_multi_index(index, target.shape) for index in entries], dtype=np.intp
    )
    validate_delta(delta, target.ravel()[flat][None, :], wrt)
    f0 = float(np.real(model.value(X, W)))
    gradient = validate_gradient(model, X, W)[0 if wrt == "X" else 1]
    steps = np.full(flat.shape, delta, dtype=np.float64)
    # Whole forward passes, as one does by hand: f at the perturbed input is a real evaluation.
    estimates = estimate_derivatives(model, X, W, wrt, flat, steps, scheme, f0=f0, structured=False)

    def recheck(indices: NDArray[np.intp]) -> DerivativeEstimates:
        return estimate_at_default_steps(model, X, W, wrt, indices, scheme, f0=f0, structured=False)

    analytic = np.asarray(gradient.ravel()[flat], dtype=np.float64)
    verdicts = _judge(
        model, X, W, wrt, flat, analytic, estimates, tolerance, recheck=recheck, user_step=True
    )
    perturbations = []
    for k, (i, j) in enumerate(entries):
        moved = target.copy()
        plus_minus = []
        for sign in (1, -1):
            moved[i, j] = target[i, j] + sign * target.dtype.type(delta)
            value = model.value(moved, W) if wrt == "X" else model.value(X, moved)
            plus_minus.append(float(np.real(value)))
        f_plus, f_minus = plus_minus
        actual = f_plus - f0
        predicted = float(analytic[k]) * delta
        abs_error = abs(actual - predicted)
        perturbations.append(
            Perturbation(
                wrt=wrt,
                index=(int(i), int(j)),
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
        dtype=str(X.dtype),
        extra={"wrt": wrt},
    )
    return PerturbReport(
        model=model_info or ModelInfo(model.name, model.formula, "api"),
        inputs=_input_infos(sources or {}, X, W),
        settings=settings,
        f=f0,
        perturbations=tuple(perturbations),
    )


SWEEP_FIT_POINTS = 4
"""The slope is fitted over the smallest deltas still clear of round-off: the asymptotic range."""
SWEEP_NOISE_MARGIN = 100.0
"""A residual counts for the fit only when it is this many times above its round-off floor."""


def sweep_check(
    model: Model,
    X: Array,
    W: Array,
    *,
    model_info: ModelInfo | None = None,
    sources: Mapping[str, str] | None = None,
    direction: Mapping[str, Array],
    direction_info: Mapping[str, object],
    deltas: Sequence[float],
) -> SweepReport:
    """The Taylor test along direction v = (vX, vW): residual(delta) should fall like delta^2.

    residual = |f(x + delta v) - f(x) - delta <g, v>|. A correct gradient leaves the O(delta^2)
    remainder (slope 2 on log-log axes); a wrong one leaves delta <g_true - g, v> (slope 1).
    """
    eps = machine_epsilon(X.dtype)
    f0 = float(np.real(model.value(X, W)))
    dX, dW = validate_gradient(model, X, W)
    vX = direction.get("X", np.zeros_like(X))
    vW = direction.get("W", np.zeros_like(W))
    slope_gv = float(np.sum(dX * vX) + np.sum(dW * vW))
    residuals: list[float] = []
    floors: list[float] = []
    for delta in deltas:
        step = X.dtype.type(delta)
        value = float(np.real(model.value(X + step * vX, W + step * vW)))
        residuals.append(abs(value - f0 - delta * slope_gv))
        floors.append(4 * eps * (max(abs(f0), abs(value)) + abs(delta * slope_gv)))
    residual_array = np.asarray(residuals)
    clear = np.isfinite(residual_array) & (residual_array > SWEEP_NOISE_MARGIN * np.asarray(floors))
    order = np.argsort(np.asarray(deltas))  # smallest first
    fit = [int(k) for k in order if clear[k]][:SWEEP_FIT_POINTS]
    in_fit = np.zeros(len(deltas), dtype=bool)
    in_fit[fit] = True
    slope: float | None = None
    if len(fit) >= 2:
        log_d = np.log10(np.asarray(deltas)[fit])
        log_r = np.log10(residual_array[fit])
        slope = float(np.polyfit(log_d, log_r, 1)[0])
        reason = "slope-2" if slope >= 1.5 else "slope-1"
        passed = slope >= 1.5
    elif not clear.any() and np.all(np.isfinite(residual_array)):
        reason, passed = "round-off", True
    else:
        reason, passed = "inconclusive", False
    rows = tuple(
        SweepRow(float(d), float(r), bool(f))
        for d, r, f in zip(deltas, residual_array.tolist(), in_fit.tolist(), strict=True)
    )
    settings = Settings(
        method="taylor",
        delta=None,
        step_rule="decades from --largest to --smallest",
        rtol=0.0,
        atol=0.0,
        tolerance="estimate",
        safety=SWEEP_NOISE_MARGIN,
        dtype=str(X.dtype),
        extra={"fit_points": SWEEP_FIT_POINTS},
    )
    return SweepReport(
        model=model_info or ModelInfo(model.name, model.formula, "api"),
        inputs=_input_infos(sources or {}, X, W),
        settings=settings,
        f=f0,
        direction=dict(direction_info),
        directional_derivative=slope_gv,
        rows=rows,
        slope=slope,
        noise_floor=float(max(floors)),
        reason=reason,
        passed=passed,
    )
