"""Fast mode (--mode fast): random directional checks, and bisection down to the wrong
entries; what it finds agrees with a full check, and where it stops it says so."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from helpers import document_of, gradcheck
from jsonschema import Draft202012Validator

from gradcheck_cli.checks.fast import LEAF_SIZE, LOCALISE_LIMIT, fast_check
from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.models import Array, Gradients, Inputs, builtin_model
from gradcheck_cli.settings import CheckSettings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "gradcheck_cli" / "schema.json").read_text(encoding="utf-8"))


class Planted:
    """A built-in model whose gradient is wrong at the given entries, by a given factor (or
    off by `offset` everywhere in the given inputs)."""

    complex_analytic = False

    def __init__(
        self,
        name: str,
        wrong: Mapping[str, list[tuple[int, int]]],
        factor: float,
        offset: Mapping[str, float] | None = None,
    ) -> None:
        self.inner = builtin_model(name)
        self.name, self.formula = f"planted-{name}", self.inner.formula
        self.wrong, self.factor, self.offset = wrong, factor, offset or {}

    def value(self, inputs: Inputs) -> float | complex:
        return self.inner.value(inputs)

    def gradient(self, inputs: Inputs) -> Gradients:
        gradients = self.inner.gradient(inputs)
        out: Gradients = {}
        for name, grad in gradients.items():
            assert grad is not None
            grad = grad.copy()
            for index in self.wrong.get(name, []):
                grad[index] *= self.factor
            out[name] = grad + self.offset.get(name, 0.0)
        return out


def inputs(n: int = 40, k: int = 30, m: int = 20, seed: int = 3) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {"X": rng.standard_normal((n, k)) / 4, "W": rng.standard_normal((k, m)) / 4}


def test_correct_gradient_passes_on_directions_alone() -> None:
    """A correct gradient passes with only the top-level directions: no entry checked singly,
    the summary counts every entry as covered and none as checked one by one, and the report
    says what the directions showed: an error of some size would have shown."""
    xw = inputs()
    report = fast_check(
        Target.of(builtin_model("tanh-sum"), xw), CheckSettings(mode="fast", directions=4, seed=1)
    )
    assert report.passed
    assert [d.depth for d in report.directions] == [0, 0, 0, 0]
    assert all(d.passed for d in report.directions)
    assert report.checks == ()
    assert {k: s.entries for k, s in report.summary.items()} == {"X": 1200, "W": 600}
    assert {k: s.checked_one_by_one for k, s in report.summary.items()} == {"X": 0, "W": 0}
    assert report.fast is not None
    assert report.fast.detectable_error is not None
    # The smallest error sure to show is a small multiple of the directions' tolerances.
    tolerances = [d.tolerance for d in report.directions]
    assert min(tolerances) < report.fast.detectable_error < 100 * max(tolerances)


@pytest.mark.parametrize("factor", [1.01, 1.001])
def test_planted_entries_are_localised(factor: float) -> None:
    """Two wrong entries among 1800 (one in X, one in W, off by 1% or 0.1%) are found by
    bisection and reported as mismatches, and nothing else fails."""
    xw = inputs()
    wrong = {"X": [(17, 3)], "W": [(5, 11)]}
    report = fast_check(
        Target.of(Planted("sigmoid-sum", wrong, factor), xw), CheckSettings(mode="fast", seed=0)
    )
    assert not report.passed
    failed = {(c.wrt, c.index) for c in report.checks if not c.passed}
    assert failed == {("X", (17, 3)), ("W", (5, 11))}
    assert {c.reason for c in report.checks if not c.passed} == {"mismatch"}
    # Bisection checked far fewer entries one by one than a full check would.
    assert len(report.checks) <= 4 * LEAF_SIZE
    assert any(d.depth > 0 and not d.passed for d in report.directions)


def test_a_single_entry_off_by_one_in_a_thousand_is_named_on_every_seed() -> None:
    """At 64^3 (8192 entries) an error of 1e-3 relative in one entry of W is caught and named
    by fast mode on every one of 10 seeds (9 of 10 is the target fast mode is held to)."""
    n = 64
    rng = np.random.default_rng(0)
    xw = {name: rng.standard_normal((n, n)) * n**-0.25 for name in ("X", "W")}
    model = Planted("sigmoid-sum", {"W": [(3, 5)]}, 1.001)
    named = 0
    for seed in range(10):
        report = fast_check(Target.of(model, xw), CheckSettings(mode="fast", seed=seed))
        assert report.verdict == "failed"
        wrong = {(c.wrt, c.index) for c in report.checks if not c.passed}
        named += wrong == {("W", (3, 5))}
    assert named == 10


def test_fast_and_full_agree_on_the_wrong_entries() -> None:
    """What fast mode localises, the full check fails too, with the same analytic values."""
    xw = inputs(12, 10, 6)
    model = Planted("tanh-mean", {"X": [(2, 7)], "W": [(9, 0), (4, 5)]}, 0.9)
    fast = fast_check(Target.of(model, xw), CheckSettings(mode="fast"))
    full = run_check(Target.of(model, xw), CheckSettings(details="all"))
    fast_failed = {(c.wrt, c.index): c.analytic for c in fast.checks if not c.passed}
    full_failed = {(c.wrt, c.index): c.analytic for c in full.checks if not c.passed}
    assert fast_failed == full_failed
    assert len(full_failed) == 3


def test_localising_stops_at_the_limit() -> None:
    """A gradient wrong everywhere stops localising after LOCALISE_LIMIT wrong entries (a lower
    bound, said in the settings) instead of costing more than a full check."""
    xw = inputs(20, 10, 8)
    wrong = {"X": [(i, j) for i in range(20) for j in range(10)]}
    report = fast_check(
        Target.of(Planted("sigmoid-sum", wrong, 2.0), xw), CheckSettings(mode="fast")
    )
    failed = sum(s.failed for s in report.summary.values())
    assert LOCALISE_LIMIT <= failed < LOCALISE_LIMIT + LEAF_SIZE
    assert report.settings.fast is not None
    assert report.settings.fast.localise_limit == LOCALISE_LIMIT
    assert not report.passed


def test_a_stopped_localisation_is_a_lower_bound_and_the_diagnosis_speaks_of_checked_entries() -> (
    None
):
    """X wrong everywhere (x 2), W right. Localising stops at the limit: X's count is
    marked a lower bound (`failed_at_least`), W's is not; X's diagnosis is about the entries
    checked one by one ("all 24 entries of X checked one by one"), names no region and never
    says the rest of X agrees; the JSON says the same."""
    xw = inputs(20, 10, 8)
    wrong = {"X": [(i, j) for i in range(20) for j in range(10)]}
    report = fast_check(
        Target.of(Planted("sigmoid-sum", wrong, 2.0), xw), CheckSettings(mode="fast")
    )
    assert report.summary["X"].failed_at_least is True
    assert report.summary["W"].failed_at_least is False
    (diagnosis,) = report.diagnosis
    checked = report.summary["X"].checked_one_by_one
    assert diagnosis.kind == "scale"
    assert f"all {checked} entries of X checked one by one" in diagnosis.message
    assert "the rest of X" not in diagnosis.message
    assert "more entries may be wrong" in diagnosis.message
    document = report.to_document()
    assert document["summary"]["X"]["failed_at_least"] is True
    assert document["summary"]["W"]["failed_at_least"] is False


def test_a_full_check_is_never_a_lower_bound() -> None:
    """failed_at_least is false for every input of a full check, failing or not."""
    xw = inputs(6, 5, 4)
    report = run_check(Target.of(Planted("sigmoid-sum", {"X": [(1, 1)]}, 2.0), xw))
    assert not report.passed
    assert {name: s.failed_at_least for name, s in report.summary.items()} == {
        "X": False,
        "W": False,
    }


def test_errors_spread_too_thin_to_localise_still_fail() -> None:
    """Every entry of W off by a constant far below any single entry's tolerance but adding up
    along a direction over all of them: the directions fail, no entry can be blamed, and the
    report, the verdict and the final line all say FAILED (not "PASSED" under exit 1)."""
    xw = inputs()
    correct = fast_check(
        Target.of(builtin_model("sigmoid-sum"), xw), CheckSettings(mode="fast", seed=2)
    )
    assert correct.fast is not None
    assert correct.fast.detectable_error is not None
    # An error vector of norm about 50 x what is sure to show, spread over 600 entries.
    offset = 50 * correct.fast.detectable_error / np.sqrt(600)
    report = fast_check(
        Target.of(Planted("sigmoid-sum", {}, 1.0, {"W": offset}), xw),
        CheckSettings(mode="fast", seed=2),
    )
    assert report.verdict == "failed"
    assert not report.passed
    assert report.to_document()["passed"] is False
    assert any(not d.passed for d in report.directions if d.depth == 0)


def test_a_kink_a_hair_from_the_point_is_judged_not_failed() -> None:
    """relu-sum with one pre-activation 2e-7 above its kink (as an SVM margin just above its
    hinge): the direction steps across the kink, but the gradient lies between the one-sided
    slopes, so the correct gradient passes (its direction marked kink) and the verdict, the
    summary and the exit code agree."""
    xw = inputs(8, 6, 4, seed=5)
    X, W = xw["X"], xw["W"]
    X[0, 0] += (2e-7 - (X @ W)[0, 0]) / W[0, 0]  # G[0, 0] = 2e-7: just above relu's kink
    assert abs((X @ W)[0, 0] - 2e-7) < 1e-12
    report = fast_check(
        Target.of(builtin_model("relu-sum"), xw), CheckSettings(mode="fast", seed=0)
    )
    assert report.verdict == "passed", [
        (d.reason, d.abs_error, d.tolerance) for d in report.directions
    ]
    assert all(s.failed == 0 for s in report.summary.values())


@pytest.mark.parametrize(("model", "code"), [("dense_tanh.py", 0), ("dense_tanh_bug.py", 1)])
def test_cli_fast_mode_report_follows_the_schema(model: str, code: int) -> None:
    """run --mode fast on the example model files: exit 0 / 1, the JSON, with its directions,
    validates against the schema, and the table's last line agrees with the exit code."""
    path = str(ROOT / "fixtures" / "models" / model)
    result = gradcheck("run", "--mode", "fast", "--model", path, "--format", "json")
    assert result.exit_code == code, result.stderr
    doc = document_of(result)
    Draft202012Validator(SCHEMA).validate(doc)
    assert doc["settings"]["mode"] == "fast"
    assert doc["directions"][0]["depth"] == 0
    assert doc["verdict"] == ("passed" if code == 0 else "failed")
    table = gradcheck("run", "--mode", "fast", "--model", path)
    assert "Random directions" in table.stdout
    last = table.stdout.strip().splitlines()[-1]
    assert last.startswith("PASSED" if code == 0 else "FAILED"), last
    if code == 0:
        assert "random directions over 15 entries agree" in " ".join(table.stdout.split())


def test_cli_fast_mode_refuses_delta() -> None:
    """--mode fast picks its own step per direction: --delta with it is a usage error."""
    result = gradcheck("run", "--mode", "fast", "--delta", "1e-5")
    assert result.exit_code == 2
    assert "--delta" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
