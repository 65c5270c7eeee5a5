"""Batched evaluation (numerics.models.BatchedModel) without any framework: a numpy model whose
batches are exact, off by rounding, or wrong; what the in-process evaluator takes from each,
and that no entry gets a failing verdict from a batch's numbers alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics import evaluation
from gradcheck_cli.numerics.estimates import one_step_estimates
from gradcheck_cli.numerics.evaluation import IN_PROCESS, seconds_per_batched_value
from gradcheck_cli.numerics.models import Array, Gradients, Inputs, batching
from gradcheck_cli.numerics.schemes import SCHEMES, Precision
from gradcheck_cli.report import ModelInfo
from gradcheck_cli.settings import CheckSettings

EPS = float(np.finfo(np.float64).eps)


@dataclass
class Cubic:
    """f(x) = sum(x**3 + x) with gradient 3x^2 + 1, evaluated in batches by numpy; `error`
    adds to the batch's differences (a batch that rounds, or computes, otherwise), `wrong`
    makes the gradient wrong at those flat entries."""

    error: Any = None
    """None: exact batches; a function (flat_indices, shifts) -> what to add to them."""
    batches_at_all: bool = True
    refuse: bool = False
    wrong: tuple[int, ...] = ()
    name: str = "cubic"
    formula: str = "sum(x**3 + x)"
    complex_analytic: bool = False
    calls: list[int] = field(default_factory=lambda: [0, 0])
    """[one-at-a-time calls, batched points]."""
    asked: int = 0
    """Batches asked for."""

    def value(self, inputs: Inputs) -> float:
        self.calls[0] += 1
        x = inputs["x"]
        return float(np.sum(x**3 + x))

    def gradient(self, inputs: Inputs) -> Gradients:
        g = 3 * inputs["x"] ** 2 + 1
        g.reshape(-1)[list(self.wrong)] *= 1.5
        return {"x": g}

    @property
    def batches(self) -> bool:
        return self.batches_at_all

    def differences_at_shifts(
        self, inputs: Inputs, wrt: str, flat_indices: NDArray[np.intp], shifts: Array
    ) -> tuple[Array, NDArray[np.floating]] | None:
        self.asked += 1
        if self.refuse:
            return None
        self.calls[1] += shifts.size + 1
        x = inputs[wrt].reshape(-1)
        f0 = float(np.sum(x**3 + x))
        moved = np.empty(shifts.shape)
        largest = np.full(flat_indices.shape, abs(f0))
        for b, index in enumerate(flat_indices.tolist()):
            for k in range(shifts.shape[1]):
                y = x.copy()
                y[index] = y[index] + shifts[b, k]
                value = float(np.sum(y**3 + y))
                moved[b, k] = value - f0
                largest[b] = max(largest[b], abs(value))
        if self.error is not None:
            moved = moved + self.error(flat_indices, shifts)
        return moved, largest


def inputs_of(size: int = 40) -> dict[str, Array]:
    return {"x": np.random.default_rng(3).standard_normal(size)}


def request(model: Cubic, inputs: dict[str, Array]) -> tuple[NDArray[np.intp], Array, float]:
    flat = np.arange(inputs["x"].size, dtype=np.intp)
    h = 2.0**-17
    shifts = np.tile([h, -h], (flat.size, 1))
    return flat, shifts, model.value(inputs)


def test_exact_batches_give_exactly_the_one_at_a_time_differences() -> None:
    """A batch that rounds as one call at a time does changes nothing: the same differences,
    bit for bit, and the same sizes."""
    model, inputs = Cubic(), inputs_of()
    flat, shifts, f0 = request(model, inputs)
    batched = IN_PROCESS.differences(model, inputs, "x", flat, shifts, f0, None, batched=True)
    alone = IN_PROCESS.one_at_a_time(model, inputs, "x", flat, shifts, f0, None)
    np.testing.assert_array_equal(batched[0], alone[0])
    np.testing.assert_array_equal(batched[1], alone[1])
    assert model.calls[1] > 0


def test_batches_are_used_only_when_the_caller_allows_them() -> None:
    """Without batched=True (every evaluation but the first pass) the model is called one point
    at a time, however well it batches."""
    model, inputs = Cubic(), inputs_of()
    flat, shifts, f0 = request(model, inputs)
    IN_PROCESS.differences(model, inputs, "x", flat, shifts, f0, None)
    assert model.calls[1] == 0


def test_a_rounding_gap_is_counted_into_the_round_off() -> None:
    """A batch 2 ulps of f away from one-at-a-time evaluation is used, and the gap, times
    PATH_SAFETY, becomes the size of f the round-off budget scales with."""
    inputs = inputs_of()
    f = float(np.sum(inputs["x"] ** 3 + inputs["x"]))
    gap = 2 * EPS * abs(f)
    model = Cubic(error=lambda flat, shifts: np.full(shifts.shape, gap))
    flat, shifts, f0 = request(model, inputs)
    diffs, largest = IN_PROCESS.differences(
        model, inputs, "x", flat, shifts, f0, None, batched=True
    )
    alone, _ = IN_PROCESS.one_at_a_time(model, inputs, "x", flat, shifts, f0, None)
    np.testing.assert_array_equal(diffs[0], alone[0])  # the probed entry: one at a time
    np.testing.assert_allclose(diffs[1:], alone[1:] + gap, rtol=0, atol=1e-15)
    seen = evaluation.PATH_SAFETY * gap / EPS
    assert np.all(largest >= seen)
    assert seen > abs(f0)


def test_a_batch_that_computes_otherwise_is_set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch 1e-6 away from one-at-a-time evaluation is not rounding: it is evaluated one
    at a time, and after REFUSALS such batches nothing more is asked of the model."""
    monkeypatch.setattr(evaluation, "MOST_POINTS", 64)  # batches of 31 entries and 2 shifts
    inputs = inputs_of(200)
    model = Cubic(error=lambda flat, shifts: np.full(shifts.shape, 1e-6))
    flat, shifts, f0 = request(model, inputs)
    diffs, _ = IN_PROCESS.differences(model, inputs, "x", flat, shifts, f0, None, batched=True)
    alone, _ = IN_PROCESS.one_at_a_time(model, inputs, "x", flat, shifts, f0, None)
    np.testing.assert_array_equal(diffs, alone)
    assert flat.size > evaluation.REFUSALS * 31  # more batches than it was asked for
    assert model.calls[1] == evaluation.REFUSALS * (31 * 2 + 1)


