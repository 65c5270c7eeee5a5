"""Reports: what a check found, as frozen dataclasses that render to the JSON contract.

The JSON document is `report.to_document()`; schema.json describes it (schema_version 4) and
`gradcheck schema` prints it; a run that ends in an error (exit 2 or 3) has its own small
document, `error_document`. Renderers read these objects and compute nothing new.

Inputs are named arrays of any shape: an entry is (input name, index tuple of that input's
rank), `()` for a 0-D input.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from gradcheck_cli.diagnosis.result import Diagnosis

SCHEMA_VERSION = 4
"""4: `side_effects` and `settings.side_effects`; documents of several layers (`project_report`:
a whole file, a config's checks, several input points). 3: `summary.failed_at_least`, `error`
documents (verdict "error", exit 2 and 3), diagnosis kinds shifted, masked and swapped. 2: named
inputs of any shape. 1: X and W only."""

REASON_TEXT: dict[str, str] = {
    # Every reason a verdict can carry; schema.json lists the same.
    "ok": "agrees within the error estimate",
    "mismatch": "gradient mismatch: the error exceeds what the finite difference can explain",
    "step-too-small": "step too small: round-off dominates the finite difference",
    "step-too-large": "step too large: truncation dominates the finite difference",
    "kink": "a kink lies within the step, and the gradient lies between its one-sided slopes",
    "kink-mismatch": "a kink lies within the step, and the gradient lies outside its one-sided"
    " slopes: wrong on either side",
    "saturated": "saturated: the true gradient is below the finite-difference noise floor",
    "rounding": "the precision the gradient is computed in (--dtype) rounds it by more than 1% of"
    " the entry itself: it is vouched for at its input's scale",
    "inconclusive": "inconclusive: the finite difference's own error (or, in low precision, the"
    " gradient's own rounding) is too large to vouch for the gradient, or f jumps within the step"
    " (not counted as passed)",
    "non-finite": "the function is not finite at a perturbed point",
}

SIDE_EFFECT_KINDS: dict[str, str] = {
    # Every kind of side effect a run checks for; schema.json lists the same.
    "dout-modified": "backward wrote into the gradient of forward's output it was given",
    "cache-modified": "backward wrote into what forward saved for it (the cache)",
    "input-modified": "forward (or backward) wrote into an input",
    "not-reentrant": "two backward calls on the same cache and dout give different results",
    "uninitialised-memory": "the result depends on memory np.empty (torch.empty) left unwritten",
}

OutputShape = tuple[int, ...] | tuple[tuple[int, ...], ...] | None
"""None for a scalar forward; the shape of its array output; the shapes of several outputs."""


def entry_label(name: str, index: tuple[int, ...] | list[int]) -> str:
    """`W[0,1]`, `b[3]`, `kernel[1,0,2,2]`; `scale[]` for a 0-D input."""
    return f"{name}[{','.join(str(i) for i in index)}]"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    formula: str
    source: str
    """"builtin" or the model file's path."""
    gradient_formula: str | None = None


@dataclass(frozen=True)
class InputInfo:
    name: str
    source: str
    """A path (with :key for .npz), builtin:seed, example_inputs() or array (the API)."""
    shape: tuple[int, ...]
    dtype: str
    checked: bool = True
    why: str | None = None
    """Why an input is not checked: a constant (integer or boolean array), no gradient from the
    backward, or not selected."""
    gradient_shape: tuple[int, ...] | None = None
    """The shape backward gives this input's gradient in, when it differs from the input's by
    axes of length 1 (dgamma (1, D) for gamma (D,)): accepted and compared as if reshaped;
    None when the shapes agree."""


@dataclass(frozen=True)
class Settings:
    """How every entry of a report was judged: the scheme, the step, the tolerance, the
    precision. Every report has these; each kind of report adds its own (below)."""

    method: str
    delta: float | None
    """The step every entry used, or None when each entry got its default step."""
    step_rule: str
    rtol: float
    atol: float
    tolerance: Literal["estimate", "fixed"]
    """estimate: tol = atol + rtol*|numerical| + safety * error_estimate; fixed: no estimate."""
    safety: float
    dtype: str
    wrt: tuple[str, ...]
    """The checked inputs (for a jvp check, the checked outputs)."""
    forward_eps: float | None
    """The precision forward computes in when coarser than the inputs' dtype; else None."""
    nondet_tol: float
    """How far two evaluations at the same inputs may differ."""


@dataclass(frozen=True)
class SideEffect:
    """One side-effect check of the user's code (one kind, one function) and what it found."""

    kind: str
    """A key of SIDE_EFFECT_KINDS."""
    role: str
    """The function it is about, as the file names it: `affine_backward`, `forward`."""
    passed: bool
    names: tuple[str, ...]
    """What was written into, as the user's code names it: `dout`, `cache[2]`, `self.x`, `w`;
    the gradients that differ (`dx`) for not-reentrant and uninitialised-memory; empty when
    the check passed."""
    message: str
    """One line: what was checked, or what was found (with an example entry)."""


@dataclass(frozen=True)
class FastSettings:
    """Fast mode: how many random directions, and how each is differenced."""

    directions: int
    direction_scheme: str
    localise_limit: int
    """Localisation stops after this many wrong entries."""


@dataclass(frozen=True)
class TangentSettings:
    """An hvp (--order 2) or jvp (--mode jvp) check: the entries are elements of g along
    random tangents."""

    check: Literal["hvp", "jvp"]
    order: int
    tangents: int
    tangent_inputs: tuple[str, ...]
    """The inputs the tangents move (the others get zeros)."""


@dataclass(frozen=True)
class LowPrecisionSettings:
    """--dtype float32, float16 or bfloat16 (a run): the gradient computed in that precision,
    judged against a float64 forward at the same quantised inputs."""

    precision: str
    """The dtype the model's code ran in (`dtype` says what the listed entries were judged in:
    float64 when the same code in float64 failed first)."""
    reference_forward: str
    """What the numerical side differences, in float64: `the model's forward` or `FILE:NAME`."""
    unit_roundoff: float
    """u = eps / 2 of the dtype."""
    rounding_rule: str
    """How each entry's estimate grows with the dtype's rounding of the analytic gradient."""
    dithers: int
    """Runs at rounding-level perturbations that measured how far the gradient moves."""


@dataclass(frozen=True)
class RunSettings(Settings):
    """A run's settings: which entries, how many listed, the mode, the processes, the seed."""

    details: str = "auto"
    entries: str = "all"
    seed: int = 0
    mode: str = "full"
    cotangents: int | None = None
    """How many random cotangents checked an array-valued forward; None for a scalar one."""
    jobs: int = 1
    """How many processes evaluated the forward calls."""
    reference: str | None = None
    side_effects: bool = False
    """Whether the user's code was checked for side effects (model files and the API)."""
    low_precision: LowPrecisionSettings | None = None
    fast: FastSettings | None = None
    tangent: TangentSettings | None = None


@dataclass(frozen=True)
class SweepSettings(Settings):
    """The Taylor sweep's settings: the slope is fitted over this many smallest clear deltas."""

    fit_points: int = 4


@dataclass(frozen=True)
class EntryCheck:
    wrt: str
    index: tuple[int, ...]
    analytic: float
    numerical: float
    abs_error: float
    rel_error: float | None
    error_estimate: float
    tolerance: float
    step: float
    reason: str
    passed: bool
    cotangent: int | None = None
    reference: float | None = None
    """The reference gradient (e.g. PyTorch autograd) when --reference is given."""
    tangent: int | None = None
    """--order 2 and --mode jvp: which random tangent the entry was checked along."""

    @property
    def excess(self) -> float:
        """abs_error / tolerance: above 1 fails; orders entries worst first."""
        if self.tolerance > 0:
            return self.abs_error / self.tolerance
        return math.inf if self.abs_error > 0 or not math.isfinite(self.numerical) else 0.0


@dataclass(frozen=True)
class InputSummary:
    """One checked input. Each entry counts once, whatever the number of cotangents."""

    entries: int
    """Entries checked (in fast mode: covered by the directions)."""
    failed: int
    inconclusive: int
    """Neither passed nor failed: the difference could not vouch for the gradient."""
    doubtful: int
    """Passed, but with a reason other than ok (kink, saturated, step)."""
    max_abs_error: float
    max_rel_error: float | None
    worst_index: tuple[int, ...] | None
    listed: int
    """Entries of this input listed in `checks`."""
    max_reference_diff: float | None = None
    """--reference: max |reference - analytic|, each cotangent's entries against that
    cotangent's reference."""
    checked_one_by_one: int | None = None
    """Fast mode: how many of its entries were checked one by one (the bisection's leaves)."""
    failed_at_least: bool = False
    """Fast mode: localising stopped (after `localise_limit` wrong entries) before this input's
    wrong entries were all found, so `failed` is a lower bound: at least that many."""


@dataclass(frozen=True)
class DirectionCheck:
    """--mode fast: one directional difference against <g, v> for a random v on a block."""

    wrt: str
    """X, W, or both (a direction over every selected entry)."""
    entries: int
    """How many entries v moves."""
    depth: int
    """0 for the top-level random directions; k for a block found by k bisections."""
    analytic: float
    """<g, v>"""
    numerical: float
    abs_error: float
    error_estimate: float
    tolerance: float
    step: float
    passed: bool
    cotangent: int | None = None
    reason: str = "ok"
    """ok, mismatch, non-finite, kink or kink-mismatch, as for entries."""


@dataclass(frozen=True)
class UnlocalisedBlock:
    """--mode fast: a block of entries whose direction failed while every half of it passed,
    too large to check one by one: the error is somewhere in it."""

    wrt: str
    first: tuple[int, ...]
    """Its first and last entries, in row-major (C) order of the input."""
    last: tuple[int, ...]
    entries: int


@dataclass(frozen=True)
class FastEvidence:
    """--mode fast: what the random directions showed, so a pass says what it rests on."""

    directions: int
    """Top-level random directions over every selected entry, per cotangent."""
    detectable_error: float | None
    """An error in the gradient (the norm of analytic - true over the selected entries; one
    wrong entry alone: its error) at least this large shows in at least one direction except
    with probability `escape_probability`. None when a direction failed."""
    escape_probability: float
    unlocalised: tuple[UnlocalisedBlock, ...] = ()


@dataclass(frozen=True)
class RunReport:
    model: ModelInfo
    inputs: dict[str, InputInfo]
    settings: RunSettings
    f: float
    """f at the given inputs; for a model whose forward returns an array, the contracted value
    <forward, v1> with the first cotangent (see `output_shape`)."""
    checks: tuple[EntryCheck, ...]
    summary: dict[str, InputSummary]
    omitted: int
    """Checked entries left out of `checks` (see --details)."""
    directions: tuple[DirectionCheck, ...] = ()
    """--mode fast only: the directional checks, top-level and bisection."""
    output_shape: OutputShape = None
    """The shape of forward's output when it is an array; None for a scalar f."""
    fast: FastEvidence | None = None
    forward_calls: int | None = None
    """How many times the user's forward ran (model files and the API); None for built-ins."""
    diagnosis: tuple[Diagnosis, ...] = ()
    """What kind of bug each failing input shows (empty for a passing run)."""
    gradient_check: dict[str, Any] | None = None
    """--order 2: the first-order check of backward that came first (verdict and counts)."""
    float64_check: dict[str, Any] | None = None
    """A low-precision run of code that also runs in float64: the float64 check of the same
    code that came first (verdict and counts)."""
    side_effects: tuple[SideEffect, ...] = ()
    """Each side-effect check that ran (passed or not): a failed one fails the run."""
    error_ratios: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """Per checked input, |analytic - numerical| / tolerance in the input's shape (NaN where not
    checked, inf where f was not finite): the error map's numbers. Not in the JSON."""
    inconclusive_maps: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """Per checked input, where its entries are inconclusive (boolean, the input's shape): the
    map shows them apart from the verified ones. Not in the JSON."""
    command: str = "run"

    def __repr__(self) -> str:
        """One line: what was checked and the verdict (the table is `api`'s str())."""
        entries = sum(s.entries for s in self.summary.values())
        failed = sum(s.failed for s in self.summary.values())
        unsure = sum(s.inconclusive for s in self.summary.values())
        effects = [e.kind for e in self.side_effects if not e.passed]
        found = f"; side effects: {', '.join(effects)}" if effects else ""
        return (
            f"<{type(self).__name__} {self.model.name!r} {self.verdict}: {failed} failed, "
            f"{unsure} inconclusive of {entries} entries of {', '.join(self.summary) or 'nothing'}"
            f"{found}>"
        )

    @property
    def verdict(self) -> str:
        """passed (every entry passed), failed (one failed) or inconclusive (none failed, but one
        could not be verified); the CLI's exit codes follow (0, 1, 4)."""
        # In fast mode a failed top-level direction fails the check even when bisection finds
        # no single wrong entry (many small errors can add up along v).
        top_level = [d for d in self.directions if d.depth == 0]
        directions_failed = any(not d.passed and d.reason != "inconclusive" for d in top_level)
        first = self.gradient_check
        if first is not None and first["verdict"] != "passed":
            return str(first["verdict"])
        float64 = (self.float64_check or {}).get("verdict", "passed")
        if any(not effect.passed for effect in self.side_effects):
            return "failed"
        if directions_failed or any(s.failed for s in self.summary.values()):
            return "failed"
        if float64 == "failed":
            return "failed"
        unsure = any(d.reason == "inconclusive" for d in top_level) or float64 != "passed"
        if unsure or any(s.inconclusive for s in self.summary.values()):
            return "inconclusive"
        if not top_level and not any(s.entries for s in self.summary.values()):
            return "inconclusive"  # nothing was compared: no evidence to pass on
        return "passed"

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_document(self) -> dict[str, Any]:
        document = _document(self, checks=[_entry(c) for c in self.checks])
        del document["error_ratios"], document["inconclusive_maps"]
        document["diagnosis"] = [d.to_document() for d in self.diagnosis]
        if not self.directions:
            del document["directions"]
        else:
            document["directions"] = [_entry(d) for d in self.directions]
        if self.fast is None:
            del document["fast"]
        if self.gradient_check is None:
            del document["gradient_check"]
        if self.float64_check is None:
            del document["float64_check"]
        return document


@dataclass(frozen=True)
class Perturbation:
    wrt: str
    index: tuple[int, ...]
    delta: float
    f: float
    f_perturbed: float
    actual_change: float
    predicted_change: float
    gradient: float
    abs_error: float
    """|actual_change - predicted_change|"""
    rel_error: float | None
    remainder_estimate: float
    """The expected O(delta^2) part of the actual change: (f(x+d) + f(x-d) - 2 f(x)) / 2."""
    numerical: float
    """The derivative by the settings' method at step delta."""
    error_estimate: float
    tolerance: float
    reason: str
    passed: bool
    reference: float | None = None
    """PyTorch autograd's gradient of the entry with --reference torch (the seed's last step)."""


@dataclass(frozen=True)
class PerturbReport:
    model: ModelInfo
    inputs: dict[str, InputInfo]
    settings: Settings
    f: float
    perturbations: tuple[Perturbation, ...]
    output_shape: OutputShape = None
    command: str = "perturb"

    def __repr__(self) -> str:
        return (
            f"<PerturbReport {self.model.name!r} {self.verdict}: "
            f"{len(self.perturbations)} perturbations>"
        )

    @property
    def verdict(self) -> str:
        if any(not p.passed and p.reason != "inconclusive" for p in self.perturbations):
            return "failed"
        return "passed" if all(p.passed for p in self.perturbations) else "inconclusive"

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_document(self) -> dict[str, Any]:
        return _document(self, perturbations=[_entry(p) for p in self.perturbations])


@dataclass(frozen=True)
class SweepRow:
    delta: float
    residual: float
    """|f(x + delta v) - f(x) - delta <g, v>|"""
    in_fit: bool
    residual_opposite: float
    """|f(x - delta v) - f(x) + delta <g, v>|: the other side, which tells a kink from a
    wrong gradient."""


@dataclass(frozen=True)
class SweepReport:
    model: ModelInfo
    inputs: dict[str, InputInfo]
    settings: SweepSettings
    f: float
    direction: dict[str, Any]
    directional_derivative: float
    """<g, v> from the analytic gradient."""
    rows: tuple[SweepRow, ...]
    slope: float | None
    noise_floor: float
    reason: str
    """slope-2, slope-1, round-off (all residuals at round-off level), inconclusive, or jump (f
    jumps at x along v: inconclusive too)."""
    passed: bool
    output_shape: OutputShape = None
    command: str = "sweep"

    def __repr__(self) -> str:
        return f"<SweepReport {self.model.name!r} {self.verdict}: {self.reason}>"

    @property
    def verdict(self) -> str:
        if self.passed:
            return "passed"
        return "inconclusive" if self.reason in ("inconclusive", "jump") else "failed"

    def to_document(self) -> dict[str, Any]:
        return _document(self, rows=[_plain(r) for r in self.rows])


AnyReport = RunReport | PerturbReport | SweepReport


def error_document(command: str, message: str, exit_code: int) -> dict[str, Any]:
    """The document of a run that ended in an error before any verdict (exit 2: bad usage or
    input; 3: a bug in gradcheck): what CI reads instead of a report."""
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "passed": False,
        "verdict": "error",
        "error": message,
        "exit_code": exit_code,
    }


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    return obj


def _entry(check: EntryCheck | DirectionCheck | Perturbation) -> dict[str, Any]:
    entry = _plain(check)
    # Optional columns appear only where they mean something, so the common case stays small.
    for key in ("cotangent", "reference", "tangent"):
        if entry.get(key, 0) is None:
            del entry[key]
    return dict(entry)


def _document(report: AnyReport, **body: Any) -> dict[str, Any]:
    settings = _plain(report.settings)
    for part in ("fast", "tangent", "low_precision"):  # a run's kind-specific settings, flattened
        settings.update(settings.pop(part, None) or {})
    head: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": report.command,
        "passed": report.passed,
        "verdict": report.verdict,
        "model": _plain(report.model),
        "inputs": _plain(report.inputs),
        "settings": settings,
        "f": report.f,
    }
    tail = {
        f.name: _plain(getattr(report, f.name))
        for f in dataclasses.fields(report)
        if f.name not in {"model", "inputs", "settings", "f", "command", "passed", *body}
        and f.name not in {"checks", "perturbations", "rows"}
    }
    return {**head, **body, **tail}
