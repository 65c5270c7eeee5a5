"""--mode fast: random directional checks, and bisection down to the wrong entries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from jsonschema import Draft202012Validator

from gradcheck_cli.checks import run_check
from gradcheck_cli.fast import LEAF_SIZE, LOCALISE_LIMIT, fast_check
from gradcheck_cli.models import Array, builtin_model

Invoke = Callable[..., Result]
ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "gradcheck_cli" / "schema.json").read_text(encoding="utf-8"))


class Planted:
    """A built-in model whose gradient is wrong at the given entries, by a given factor."""

    complex_analytic = False

    def __init__(self, name: str, wrong: dict[str, list[tuple[int, int]]], factor: float) -> None:
        self.inner = builtin_model(name)
        self.name, self.formula = f"planted-{name}", self.inner.formula
        self.wrong, self.factor = wrong, factor

    def value(self, X: Array, W: Array) -> float | complex:
        return self.inner.value(X, W)

    def gradient(self, X: Array, W: Array) -> tuple[Array, Array]:
        dX, dW = (g.copy() for g in self.inner.gradient(X, W))
        for name, grad in (("X", dX), ("W", dW)):
            for index in self.wrong.get(name, []):
                grad[index] *= self.factor
        return dX, dW


def inputs(n: int = 40, k: int = 30, m: int = 20) -> tuple[Array, Array]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, k)) / 4, rng.standard_normal((k, m)) / 4


def test_correct_gradient_passes_on_directions_alone() -> None:
    """A correct gradient passes with only the top-level directions: no entry checked singly,
    and the summary counts every entry as covered."""
    X, W = inputs()
    report = fast_check(builtin_model("tanh-sum"), X, W, directions=4, seed=1)
    assert report.passed
    assert [d.depth for d in report.directions] == [0, 0, 0, 0]
    assert all(d.passed for d in report.directions)
    assert report.checks == ()
    assert {k: s.entries for k, s in report.summary.items()} == {"X": X.size, "W": W.size}


@pytest.mark.parametrize("factor", [1.01, 1.001])
def test_planted_entries_are_localised(factor: float) -> None:
    """Two wrong entries among 1800 (one in X, one in W, off by 1% or 0.1%) are found by
    bisection and reported as mismatches, and nothing else fails."""
    X, W = inputs()
    wrong = {"X": [(17, 3)], "W": [(5, 11)]}
    report = fast_check(Planted("sigmoid-sum", wrong, factor), X, W, seed=0)
    assert not report.passed
    failed = {(c.wrt, c.index) for c in report.checks if not c.passed}
    assert failed == {("X", (17, 3)), ("W", (5, 11))}
    assert {c.reason for c in report.checks if not c.passed} == {"mismatch"}
    # Bisection checked far fewer entries one by one than a full check would.
    assert len(report.checks) <= 4 * LEAF_SIZE
    assert any(d.depth > 0 and not d.passed for d in report.directions)


def test_fast_and_full_agree_on_the_wrong_entries() -> None:
    """What fast mode localises, the full check fails too, with the same analytic values."""
    X, W = inputs(12, 10, 6)
    model = Planted("tanh-mean", {"X": [(2, 7)], "W": [(9, 0), (4, 5)]}, 0.9)
    fast = fast_check(model, X, W)
    full = run_check(model, X, W, details="all")
    fast_failed = {(c.wrt, c.index): c.analytic for c in fast.checks if not c.passed}
    full_failed = {(c.wrt, c.index): c.analytic for c in full.checks if not c.passed}
    assert fast_failed == full_failed
    assert len(full_failed) == 3


def test_localising_stops_at_the_limit() -> None:
    """A gradient wrong everywhere stops localising after LOCALISE_LIMIT wrong entries (a lower
    bound, said in the settings) instead of costing more than a full check."""
    X, W = inputs(20, 10, 8)
    wrong = {"X": [(i, j) for i in range(20) for j in range(10)]}
    report = fast_check(Planted("sigmoid-sum", wrong, 2.0), X, W)
    failed = sum(s.failed for s in report.summary.values())
    assert LOCALISE_LIMIT <= failed < LOCALISE_LIMIT + LEAF_SIZE
    assert report.settings.extra["localise_limit"] == LOCALISE_LIMIT
    assert not report.passed


def document(result: Result) -> dict[str, Any]:
    assert "Traceback" not in result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.mark.parametrize(("model", "code"), [("dense_tanh.py", 0), ("dense_tanh_bug.py", 1)])
def test_cli_fast_mode_report_follows_the_schema(invoke: Invoke, model: str, code: int) -> None:
    """run --mode fast on the example model files: exit 0 / 1, and the JSON, with its
    directions, validates against the schema."""
    result = invoke(
        "run",
        "--mode",
        "fast",
        "--model",
        str(ROOT / "fixtures" / "models" / model),
        "--format",
        "json",
    )
    assert result.exit_code == code, result.stderr
    doc = document(result)
    Draft202012Validator(SCHEMA).validate(doc)
    assert doc["settings"]["mode"] == "fast"
    assert doc["directions"][0]["depth"] == 0
    table = invoke("run", "--mode", "fast", "--model", str(ROOT / "fixtures" / "models" / model))
    assert "Random directions" in table.stdout


def test_cli_fast_mode_refuses_delta(invoke: Invoke) -> None:
    """--mode fast picks its own step per direction: --delta with it is a usage error."""
    result = invoke("run", "--mode", "fast", "--delta", "1e-5")
    assert result.exit_code == 2
    assert "--delta" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
