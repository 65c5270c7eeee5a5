"""diagnosis/: the pattern behind a wrong gradient, from planted bugs whose answer is known
(a missing 1/N, a sign error, zeros, one wrong column, a transpose, a regulariser's factor, an
offset) on a bias, a matrix, a conv kernel and a scalar, with noisy numerical gradients."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray

from gradcheck_cli.diagnosis.result import KINDS, Diagnosis
from gradcheck_cli.diagnosis.search import diagnose

FloatArray = NDArray[np.float64]

RELATIVE_TOLERANCE = 1e-6
ABSOLUTE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Check:
    """What a check hands to diagnose(): the numbers of one input."""

    analytic: FloatArray
    numerical: FloatArray
    tolerance: FloatArray
    failed: NDArray[np.bool_]


def planted(true: FloatArray, analytic: FloatArray, *, seed: int = 0, noise: float = 0.5) -> Check:
    """The true gradient seen through finite differences: noise up to `noise` tolerances."""
    rng = np.random.default_rng(seed)
    tolerance = RELATIVE_TOLERANCE * np.abs(true) + ABSOLUTE_TOLERANCE
    numerical = true + rng.uniform(-noise, noise, np.shape(true)) * tolerance
    failed = np.abs(analytic - numerical) > tolerance
    return Check(np.asarray(analytic, dtype=np.float64), numerical, tolerance, failed)


def diagnose_one(wrt: str, check: Check, values: FloatArray | None = None) -> Diagnosis:
    diagnoses = diagnose(
        wrt, check.analytic, check.numerical, check.tolerance, check.failed, values
    )
    assert len(diagnoses) == 1, diagnoses
    return diagnoses[0]


def gradient(shape: tuple[int, ...], seed: int = 1) -> FloatArray:
    return np.random.default_rng(seed).standard_normal(shape)


SHAPES = {"scale": (), "b": (7,), "W": (9, 3), "kernel": (4, 3, 3, 3)}


@pytest.mark.parametrize(("wrt", "shape"), SHAPES.items())
def test_a_correct_gradient_gets_no_diagnosis(wrt: str, shape: tuple[int, ...]) -> None:
    """Analytic = true, numerical within tolerance of it: nothing failed, so []."""
    true = gradient(shape)
    check = planted(true, true.copy(), noise=0.9)
    assert not check.failed.any()
    assert diagnose(wrt, check.analytic, check.numerical, check.tolerance, check.failed) == []


def test_a_missing_one_over_n_is_a_scale_of_n() -> None:
    """The issue's loss without its 1/N: analytic = 5 x numerical on all 27 entries of dW."""
    true = gradient((9, 3))
    diagnosis = diagnose_one("W", planted(true, 5 * true))
    assert diagnosis.kind == "scale"
    assert diagnosis.parameters["factor"] == pytest.approx(5.0, abs=1e-3)
    assert diagnosis.parameters["simple_factor"] == "5"
    assert diagnosis.message == (
        "analytic = 5.000 × numerical on all 27 checked entries of W — a missing 1/N with N = 5?"
    )
    assert diagnosis.entries["count"] == 27
    assert diagnosis.fit < 1e-5


@pytest.mark.parametrize(
    ("wrt", "shape", "factor", "simple", "hint"),
    [
        ("b", (7,), 0.5, "1/2", "a factor of 2 lost?"),
        ("kernel", (4, 3, 3, 3), 1 / 8, "1/8", "a factor of 8 lost?"),
        ("scale", (), 2.0, "2", "doubled: a term added twice (or a 1/2 left out)?"),
        ("W", (9, 3), 64.0, "64", "a missing 1/N with N = 64?"),
        ("W", (9, 3), -3.0, "-3", "a sign error and a missing 1/N with N = 3?"),
    ],
)
def test_scale_names_the_simple_factor(
    wrt: str, shape: tuple[int, ...], factor: float, simple: str, hint: str
) -> None:
    """A constant factor on any shape, 0-D included, is found and named as a fraction."""
    true = gradient(shape)
    diagnosis = diagnose_one(wrt, planted(true, factor * true))
    assert diagnosis.kind == "scale"
    assert diagnosis.parameters["factor"] == pytest.approx(factor, rel=1e-4)
    assert diagnosis.parameters["simple_factor"] == simple
    assert diagnosis.message.endswith(hint)
    assert f"{wrt}" in diagnosis.message


