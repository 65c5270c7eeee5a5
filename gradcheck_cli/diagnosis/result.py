"""What a diagnosis says: `Diagnosis`, one pattern found in one input's failures, of one of
`KINDS`; and `covered_entries`, the entries it names, as every pattern lists them."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_cli.diagnosis.fitting import BoolArray

KINDS = (
    "scale",
    "sign",
    "zero",
    "confined",
    "transposed",
    "input-proportional",
    "offset",
    "shifted",
    "masked",
    "swapped",
    "unexplained",
)
"""Every kind a diagnosis can be; schema.json's `diagnosis.kind` lists the same."""

MAX_LISTED = 20
"""`entries["indices"]` lists at most this many failing entries (in C order)."""


@dataclass(frozen=True)
class Diagnosis:
    """One pattern found in the failures of one input's gradient."""

    wrt: str
    """The input's name, e.g. "W", "b", "kernel"."""
    kind: str
    """Exactly one of KINDS."""
    message: str
    """One line for a person, naming the input and its entries in its own index notation."""
    parameters: dict[str, Any]
    """The fitted parameters, e.g. {"factor": 5.0, "simple_factor": "5"} or {"offset": 0.3}."""
    entries: dict[str, Any]
    """Which entries the pattern covers: "count" (checked entries covered), "failed", a
    "description", "indices" (failing entries, at most MAX_LISTED, C order), "truncated", and
    "slices" ([{"axis": k, "indices": [...]}]) for a pattern on named slices."""
    fit: float
    """||analytic - predicted|| / ||analytic - numerical|| over the checked entries; 0 = perfect,
    1 = explains nothing (`unexplained`)."""

    def to_document(self) -> dict[str, Any]:
        """A plain JSON-able dict (no numpy types, no NaN)."""
        return {
            "wrt": self.wrt,
            "kind": self.kind,
            "message": self.message,
            "parameters": copy.deepcopy(self.parameters),
            "entries": copy.deepcopy(self.entries),
            "fit": self.fit,
        }


def covered_entries(
    failing: BoolArray,
    covered: BoolArray,
    description: str,
    slices: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`Diagnosis.entries`: the `covered` entries, and those of them `failing` (by index).

    `failing` is the comparable failing entries for a pattern that was fitted, the failures
    without finite numbers for the diagnosis that says so; `slices` names the region of a
    pattern on named slices (`regions.slice_parameters`).
    """
    failing_indices = np.argwhere(failing & covered)
    entries: dict[str, Any] = {
        "count": int(covered.sum()),
        "failed": len(failing_indices),
        "description": description,
        "indices": [[int(i) for i in index] for index in failing_indices[:MAX_LISTED]],
        "truncated": len(failing_indices) > MAX_LISTED,
    }
    if slices is not None:
        entries["slices"] = slices
    return entries
