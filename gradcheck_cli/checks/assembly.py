"""From batches of verdicts to a run report: which entries are listed, the summary of each
input (each entry counted once, whatever the number of cotangents or tangents), the error maps
and the diagnosis of each failing input.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.judgement import SAFETY, VerdictRule, Verdicts
from gradcheck_cli.diagnosis.fitting import Context, Observed, Scope
from gradcheck_cli.diagnosis.fitting import FloatArray as Float64Array
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
"""details auto lists every entry up to this many entries (each through every cotangent);
beyond, the failed, the inconclusive, the doubtful and the worst ones."""

Batch = tuple[str, int | None, NDArray[np.intp], Verdicts]
"""(input name, cotangent or tangent number or None, flat indices, verdicts) for one input."""

References = Sequence[Mapping[str, Array]]
"""--reference torch: the reference gradient per input, one mapping per cotangent (item k - 1
for cotangent k; a scalar forward's, or the tangent checks', one item)."""


def reference_of(references: References | None, number: int | None) -> Mapping[str, Array]:
    """The reference gradients for a batch's cotangent (none when there are none)."""
    position = 0 if number is None else number - 1
    if not references or position >= len(references):
        return {}
    return references[position]


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


def entry_count(batches: Sequence[Batch]) -> int:
    """Entries checked, each counted once whatever the number of cotangents (or tangents)."""
    flats: dict[str, list[NDArray[np.intp]]] = {}
    for name, _, flat, _ in batches:
        flats.setdefault(name, []).append(flat)
    return sum(
        pieces[0].size if len(pieces) == 1 else int(np.unique(np.concatenate(pieces)).size)
        for pieces in flats.values()
    )


def summaries(
    batches: Sequence[Batch],
    shapes: Mapping[str, tuple[int, ...]],
    references: References | None,
    listed: Mapping[str, int],
    lower_bounds: Collection[str] = (),
) -> dict[str, InputSummary]:
    """Per input, each entry counted once: it fails if it fails for any cotangent, is
    inconclusive if it fails for none but is inconclusive for one, and doubtful if it passes
    for all with a reason other than ok for one. Each cotangent's analytic values are compared
    with that cotangent's reference. `lower_bounds` names the inputs whose wrong entries fast
    mode stopped localising before it found them all."""
    parts: dict[str, list[tuple[Verdicts, NDArray[np.intp], int | None]]] = {}
    for name, number, flat, verdicts in batches:
        parts.setdefault(name, []).append((verdicts, flat, number))
    summary: dict[str, InputSummary] = {}
    for label, pieces in parts.items():
        flats = np.concatenate([f for _, f, _ in pieces])
        abs_errors = np.concatenate([v.abs_error for v, _, _ in pieces])
        numerical = np.concatenate([v.numerical for v, _, _ in pieces])
        bad = np.concatenate([v.badness for v, _, _ in pieces])
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

        failed = per_entry(np.concatenate([v.failed for v, _, _ in pieces]))
        inconclusive = per_entry(np.concatenate([v.inconclusive for v, _, _ in pieces])) & ~failed
        reasoned = per_entry(np.concatenate([v.passed & (v.reasons != "ok") for v, _, _ in pieces]))
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
        summary[label] = InputSummary(
            entries=int(count),
            failed=int(np.count_nonzero(failed)),
            inconclusive=int(np.count_nonzero(inconclusive)),
            doubtful=int(np.count_nonzero(doubtful)),
            max_abs_error=float(finite_abs.max()) if finite_abs.size else 0.0,
            max_rel_error=float(finite_rel.max()) if finite_rel.size else None,
            worst_index=worst_index,
            listed=listed.get(label, 0),
            max_reference_diff=_reference_diff(label, pieces, references),
            failed_at_least=label in lower_bounds,
        )
    return summary