def test_a_scalar_input_is_named_with_empty_brackets() -> None:
    """A 0-D input's one entry is scale[] in the message."""
    true = np.array(1.3)
    assert "at scale[]" in diagnose_one("scale", planted(true, 2 * true)).message


def test_a_factor_that_is_no_simple_fraction_is_still_a_scale() -> None:
    """analytic = 1.2345 x numerical: a scale with that factor and no guess at its cause."""
    true = gradient((9, 3))
    diagnosis = diagnose_one("W", planted(true, 1.2345 * true))
    assert diagnosis.kind == "scale"
    assert diagnosis.parameters["factor"] == pytest.approx(1.2345, rel=1e-5)
    assert "simple_factor" not in diagnosis.parameters
    assert diagnosis.message.startswith("analytic = 1.234 × numerical on all 27")


def test_scale_survives_noise_as_large_as_the_tolerance() -> None:
    """Numerical values off by up to a whole tolerance still fit analytic = 2 x numerical."""
    true = gradient((30, 4))
    diagnosis = diagnose_one("W", planted(true, 2 * true, noise=1.0))
    assert (diagnosis.kind, diagnosis.parameters["simple_factor"]) == ("scale", "2")


def test_a_sign_error_everywhere_is_sign() -> None:
    """analytic = -numerical on every entry is a sign error, not a scale."""
    true = gradient((9, 3))
    diagnosis = diagnose_one("W", planted(true, -true))
    assert diagnosis.kind == "sign"
    assert diagnosis.parameters["factor"] == pytest.approx(-1.0, abs=1e-6)
    assert diagnosis.message.endswith("— a sign error?")


def test_a_sign_error_on_one_row_names_the_row() -> None:
    """-numerical on row 1 only: sign, on "row 1 of W", the rest agreeing."""
    true = gradient((5, 4))
    analytic = true.copy()
    analytic[1] *= -1
    diagnosis = diagnose_one("W", planted(true, analytic))
    assert diagnosis.kind == "sign"
    assert diagnosis.parameters["slices"] == [{"axis": 0, "indices": [1]}]
    assert diagnosis.entries["description"] == "row 1 of W"
    assert diagnosis.entries["count"] == 4
    assert "row 1 of W; the rest of W agrees" in diagnosis.message


def test_a_backward_returning_zeros_is_zero() -> None:
    """The issue's backward that returns zeros for one input: zero on all of b."""
    true = gradient((7,))
    diagnosis = diagnose_one("b", planted(true, np.zeros(7)))
    assert diagnosis.kind == "zero"
    assert diagnosis.fit == 0.0
    assert "analytic is 0 on all 7 checked entries of b" in diagnosis.message


def test_zeros_in_one_channel_of_a_kernel_name_the_slice() -> None:
    """A 4-D kernel whose input channel 1 gets no gradient: zero on kernel[:, 1, :, :]."""
    true = gradient((4, 3, 3, 3))
    analytic = true.copy()
    analytic[:, 1] = 0.0
    diagnosis = diagnose_one("kernel", planted(true, analytic))
    assert diagnosis.kind == "zero"
    assert diagnosis.entries["description"] == "kernel[:, 1, :, :]"
    assert diagnosis.parameters["axis"] == 1
    assert diagnosis.parameters["indices"] == [1]


def test_zeros_on_scattered_entries_are_zero_on_those_entries() -> None:
    """A relu-like mask bug: analytic 0 on scattered entries where numerical is not."""
    true = gradient((10, 10))
    analytic = true.copy()
    lost = np.random.default_rng(3).choice(100, 25, replace=False)
    analytic.flat[lost] = 0.0
    diagnosis = diagnose_one("W", planted(true, analytic))
    assert diagnosis.kind == "zero"
    assert diagnosis.entries["failed"] == 25
    assert diagnosis.entries["description"] == "25 of 100 checked entries of W"


