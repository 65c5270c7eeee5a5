"""From batches of verdicts to a run report: which entries are listed, the summary of each
input (each entry counted once, whatever the number of cotangents or tangents), the error maps
and the diagnosis of each failing input.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.judgement import SAFETY, VerdictRule, Verdicts
from gradcheck_cli.diagnosis.result import Diagnosis
from gradcheck_cli.diagnosis.search import diagnose
from gradcheck_cli.numerics.models import Array, Inputs, Model
from gradcheck_cli.numerics.schemes import FloatArray, Precision, Scheme, machine_epsilon
from gradcheck_cli.report import (
    EntryCheck,
    FastSettings,
    InputInfo,
    InputSummary,
    ModelInfo,
    OutputShape,
    RunReport,
    RunSettings,
    TangentSettings,
)
from gradcheck_cli.settings import CheckSettings

AUTO_LIST_LIMIT = 1000
"""details auto lists every entry up to this many; beyond, the failed and the worst ones."""

Batch = tuple[str, int | None, NDArray[np.intp], Verdicts]
"""(input name, cotangent or tangent number or None, flat indices, verdicts) for one input."""


def relative_error(abs_error: float, reference: float) -> float | None:
    """|error| / |reference|; 0 for an exact zero; None where only the reference is zero."""
    if reference != 0:
        return abs_error / abs(reference)
    return 0.0 if abs_error == 0 else None


def worst_positions(
    among: NDArray[np.intp] | None, badness: FloatArray, count: int
) -> NDArray[np.intp]:
    """Positions of the `count` largest badness values (among the given positions)."""
    pool = np.arange(badness.size) if among is None else among
    if pool.size <= count:
        return np.asarray(pool, dtype=np.intp)
    part = np.argpartition(-badness[pool], count - 1)[:count]
    return np.asarray(pool[part], dtype=np.intp)


def summaries(
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
    inputs: Inputs,
    batches: list[Batch],
    settings: RunSettings,
    *,
    f0: float,
    about: ModelInfo | None,
    input_infos: Mapping[str, InputInfo],
    top: int,
    reference: Mapping[str, Array] | None = None,
    output_shape: OutputShape = None,
) -> RunReport:
    """The report of a check from its batches of verdicts: the listed entries (all, or the
    failed and the worst), the summary per input, the error maps and the diagnosis. A batch's
    number is the cotangent of an array-valued forward, or the tangent of an hvp or jvp check
    (`settings.tangent`)."""
    tag = "cotangent" if settings.tangent is None else "tangent"
    details = settings.details
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
            np.concatenate(
                [
                    worst_positions(failed, badness, AUTO_LIST_LIMIT),
                    worst_positions(None, badness, top),
                ]
            )
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
                rel_error=relative_error(abs_error, float(v.numerical[k])),
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

    ratios, diagnoses = error_maps(batches, inputs)
    return RunReport(
        model=about or ModelInfo(model.name, model.formula, "api"),
        inputs=dict(input_infos),
        settings=settings,
        f=f0,
        checks=tuple(checks),
        summary=summaries(batches, shapes, references, listed),
        omitted=total - len(checks),
        output_shape=output_shape,
        diagnosis=tuple(diagnoses),
        error_ratios=ratios,
    )


def error_maps(
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


def step_rule(
    scheme: Scheme, delta: float | None, precision: Precision, dtype: np.dtype[np.generic]
) -> str:
    """How each entry's step was chosen, as the report says it."""
    if delta is not None:
        return f"{delta:g} (--delta)"
    rule = scheme.step_rule
    if precision.eps is not None and precision.eps > machine_epsilon(dtype):
        rule += f", with eps = {precision.eps:.3g} (the precision the forward computes in)"
    return rule


def run_settings(
    asked: CheckSettings,
    rule: VerdictRule,
    dtype: np.dtype[np.generic],
    wrt: Sequence[str],
    *,
    cotangents: int | None,
    jobs: int = 1,
    details: str | None = None,
    mode: str | None = None,
    rule_text: str | None = None,
    fast: FastSettings | None = None,
    tangent: TangentSettings | None = None,
) -> RunSettings:
    """A run report's settings: what was asked (`asked`), and how it was carried out (the
    scheme, step and tolerance of `rule`, the processes, what differs by kind of run)."""
    return RunSettings(
        method=rule.scheme.name,
        delta=rule.delta,
        step_rule=rule_text or step_rule(rule.scheme, rule.delta, rule.precision, dtype),
        rtol=rule.tolerance.rtol,
        atol=rule.tolerance.atol,
        tolerance=rule.tolerance.mode,  # type: ignore[arg-type]
        safety=SAFETY,
        dtype=str(dtype),
        wrt=tuple(wrt),
        forward_eps=rule.precision.eps,
        nondet_tol=rule.precision.noise,
        details=asked.details if details is None else details,
        entries=str(asked.entries),
        seed=asked.seed,
        mode=asked.mode if mode is None else mode,
        cotangents=cotangents,
        jobs=jobs,
        reference=asked.reference,
        fast=fast,
        tangent=tangent,
    )