def test_a_model_that_cannot_batch_is_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """None from the model: everything one at a time, and the model is not asked again."""
    monkeypatch.setattr(evaluation, "MOST_POINTS", 64)
    inputs = inputs_of(200)
    model = Cubic(refuse=True)
    flat, shifts, f0 = request(model, inputs)
    diffs, _ = IN_PROCESS.differences(model, inputs, "x", flat, shifts, f0, None, batched=True)
    alone, _ = IN_PROCESS.one_at_a_time(model, inputs, "x", flat, shifts, f0, None)
    np.testing.assert_array_equal(diffs, alone)
    assert model.asked == 1
    assert batching(Cubic(batches_at_all=False)) is None


def test_the_first_pass_hands_on_no_batched_differences() -> None:
    """one_step_estimates of a batching model returns no `known` differences, so that every
    entry it does not settle is evaluated again one call at a time; a numpy model's are kept."""
    inputs = inputs_of()
    _, known = one_step_estimates(
        Cubic(), inputs, "x", np.arange(40), SCHEMES["central"], f0=Cubic().value(inputs)
    )
    assert known == {}
    _, kept = one_step_estimates(
        Cubic(batches_at_all=False),
        inputs,
        "x",
        np.arange(40),
        SCHEMES["central"],
        f0=Cubic().value(inputs),
    )
    assert set(kept) == {1, -1}


def check(model: Cubic, inputs: dict[str, Array]) -> Any:
    target = Target(
        (model,), inputs, ModelInfo(model.name, model.formula, "api"), {"x": "array"}, Precision()
    )
    report = run_check(target, CheckSettings(wrt=("x",)), f0=model.value(inputs), jobs=1)
    return report


@pytest.mark.parametrize("wrong", [(), (7, 23)])
def test_no_entry_fails_on_a_batch_alone(wrong: tuple[int, ...]) -> None:
    """A batch whose difference at entry 11 is off by 1e-4 (a sporadic gap the probe at entry 0
    does not see): entry 11 is not settled by the batch, is evaluated again one at a time, and
    passes; a gradient wrong at entries 7 and 23 fails there, and only there."""

    def off_at_11(flat: NDArray[np.intp], shifts: Array) -> Array:
        return np.where((flat == 11)[:, None], 1e-4 * np.sign(shifts), 0.0)

    inputs = inputs_of()
    report = check(Cubic(error=off_at_11, wrong=wrong), inputs)
    failed = {tuple(c.index) for c in report.checks if not c.passed}
    assert failed == {(i,) for i in wrong}
    # Every number as a model that never batches gives it: entry 11's from one call at a time.
    alone = check(Cubic(wrong=wrong, batches_at_all=False), inputs)
    assert [c.numerical for c in report.checks] == [c.numerical for c in alone.checks]
    assert [c.passed for c in report.checks] == [c.passed for c in alone.checks]


def test_a_batched_value_costs_what_a_batch_says() -> None:
    """No time per batched value for a model that does not batch, or refuses; a positive one
    for a model that batches (the second of two trials), which it evaluated for real."""
    inputs = inputs_of()
    assert seconds_per_batched_value(Cubic(batches_at_all=False), inputs, "x") is None
    assert seconds_per_batched_value(Cubic(refuse=True), inputs, "x") is None
    model = Cubic()
    seconds = seconds_per_batched_value(model, inputs, "x")
    assert seconds is not None
    assert seconds > 0
    assert model.calls[1] == 2 * (2 * 40 + 1)  # every entry of x, twice