def test_one_wrong_column_scaled_is_confined_with_its_factor() -> None:
    """The issue's lost repeated index: only column 2 of a 12x9 W, here x2."""
    true = gradient((12, 9))
    analytic = true.copy()
    analytic[:, 2] *= 2
    diagnosis = diagnose_one("W", planted(true, analytic))
    assert diagnosis.kind == "confined"
    assert diagnosis.parameters["axis"] == 1
    assert diagnosis.parameters["indices"] == [2]
    assert diagnosis.parameters["factor"] == pytest.approx(2.0, abs=1e-3)
    assert diagnosis.message.startswith(
        "only column 2 of W disagrees: analytic = 2.000 × numerical there"
    )


def test_conv_rows_wrong_without_a_factor_are_confined_to_the_slice() -> None:
    """The issue's convolution skipping its last output row: only x[:, :, 3:5, :] is wrong."""
    true = gradient((2, 3, 5, 5))
    analytic = true.copy()
    analytic[:, :, 3:5, :] += gradient((2, 3, 2, 5), seed=7)
    diagnosis = diagnose_one("x", planted(true, analytic))
    assert diagnosis.kind == "confined"
    assert diagnosis.entries["description"] == "x[:, :, 3:5, :]"
    assert diagnosis.entries["slices"] == [{"axis": 2, "indices": [3, 4]}]
    assert diagnosis.entries["failed"] == 60
    assert "factor" not in diagnosis.parameters


def test_half_an_input_twice_too_large_names_the_half() -> None:
    """The issue's VAE: only the log-variance half of h (columns 5-9) is exactly x2."""
    true = gradient((4, 10))
    analytic = true.copy()
    analytic[:, 5:] *= 2
    diagnosis = diagnose_one("h", planted(true, analytic))
    assert diagnosis.kind == "confined"
    assert diagnosis.entries["description"] == "columns 5–9 of h"
    assert diagnosis.parameters["simple_factor"] == "2"
    assert diagnosis.entries["count"] == 20


