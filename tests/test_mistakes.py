"""fixtures/models/mistakes.py and its bug twin (issue 24): each correct layer passes, each bug
a newcomer makes fails with the diagnosis that names it, end to end through the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import document_of, gradcheck

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"

EXPECTED: dict[str, tuple[str, str, dict[str, Any]]] = {
    # layer: (input, kind, parameters the diagnosis must hold)
    "batchnorm": ("x", "offset", {"per": "column", "axis": 1}),
    "conv": ("x", "shifted", {"axes": [2, 3], "shifts": [-1, -1]}),
    "relu": ("x", "masked", {"mask": "forgotten", "input": "x", "sign": "positive"}),
    "leaky": ("x", "masked", {"mask": "by-sign", "input": "x"}),
    "multiply": ("x", "swapped", {"with": "y"}),
    "rnn_step": ("h_prev", "transposed", {"input": "wh", "side": "right"}),
    "embedding": ("w", "confined", {"indices": [1, 4]}),
    "l2": ("x", "scale", {"simple_factor": "2"}),
    "mean_pool": ("x", "scale", {"simple_factor": "4"}),
}


@pytest.mark.parametrize("layer", sorted(EXPECTED))
def test_the_bug_is_named(layer: str) -> None:
    """The bug fails, in the input it is in, and the diagnosis there is the kind it is."""
    result = gradcheck(
        "run", "--model", f"{MODELS / 'mistakes_bug.py'}:{layer}", "--format", "json"
    )
    assert result.exit_code == 1, result.stderr
    document = document_of(result)
    wrt, kind, parameters = EXPECTED[layer]
    by_input = {d["wrt"]: d for d in document["diagnosis"]}
    assert wrt in by_input, document["diagnosis"]
    diagnosis = by_input[wrt]
    assert diagnosis["kind"] == kind, diagnosis["message"]
    for key, value in parameters.items():
        assert diagnosis["parameters"][key] == value, (key, diagnosis["parameters"])
    assert document["summary"][wrt]["failed"] > 0


def test_a_swap_is_named_from_both_sides() -> None:
    result = gradcheck(
        "run", "--model", f"{MODELS / 'mistakes_bug.py'}:multiply", "--format", "json"
    )
    kinds = {
        (d["wrt"], d["kind"], d["parameters"]["with"]) for d in document_of(result)["diagnosis"]
    }
    assert kinds == {("x", "swapped", "y"), ("y", "swapped", "x")}