def _reference_diff(
    name: str,
    pieces: Sequence[tuple[Verdicts, NDArray[np.intp], int | None]],
    references: References | None,
) -> float | None:
    """max |reference - analytic| over the input's rows, each against its own cotangent's."""
    if not references:
        return None
    largest: float | None = None
    for verdicts, flat, number in pieces:
        reference = reference_of(references, number).get(name)
        if reference is None:
            continue
        values = np.asarray(reference).reshape(-1)[flat]
        gap = float(np.max(np.abs(values - verdicts.analytic), initial=0.0))
        largest = gap if largest is None else max(largest, gap)
    return largest


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
    reference: References | None = None,
    output_shape: OutputShape = None,
    lower_bounds: Collection[str] = (),
) -> RunReport:
    """The report of a check from its batches of verdicts: the listed entries (all, or the
    failed, inconclusive, doubtful and worst), the summary per input, the error maps and the
    diagnosis. A batch's number is the cotangent of an array-valued forward, or the tangent of
    an hvp or jvp check (`settings.tangent`). In fast mode (`settings.mode`) the batches are
    the entries the bisection checked one by one, and `lower_bounds` the inputs where it
    stopped localising early."""
    tag = "cotangent" if settings.tangent is None else "tangent"
    details = settings.details
    shapes = {name: tuple(np.shape(a)) for name, a in inputs.items()}
    total = sum(v.passed.size for _, _, _, v in batches)
    list_all = details == "all" or (details == "auto" and entry_count(batches) <= AUTO_LIST_LIMIT)

    # Choose the listed entries over all batches at once: the failed and inconclusive (worst
    # first, capped), the doubtful (so that a count of them always has rows to show), and the
    # `top` worst overall.
    badness = np.concatenate([v.badness for *_, v in batches]) if batches else np.empty(0)
    if list_all:
        chosen = np.arange(total)
    else:
        unpassed = np.concatenate([~v.passed for *_, v in batches])
        doubtful = np.concatenate([v.passed & (v.reasons != "ok") for *_, v in batches])
        # Partial selection, not a full sort: a million-entry check lists a few rows.
        chosen = np.unique(
            np.concatenate(
                [
                    worst_positions(np.flatnonzero(unpassed), badness, AUTO_LIST_LIMIT),
                    worst_positions(np.flatnonzero(doubtful), badness, AUTO_LIST_LIMIT),
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
        ref = reference_of(reference, cotangent).get(name)
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

    summary = summaries(batches, shapes, reference, listed, lower_bounds)
    ratios, unsure = error_maps(batches, inputs)
    scope = _scopes(batches, shapes, fast=settings.mode == "fast")
    dimensions = dict(shapes)
    if output_shape and all(isinstance(n, int) for n in output_shape):
        dimensions["output"] = tuple(int(n) for n in output_shape)  # type: ignore[arg-type]
    diagnoses = diagnose_inputs(
        batches,
        inputs,
        summary,
        scope=scope,
        dimensions=dimensions,
        lower_bounds=lower_bounds,
    )
    return RunReport(
        model=about or ModelInfo(model.name, model.formula, "api"),
        inputs=dict(input_infos),
        settings=settings,
        f=f0,
        checks=tuple(checks),
        summary=summary,
        omitted=total - len(checks),
        output_shape=output_shape,
        diagnosis=tuple(diagnoses),
        error_ratios=ratios,
        inconclusive_maps=unsure,
    )


def _scopes(
    batches: Sequence[Batch], shapes: Mapping[str, tuple[int, ...]], *, fast: bool
) -> dict[str, Scope]:
    """Per input, what its diagnosis may speak of: every entry, a selection, or (fast mode)
    only the entries checked one by one."""
    seen: dict[str, set[int]] = {}
    for name, _, flat, _ in batches:
        seen.setdefault(name, set()).update(flat.tolist())
    scopes: dict[str, Scope] = {}
    for name, flats in seen.items():
        if fast:
            scopes[name] = "one-by-one"
        else:
            every = len(flats) == int(np.prod(shapes[name], dtype=np.int64))
            scopes[name] = "all" if every else "selected"
    return scopes


def error_maps(
    batches: Sequence[Batch], inputs: Inputs
) -> tuple[dict[str, FloatArray], dict[str, NDArray[np.bool_]]]:
    """Per checked input, |analytic - numerical| / tolerance in the input's shape (the worst
    over cotangents; NaN where not checked), and where its entries are inconclusive (for no
    cotangent failed, for one inconclusive): a map shows those apart from verified ones."""
    ratios: dict[str, FloatArray] = {}
    unsure: dict[str, NDArray[np.bool_]] = {}
    failed: dict[str, NDArray[np.bool_]] = {}
    for name, _, flat, verdicts in batches:
        shape = np.shape(inputs[name])
        ratio = ratios.setdefault(name, np.full(shape, np.nan))
        flat_ratio = ratio.reshape(-1)
        flat_ratio[flat] = np.fmax(flat_ratio[flat], verdicts.badness)
        unsure.setdefault(name, np.zeros(shape, dtype=bool)).reshape(-1)[flat] |= (
            verdicts.inconclusive
        )
        failed.setdefault(name, np.zeros(shape, dtype=bool)).reshape(-1)[flat] |= verdicts.failed
    return ratios, {name: unsure[name] & ~failed[name] for name in unsure}


def diagnose_inputs(
    batches: Sequence[Batch],
    inputs: Inputs,
    summary: Mapping[str, InputSummary],
    *,
    scope: Mapping[str, Scope],
    dimensions: Mapping[str, tuple[int, ...]],
    lower_bounds: Collection[str] = (),
) -> list[Diagnosis]:
    """The diagnosis of each input with failures, through the cotangent of its worst entry
    (the summary's): the pattern of a bug (a factor, a slice) is the same through every
    cotangent, and the diagnosis then names the summary's worst entry with its numbers. The
    other inputs' numbers through that cotangent, every floating input's values and the
    model's dimensions are its context (every input's values, constants included)."""
    rows: dict[str, list[tuple[int | None, Verdicts]]] = {}
    for name, number, _, verdicts in batches:
        rows.setdefault(name, []).append((number, verdicts))
    values: dict[str, Float64Array] | None = None
    diagnoses: list[Diagnosis] = []
    for name in inputs:
        mine = rows.get(name)
        if not mine or not any(v.failed.any() for _, v in mine):
            continue
        number = _worst_number(mine)
        if values is None:
            # Constants too: a boolean dropout mask is a sign pattern a diagnosis may name.
            values = {
                key: _float64(array)
                for key, array in inputs.items()
                if np.asarray(array).dtype.kind in "biuf"
            }
        observed = {
            other: _observed(batches, other, number, np.shape(inputs[other])) for other in rows
        }
        own, failed = observed[name]
        context = Context(
            others={key: seen for key, (seen, _) in observed.items() if key != name},
            values=values,
            dimensions=dimensions,
            scope=scope.get(name, "all"),
            at_least=name in lower_bounds,
            worst=summary[name].worst_index if name in summary else None,
        )
        diagnoses.extend(
            diagnose(
                name,
                own.analytic,
                own.numerical,
                own.tolerance,
                failed,
                values.get(name),
                context=context,
            )
        )
    return diagnoses


def _float64(array: Array) -> Float64Array:
    converted: Float64Array = np.asarray(array, dtype=np.float64)
    return converted


def _worst_number(rows: Sequence[tuple[int | None, Verdicts]]) -> int | None:
    """The cotangent of the input's worst row, as the summary finds it (first of equals); a
    cotangent with a failure when the worst row has none."""
    badness = np.concatenate([v.badness for _, v in rows])
    owners = [number for number, v in rows for _ in range(v.badness.size)]
    worst = owners[int(np.argmax(badness))] if badness.size else None
    if any(v.failed.any() for number, v in rows if number == worst):
        return worst
    return next(number for number, v in rows if v.failed.any())


def _observed(
    batches: Sequence[Batch], name: str, number: int | None, shape: tuple[int, ...]
) -> tuple[Observed, NDArray[np.bool_]]:
    """One input's numbers through one cotangent in its own shape (NaN where not checked; in
    fast mode several leaves), and where they failed."""
    size = int(np.prod(shape, dtype=np.int64))
    arrays = {key: np.full(size, np.nan) for key in ("analytic", "numerical", "tolerance")}
    failed = np.zeros(size, dtype=bool)
    for own, each, flat, verdicts in batches:
        if own != name or each != number:
            continue
        arrays["analytic"][flat] = verdicts.analytic
        arrays["numerical"][flat] = verdicts.numerical
        arrays["tolerance"][flat] = verdicts.tolerance
        failed[flat] = verdicts.failed
    observed = Observed(**{key: array.reshape(shape) for key, array in arrays.items()})
    return observed, failed.reshape(shape)


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