def test_a_sign_flipped_on_scattered_entries_is_sign_there() -> None:
    """-numerical on 20 scattered entries (a branch's sign): sign on those entries only."""
    true = gradient((10, 10))
    analytic = true.copy()
    flipped = np.random.default_rng(8).choice(100, 20, replace=False)
    analytic.flat[flipped] *= -1
    diagnosis = diagnose_one("W", planted(true, analytic))
    assert diagnosis.kind == "sign"
    assert diagnosis.entries["failed"] == 20
    assert diagnosis.entries["indices"] == [[int(i) // 10, int(i) % 10] for i in sorted(flipped)]


@pytest.mark.parametrize(
    ("indices", "description"),
    [([3, 4], "entries 3–4 of b"), ([5], "entry 5 of b"), ([0, 1, 6], "entries 0–1, 6 of b")],
)
def test_a_bias_with_a_few_wrong_entries_names_them(indices: list[int], description: str) -> None:
    """A 1-D input's region is named by its entries and runs."""
    true = gradient((12,))
    analytic = true.copy()
    analytic[indices] += 1.0 + gradient((len(indices),), seed=5) ** 2
    diagnosis = diagnose_one("b", planted(true, analytic))
    assert diagnosis.kind == "confined"
    assert diagnosis.entries["description"] == description


def test_a_forgotten_transpose_is_transposed() -> None:
    """A square W whose gradient came back transposed."""
    true = gradient((4, 4))
    diagnosis = diagnose_one("W", planted(true, true.T.copy()))
    assert diagnosis.kind == "transposed"
    assert diagnosis.parameters == {"axes": [1, 0], "reshaped": False}


def test_a_reshape_instead_of_a_transpose_is_transposed_and_reshaped() -> None:
    """A 3x2 W whose gradient was computed as 2x3 and reshaped (not transposed) back."""
    true = gradient((3, 2))
    diagnosis = diagnose_one("W", planted(true, true.T.reshape(3, 2).copy()))
    assert diagnosis.kind == "transposed"
    assert diagnosis.parameters == {"axes": [1, 0], "reshaped": True}


def test_fortran_order_of_a_kernel_is_found() -> None:
    """A 4-D kernel's numbers read in Fortran order: the reversed axes, reshaped."""
    true = gradient((2, 3, 2, 4))
    analytic = true.ravel(order="F").reshape(true.shape)
    diagnosis = diagnose_one("kernel", planted(true, analytic))
    assert diagnosis.kind == "transposed"
    assert diagnosis.parameters == {"axes": [3, 2, 1, 0], "reshaped": True}


def test_a_regulariser_missing_its_two_is_input_proportional() -> None:
    """The issue's SVM: reg * W where 2 * reg * W was meant, so the error is -reg x W."""
    rng = np.random.default_rng(4)
    weights = rng.standard_normal((6, 5))
    reg = 0.05
    true = rng.standard_normal((6, 5)) + 2 * reg * weights
    analytic = true - reg * weights
    diagnosis = diagnose_one("W", planted(true, analytic), values=weights)
    assert diagnosis.kind == "input-proportional"
    assert diagnosis.parameters["factor"] == pytest.approx(-reg, rel=1e-4)
    assert "-0.05000 × W itself" in diagnosis.message


def test_without_the_input_values_a_regulariser_bug_is_not_input_proportional() -> None:
    """No values, no input-proportional diagnosis: the same bug stays unexplained."""
    rng = np.random.default_rng(4)
    weights = rng.standard_normal((6, 5))
    true = rng.standard_normal((6, 5)) + 0.1 * weights
    diagnosis = diagnose_one("W", planted(true, true - 0.05 * weights))
    assert diagnosis.kind == "unexplained"


def test_a_constant_error_is_an_offset() -> None:
    """analytic = numerical + 0.3 on every entry of b."""
    true = gradient((8,))
    diagnosis = diagnose_one("b", planted(true, true + 0.3))
    assert diagnosis.kind == "offset"
    assert diagnosis.parameters["offset"] == pytest.approx(0.3, rel=1e-5)


def test_random_errors_are_unexplained_with_the_right_fraction() -> None:
    """30 random entries of 100 off by random amounts: unexplained, fraction 0.3."""
    true = gradient((10, 10))
    analytic = true.copy()
    rng = np.random.default_rng(2)
    wrong = rng.choice(100, 30, replace=False)
    analytic.flat[wrong] += rng.standard_normal(30)
    diagnosis = diagnose_one("W", planted(true, analytic))
    assert diagnosis.kind == "unexplained"
    assert diagnosis.parameters == {"fraction": 0.3, "failed": 30, "checked": 100}
    assert diagnosis.fit == 1.0
    assert re.match(
        r"no simple pattern: 30 of 100 checked entries of W \(30\.0%\) disagree; "
        r"worst W\[\d,\d\]: analytic \S+ vs numerical \S+$",
        diagnosis.message,
    )


def test_a_factor_varying_by_entry_is_unexplained_with_its_ratio_band() -> None:
    """1 - tanh written for 1 - tanh**2: analytic = true / (1 + tanh(z)), a band, not a scale."""
    z = np.random.default_rng(3).uniform(0.3, 1.5, (6, 4))
    true = 1.0 - np.tanh(z) ** 2
    analytic = 1.0 - np.tanh(z)
    diagnosis = diagnose_one("W", planted(true, analytic))
    assert diagnosis.kind == "unexplained"
    low, high = diagnosis.parameters["ratio_range"]
    expected = 1.0 / (1.0 + np.tanh(z))
    assert low == pytest.approx(expected.min(), rel=1e-5)
    assert high == pytest.approx(expected.max(), rel=1e-5)
    assert "a factor that varies from entry to entry" in diagnosis.message


def test_ratios_of_both_signs_give_no_ratio_band() -> None:
    """analytic = -true on half the entries and 2 true on the rest keeps no one-signed band."""
    true = gradient((8, 3), seed=4)
    analytic = np.where(np.arange(24).reshape(8, 3) % 2 == 0, 2.0 * true, -0.7 * true)
    diagnosis = diagnose_one("W", planted(true, analytic))
    assert diagnosis.kind == "unexplained"
    assert "ratio_range" not in diagnosis.parameters


def test_a_scalars_arbitrary_error_is_not_passed_off_as_a_scale() -> None:
    """One entry always has *some* ratio; only a simple one (2, 1/2, ...) makes it a scale."""
    true = np.array(0.7)
    assert diagnose_one("scale", planted(true, np.array(1.05123))).kind == "unexplained"


def test_near_zero_numerical_values_cannot_make_a_scale() -> None:
    """Failures where numerical ~ 0 (below ten tolerances) fit any factor, so none is claimed."""
    true = np.full(6, 3e-9)
    analytic = true + np.array([4.1e-8, -2.3e-8, 7.7e-8, 1.9e-8, -5.2e-8, 3.3e-8])
    diagnosis = diagnose_one("b", planted(true, analytic))
    assert diagnosis.kind == "unexplained"


def test_unchecked_entries_are_ignored() -> None:
    """NaN marks entries not checked: the scale fits the checked ones and counts only them."""
    true = gradient((9, 3))
    check = planted(true, 5 * true)
    skipped = np.zeros((9, 3), dtype=bool)
    skipped[::2, 1] = True
    analytic = np.where(skipped, np.nan, check.analytic)
    numerical = np.where(skipped, np.nan, check.numerical)
    tolerance = np.where(skipped, np.nan, check.tolerance)
    failed = check.failed & ~skipped
    (diagnosis,) = diagnose("W", analytic, numerical, tolerance, failed)
    assert diagnosis.kind == "scale"
    assert diagnosis.entries["count"] == 27 - 5


def test_failures_with_non_finite_numbers_get_their_own_diagnosis() -> None:
    """A failed entry with a NaN numerical value cannot be fitted: a second, unexplained one."""
    true = gradient((9, 3))
    check = planted(true, 5 * true)
    numerical = check.numerical.copy()
    numerical[4, 1] = np.nan
    first, second = diagnose("W", check.analytic, numerical, check.tolerance, check.failed)
    assert first.kind == "scale"
    assert first.entries["count"] == 26
    assert second.kind == "unexplained"
    assert second.entries["indices"] == [[4, 1]]
    assert "W[4,1]" in second.message


def test_the_document_is_plain_json() -> None:
    """to_document() has the six keys and survives json.dumps(allow_nan=False)."""
    true = gradient((12, 9))
    analytic = true.copy()
    analytic[:, 2] *= 2
    document = diagnose_one("W", planted(true, analytic)).to_document()
    assert set(document) == {"wrt", "kind", "message", "parameters", "entries", "fit"}
    assert document["kind"] in KINDS
    assert json.loads(json.dumps(document, allow_nan=False)) == document


def test_the_listed_indices_are_capped() -> None:
    """A zero gradient on 100 entries lists 20 of them and says it was cut."""
    true = gradient((10, 10))
    diagnosis = diagnose_one("W", planted(true, np.zeros((10, 10))))
    assert len(diagnosis.entries["indices"]) == 20
    assert diagnosis.entries["truncated"] is True
    assert diagnosis.entries["indices"][:2] == [[0, 0], [0, 1]]


@pytest.mark.parametrize(
    "bad",
    [
        lambda c: diagnose("W", c.analytic, c.numerical[:2], c.tolerance, c.failed),
        lambda c: diagnose("W", c.analytic, c.numerical, c.tolerance, c.failed, np.zeros(3)),
    ],
)
def test_arrays_of_another_shape_are_refused(bad: Callable[[Check], object]) -> None:
    """Every array must have the input's shape; a mismatch is a ValueError naming it."""
    true = gradient((9, 3))
    with pytest.raises(ValueError, match="shape"):
        bad(planted(true, 5 * true))
