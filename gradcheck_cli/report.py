"""Reports: what a check found, as frozen dataclasses that render to the JSON contract.

The JSON document is `report.to_document()`; schema.json describes it (schema_version 1) and
`gradcheck schema` prints it. Renderers read these objects and compute nothing new.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

SCHEMA_VERSION = 1

REASON_TEXT: dict[str, str] = {
    # Every reason a verdict can carry; schema.json lists the same.
    "ok": "agrees within the error estimate",
    "mismatch": "gradient mismatch: the error exceeds what the finite difference can explain",
    "step-too-small": "step too small: round-off dominates the finite difference",
    "step-too-large": "step too large: truncation dominates the finite difference",
    "kink": "a kink lies within the step: the function is not differentiable there",
    "saturated": "saturated: the true gradient is below the finite-difference noise floor",
    "non-finite": "the function is not finite at a perturbed point",
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    formula: str
    source: str
    """"builtin" or the model file's path."""
    gradient_formula: str | None = None


@dataclass(frozen=True)
class InputInfo:
    source: str
    """A path (with :key for .npz) or builtin:seed."""
    shape: tuple[int, int]
    dtype: str


@dataclass(frozen=True)
class Settings:
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
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Command-specific settings (entries, details, seed, reference, ...)."""


@dataclass(frozen=True)
class EntryCheck:
    wrt: str
    index: tuple[int, int]
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

    @property
    def excess(self) -> float:
        """abs_error / tolerance: above 1 fails; orders entries worst first."""
        if self.tolerance > 0:
            return self.abs_error / self.tolerance
        return math.inf if self.abs_error > 0 or not math.isfinite(self.numerical) else 0.0


@dataclass(frozen=True)
class MatrixSummary:
    entries: int
    """Entries checked."""
    failed: int
    doubtful: int
    """Passed, but with a reason other than ok (kink, saturated, step)."""
    max_abs_error: float
    max_rel_error: float | None
    worst_index: tuple[int, int] | None
    listed: int
    """Entries of this matrix listed in `checks`."""
    max_reference_diff: float | None = None


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


@dataclass(frozen=True)
class RunReport:
    model: ModelInfo
    inputs: dict[str, InputInfo]
    settings: Settings
    f: float
    checks: tuple[EntryCheck, ...]
    summary: dict[str, MatrixSummary]
    omitted: int
    """Checked entries left out of `checks` (see --details)."""
    directions: tuple[DirectionCheck, ...] = ()
    """--mode fast only: the directional checks, top-level and bisection."""
    command: str = "run"

    @property
    def passed(self) -> bool:
        # In fast mode a failed top-level direction fails the check even when bisection finds
        # no single wrong entry (many small errors can add up along v).
        directions_ok = all(d.passed for d in self.directions if d.depth == 0)
        return directions_ok and all(s.failed == 0 for s in self.summary.values())

    def to_document(self) -> dict[str, Any]:
        document = _document(self, checks=[_entry(c) for c in self.checks])
        if not self.directions:
            del document["directions"]
        else:
            document["directions"] = [_entry(d) for d in self.directions]
        return document


@dataclass(frozen=True)
class Perturbation:
    wrt: str
    index: tuple[int, int]
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


@dataclass(frozen=True)
class PerturbReport:
    model: ModelInfo
    inputs: dict[str, InputInfo]
    settings: Settings
    f: float
    perturbations: tuple[Perturbation, ...]
    command: str = "perturb"

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.perturbations)

    def to_document(self) -> dict[str, Any]:
        return _document(self, perturbations=[_plain(p) for p in self.perturbations])


@dataclass(frozen=True)
class SweepRow:
    delta: float
    residual: float
    """|f(x + delta v) - f(x) - delta <g, v>|"""
    in_fit: bool


@dataclass(frozen=True)
class SweepReport:
    model: ModelInfo
    inputs: dict[str, InputInfo]
    settings: Settings
    f: float
    direction: dict[str, Any]
    directional_derivative: float
    """<g, v> from the analytic gradient."""
    rows: tuple[SweepRow, ...]
    slope: float | None
    noise_floor: float
    reason: str
    """slope-2, slope-1, round-off (all residuals at round-off level) or inconclusive."""
    passed: bool
    command: str = "sweep"

    def to_document(self) -> dict[str, Any]:
        return _document(self, rows=[_plain(r) for r in self.rows])


AnyReport = RunReport | PerturbReport | SweepReport


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    return obj


def _entry(check: EntryCheck | DirectionCheck) -> dict[str, Any]:
    entry = _plain(check)
    # Optional columns appear only where they mean something, so the common case stays small.
    for key in ("cotangent", "reference"):
        if entry.get(key, 0) is None:
            del entry[key]
    return dict(entry)


def _document(report: AnyReport, **body: Any) -> dict[str, Any]:
    settings = _plain(report.settings)
    settings.update(settings.pop("extra"))
    head: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": report.command,
        "passed": report.passed,
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
