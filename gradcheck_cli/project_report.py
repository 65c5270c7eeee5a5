"""The report of several checks at once: every layer of a file, the checks of a config, a layer
at several input points (`ProjectReport`), and its JSON document (schema.json's `layers`).

A layer is checked at one point or more: point 1 at the inputs as given (the command line's,
else the examples), the others drawn (`--points`). Each point's check is an ordinary
`RunReport`; a layer or point that could not be checked holds the one-line error instead. The
verdicts rank, worst first, failed > error > inconclusive > passed: a wrong gradient is news
whatever else happened; a layer that could not be checked leaves the run unable to vouch for
the whole (exit 2, not 0 or 4); an unverified one is less than that. A layer's verdict is its
points' worst, the run's its layers' worst; the exit code follows (1, 2, 4, 0).

Renderers read these objects and the document and compute nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.report import SCHEMA_VERSION, RunReport

VERDICT_ORDER = ("failed", "error", "inconclusive", "passed")
"""Worst first: the verdict of several is the first of these that any of them has."""

ORIGINS = ("given", "sample_inputs", "drawn")
"""Where a point's inputs come from: as given (the command line's, else the examples; always
point 1), the file's `sample_inputs(rng)`, or drawn scaled like the given ones."""


def worst(verdicts: list[str]) -> str:
    """The worst of `verdicts` by `VERDICT_ORDER`; passed for none."""
    for verdict in VERDICT_ORDER:
        if verdict in verdicts:
            return verdict
    return "passed"


@dataclass(frozen=True)
class PointResult:
    """One layer checked at one input point."""

    point: int
    """1 for the inputs as given; 2, 3, ... for the drawn ones."""
    origin: str
    """One of ORIGINS."""
    report: RunReport | None
    error: str | None = None
    """Why the layer could not be checked at this point (its report is then None)."""
    arrays: Mapping[str, NDArray[Any]] = field(default_factory=dict, compare=False)
    """The point's inputs by name (what `--inputs` replays); saved or embedded only for a drawn
    point that did not pass."""
    inputs_file: str | None = None
    """Where the point's inputs were saved (next to --output), once they are."""

    @property
    def verdict(self) -> str:
        if self.report is None:
            return "error"
        return self.report.verdict

    def replayable(self) -> bool:
        """A drawn point that did not pass: its inputs are what a replay needs."""
        return self.point > 1 and self.verdict != "passed" and bool(self.arrays)


@dataclass(frozen=True)
class LayerResult:
    """One layer (or one check of a config): its points, or the error that stopped it."""

    name: str
    """The layer's name in its file (`affine`), or the model's."""
    model: str
    """How to check it alone: `layers.py:affine` (`--model` takes it)."""
    points: tuple[PointResult, ...] = ()
    error: str | None = None
    """Why the layer could not be checked at all (no point was)."""
    check: str | None = None
    """The name of the config's check it belongs to, when it has one."""

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return worst([*(p.verdict for p in self.points), "error"])
        return worst([p.verdict for p in self.points])

    @property
    def deciding(self) -> PointResult | None:
        """The first point whose verdict is the layer's: the one its section shows."""
        verdict = self.verdict
        return next((p for p in self.points if p.verdict == verdict), None)

    @property
    def error_text(self) -> str | None:
        """The layer's own error, else the deciding point's."""
        if self.error is not None:
            return self.error
        deciding = self.deciding
        return None if deciding is None else deciding.error


@dataclass(frozen=True)
class ProjectReport:
    """Several layers, each at one point or more: `gradcheck run --model FILE.py`, `--points`,
    `gradcheck check`."""

    command: str
    """run or check."""
    source: str
    """The model file (run) or the config file (check)."""
    points: int
    """Input points per layer (`--points`; a config's checks may differ: the most of any)."""
    layers: tuple[LayerResult, ...]

    def __repr__(self) -> str:
        counts = {v: sum(layer.verdict == v for layer in self.layers) for v in VERDICT_ORDER}
        listed = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        return f"<ProjectReport {self.source!r} {self.verdict}: {listed or 'no layers'}>"

    @property
    def verdict(self) -> str:
        return worst([layer.verdict for layer in self.layers])

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def assert_ok(self) -> ProjectReport:
        """Raise AssertionError, naming each layer that did not pass and why, unless every
        layer passed at every point."""
        __tracebackhide__ = True
        if not self.passed:
            lines = [f"gradients not shown right ({self.verdict}):"]
            for layer in self.layers:
                if layer.verdict != "passed":
                    deciding = layer.deciding
                    where = "" if deciding is None else f" at point {deciding.point}"
                    why = layer.error_text or f"{layer.verdict}{where}: {_counts(deciding)}"
                    lines.append(f"  {layer.model}: {why}")
            raise AssertionError("\n".join(lines))
        return self

    def to_document(self, *, embed_inputs: bool = True) -> dict[str, Any]:
        """The JSON document; with `embed_inputs`, a drawn point that did not pass and whose
        inputs were not saved to a file holds them (`inputs`), so that it can be replayed."""
        return {
            "schema_version": SCHEMA_VERSION,
            "command": self.command,
            "passed": self.passed,
            "verdict": self.verdict,
            "source": self.source,
            "points": self.points,
            "layers": [_layer_document(layer, embed_inputs) for layer in self.layers],
        }


def _counts(point: PointResult | None) -> str:
    report = None if point is None else point.report
    if report is None:
        return "not checked"
    entries = sum(s.entries for s in report.summary.values())
    failed = sum(s.failed for s in report.summary.values())
    unsure = sum(s.inconclusive for s in report.summary.values())
    return f"{failed} failed and {unsure} inconclusive of {entries} entries"


def _layer_document(layer: LayerResult, embed_inputs: bool) -> dict[str, Any]:
    deciding = layer.deciding
    return {
        "name": layer.name,
        "model": layer.model,
        "check": layer.check,
        "verdict": layer.verdict,
        "error": layer.error,
        "point": None if deciding is None else deciding.point,
        "points": [_point_document(point, embed_inputs) for point in layer.points],
    }


def _point_document(point: PointResult, embed_inputs: bool) -> dict[str, Any]:
    embedded = None
    if embed_inputs and point.inputs_file is None and point.replayable():
        embedded = {name: array_document(array) for name, array in point.arrays.items()}
    return {
        "point": point.point,
        "origin": point.origin,
        "verdict": point.verdict,
        "error": point.error,
        "inputs_file": point.inputs_file,
        "inputs": embedded,
        "report": None if point.report is None else point.report.to_document(),
    }


def array_document(array: NDArray[Any]) -> dict[str, Any]:
    """An array as JSON: its shape, dtype and values in C order (floats at full precision, so
    they read back bit for bit); `array_from_document` reads it back."""
    value = np.asarray(array)
    return {"shape": list(value.shape), "dtype": str(value.dtype), "values": value.ravel().tolist()}


def array_from_document(document: Mapping[str, Any]) -> NDArray[Any]:
    """The array `array_document` wrote."""
    values = np.asarray(document["values"], dtype=np.dtype(str(document["dtype"])))
    return values.reshape(tuple(document["shape"]))
