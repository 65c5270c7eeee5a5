"""The diagnosis: what kind of bug the pattern of a wrong gradient's failures shows, found where
it is planted and claimed nowhere else (not for a correct gradient, random errors or another
kind).

Planted at the level of the numbers a check hands over (analytic, numerical within a tolerance
of the truth, which entries failed, and the context: the other inputs' numbers and values, the
model's dimensions, what was checked): a missing 1/N or another factor, a sign error, zeros, one
wrong column or a few wrong entries, a transpose, a regulariser's factor, an offset (per row,
column or channel), a shift, a mask forgotten or inverted, two gradients swapped, a .T missing
inside a product; on a bias, a matrix, a conv kernel and a scalar. Then end to end: each bug a
newcomer makes in fixtures/models/mistakes_bug.py is named by the command line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from helpers import MODELS, document_of, gradcheck
from numpy.typing import NDArray

from gradcheck_cli.diagnosis.fitting import Context, Observed
from gradcheck_cli.diagnosis.result import KINDS, Diagnosis
from gradcheck_cli.diagnosis.search import PATTERNS, diagnose

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


def noisy(true: FloatArray, seed: int = 0, noise: float = 0.5) -> tuple[FloatArray, FloatArray]:
    """The true gradient seen through finite differences (noise up to `noise` tolerances), and
    its tolerance."""
    tolerance = RELATIVE_TOLERANCE * np.abs(true) + ABSOLUTE_TOLERANCE
    rng = np.random.default_rng(seed)
    return true + rng.uniform(-noise, noise, np.shape(true)) * tolerance, tolerance


def planted(true: FloatArray, analytic: FloatArray, *, seed: int = 0, noise: float = 0.5) -> Check:
    """What a check of `analytic` hands over when the true gradient is `true`."""
    numerical, tolerance = noisy(true, seed, noise)
    failed = np.abs(analytic - numerical) > tolerance
    return Check(np.asarray(analytic, dtype=np.float64), numerical, tolerance, failed)


def diagnose_one(wrt: str, check: Check, values: FloatArray | None = None) -> Diagnosis:
    diagnoses = diagnose(
        wrt, check.analytic, check.numerical, check.tolerance, check.failed, values
    )
    assert len(diagnoses) == 1, diagnoses
    return diagnoses[0]


def one(
    wrt: str,
    true: FloatArray,
    analytic: FloatArray,
    values: FloatArray | None = None,
    context: Context | None = None,
) -> Diagnosis:
    """The one diagnosis of a planted bug that fails some entries, given what else a check
    knows."""
    check = planted(true, analytic)
    assert check.failed.any()
    found = diagnose(
        wrt,
        check.analytic,
        check.numerical,
        check.tolerance,
        check.failed,
        values,
        context=context or Context(),
    )
    assert len(found) == 1, found
    return found[0]


def gradient(shape: tuple[int, ...], seed: int = 1) -> FloatArray:
    return np.random.default_rng(seed).standard_normal(shape)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


SHAPES = {"scale": (), "b": (7,), "W": (9, 3), "kernel": (4, 3, 3, 3)}


@pytest.mark.parametrize(("wrt", "shape"), SHAPES.items())
def test_a_correct_gradient_gets_no_diagnosis(wrt: str, shape: tuple[int, ...]) -> None:
    """Analytic = true, numerical within tolerance of it: nothing failed, so []."""
    true = gradient(shape)
    check = planted(true, true.copy(), noise=0.9)
    assert not check.failed.any()
    assert diagnose(wrt, check.analytic, check.numerical, check.tolerance, check.failed) == []


def test_a_missing_one_over_n_is_a_scale_of_n() -> None:
    """A mean loss's gradient without its 1/N: analytic = 5 x numerical on all 27 entries of
    dW."""
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
    """A backward that returns zeros for one input: zero on all of b."""
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
    """A repeated index counted once: only column 2 of a 12x9 W is wrong, here x2."""
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
    """A convolution's backward skipping its last output row: only x[:, :, 3:5, :] is wrong."""
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
    """A VAE's backward doubling the log-variance half of h (columns 5-9) alone: exactly x2
    there."""
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
    """An SVM's regulariser: reg * W where 2 * reg * W was meant, so the error is -reg x W."""
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


# --- shifted --------------------------------------------------------------------------------


def _conv_dx_pad(dout: FloatArray, w: FloatArray) -> FloatArray:
    """The padded gradient of a 3x3, stride 1, pad 1 convolution (what conv_backward builds)."""
    n, _, h, width = dout.shape
    dx_pad = np.zeros((n, w.shape[1], h + 2, width + 2))
    for i in range(h):
        for j in range(width):
            dx_pad[:, :, i : i + 3, j : j + 3] += np.einsum("fchw,nf->nchw", w, dout[:, :, i, j])
    return dx_pad


@pytest.mark.parametrize(
    ("rows", "columns", "axes", "shifts"),
    [
        (slice(0, 5), slice(0, 6), [2, 3], [-1, -1]),  # the slice starts at 0, not at pad
        (slice(2, 7), slice(2, 8), [2, 3], [1, 1]),  # at 2
        (slice(1, 6), slice(0, 6), [3], [-1]),  # right along H, off along W
    ],
)
def test_a_convolutions_padding_off_by_one_is_shifted(
    rows: slice, columns: slice, axes: list[int], shifts: list[int]
) -> None:
    """dx = dx_pad[:, :, 0:H, 0:W] where [1:H+1, 1:W+1] belongs: analytic[i] = numerical[i - 1]
    along both spatial axes, the edge band (the padding's gradient) free."""
    dout, w = rng(1).standard_normal((2, 3, 5, 6)), rng(2).standard_normal((3, 2, 3, 3))
    dx_pad = _conv_dx_pad(dout, w)
    true = dx_pad[:, :, 1:6, 1:7]
    diagnosis = one("x", true, dx_pad[:, :, rows, columns].copy())
    assert diagnosis.kind == "shifted"
    assert diagnosis.parameters == {"axes": axes, "shifts": shifts}
    assert diagnosis.message.startswith("analytic is numerical moved by ")


def test_an_embeddings_ids_off_by_one_are_shifted_rows() -> None:
    """np.add.at(dw, ids + 1, dout): row r of the analytic gradient is row r - 1 of the true."""
    ids, dout = np.array([0, 3, 5, 2, 7, 8]), rng(3).standard_normal((6, 3))
    true = np.zeros((10, 3))
    np.add.at(true, ids, dout)
    analytic = np.zeros((10, 3))
    np.add.at(analytic, ids + 1, dout)
    diagnosis = one("w", true, analytic)
    assert (diagnosis.kind, diagnosis.parameters) == ("shifted", {"axes": [0], "shifts": [-1]})
    assert "analytic at w[" in diagnosis.message


def test_a_shift_of_a_constant_gradient_proves_nothing() -> None:
    """A gradient constant along an axis, wrong only at its edge: no shift is claimed."""
    true = np.ones((6, 5))
    analytic = true.copy()
    analytic[0, :] = 3.0
    assert one("x", true, analytic).kind != "shifted"


# --- masked ---------------------------------------------------------------------------------


def _relu_input(seed: int, shape: tuple[int, ...] = (5, 6)) -> FloatArray:
    x = rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


def test_a_forgotten_relu_mask_is_masked_and_names_the_input() -> None:
    """relu_backward returns dout: non-zero exactly where x <= 0, where the truth is 0."""
    x, dout = _relu_input(1), rng(2).standard_normal((5, 6))
    diagnosis = one("x", dout * (x > 0), dout, values=x)
    assert diagnosis.kind == "masked"
    assert diagnosis.parameters["mask"] == "forgotten"
    assert (diagnosis.parameters["input"], diagnosis.parameters["sign"]) == ("x", "positive")
    assert diagnosis.entries["failed"] == int((x <= 0).sum())
    assert "where x <= 0" in diagnosis.message


def test_an_inverted_relu_mask_is_masked_inverted() -> None:
    """dout * (x < 0) for dout * (x > 0): wrong on every entry, both ways."""
    x, dout = _relu_input(3), rng(4).standard_normal((5, 6))
    diagnosis = one("x", dout * (x > 0), dout * (x < 0), values=x)
    assert (diagnosis.kind, diagnosis.parameters["mask"]) == ("masked", "inverted")
    assert diagnosis.parameters["input"] == "x"


def test_a_mask_of_another_input_is_named() -> None:
    """dropout's boolean mask, a constant input of x's shape: the mask is named by it."""
    keep = rng(5).random((4, 5)) < 0.5
    dout = rng(6).standard_normal((4, 5))
    context = Context(values={"mask": keep.astype(np.float64)})
    diagnosis = one(
        "x", dout * keep / 0.5, dout / 0.5, values=rng(7).standard_normal((4, 5)), context=context
    )
    assert (diagnosis.kind, diagnosis.parameters["input"]) == ("masked", "mask")


def test_max_pooling_without_its_argmax_mask_is_masked() -> None:
    """Every entry of a window gets dout, the truth only its maximum: masked, no input named."""
    x = rng(8).standard_normal((2, 2, 4, 4))
    dout = rng(9).standard_normal((2, 2, 2, 2))
    windows = x.reshape(2, 2, 2, 2, 2, 2)
    is_max = windows == windows.max(axis=(3, 5), keepdims=True)
    spread = np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3)
    true = spread * is_max.reshape(2, 2, 4, 4)
    diagnosis = one("x", true, spread, values=x)
    assert (diagnosis.kind, diagnosis.parameters["mask"]) == ("masked", "forgotten")
    assert "input" not in diagnosis.parameters


def test_a_leaky_relus_slopes_turned_around_are_masked_by_sign() -> None:
    """slope 1 where x < 0 and 0.1 where x > 0: one factor on each side of x's sign."""
    x, dout = _relu_input(10), rng(11).standard_normal((5, 6))
    true = dout * np.where(x > 0, 1.0, 0.1)
    diagnosis = one("x", true, dout * np.where(x < 0, 1.0, 0.1), values=x)
    assert (diagnosis.kind, diagnosis.parameters["mask"]) == ("masked", "by-sign")
    assert diagnosis.parameters["factors"]["positive"] == pytest.approx(0.1, rel=1e-4)
    assert diagnosis.parameters["factors"]["other"] == pytest.approx(10.0, rel=1e-4)


def test_a_few_stray_errors_on_zero_entries_are_no_mask() -> None:
    """Three wrong entries where the truth is 0, among thirty zeros: no mask is claimed."""
    true = rng(12).standard_normal((6, 10)) * (rng(13).random((6, 10)) < 0.5)
    analytic = true.copy()
    zeros = np.argwhere(true == 0)[:3]
    for index in zeros:
        analytic[tuple(index)] = 0.5
    assert one("x", true, analytic, values=rng(14).standard_normal((6, 10))).kind != "masked"


# --- swapped --------------------------------------------------------------------------------


def test_two_gradients_returned_in_each_others_places_are_swapped() -> None:
    """multiply_backward returns (dout * x, dout * y): x's analytic is y's numerical."""
    x, y, dout = (rng(seed).standard_normal((4, 3)) for seed in (15, 16, 17))
    true_x, true_y = dout * y, dout * x
    numerical_y, tolerance_y = noisy(true_y, seed=1)
    context = Context(others={"y": Observed(true_x, numerical_y, tolerance_y)})
    diagnosis = one("x", true_x, true_y, values=x, context=context)
    assert (diagnosis.kind, diagnosis.parameters) == ("swapped", {"with": "y"})
    assert diagnosis.message.startswith("analytic of x = numerical of y on all 12")


def test_another_input_of_another_shape_is_never_a_swap_partner() -> None:
    """A partner must have the input's shape; else the scale is what is found."""
    true = rng(18).standard_normal((4, 3))
    other = rng(19).standard_normal((3, 4))
    context = Context(others={"w": Observed(other, other, 1e-6 * np.abs(other) + 1e-9)})
    assert one("x", true, 2 * true, context=context).kind == "scale"


# --- offset per row, column, channel ------------------------------------------------------------


def _batchnorm(
    x: FloatArray,
    dout: FloatArray,
    gamma: FloatArray,
    *,
    mean_term: bool,
    var_term: bool,
    axis: int | tuple[int, ...] = 0,
) -> FloatArray:
    mean = x.mean(axis=axis, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=axis, keepdims=True) + 1e-5)
    x_hat = (x - mean) * inv_std
    count = x.size // mean.size
    dx_hat = dout * gamma
    dx = count * dx_hat
    if mean_term:
        dx = dx - dx_hat.sum(axis=axis, keepdims=True)
    if var_term:
        dx = dx - x_hat * (dx_hat * x_hat).sum(axis=axis, keepdims=True)
    return np.asarray(inv_std / count * dx)


def test_batchnorm_without_its_mean_term_is_an_offset_per_column() -> None:
    x, dout = rng(20).standard_normal((8, 5)) * 2 + 1, rng(21).standard_normal((8, 5))
    gamma = 1 + 0.2 * rng(22).standard_normal(5)
    true = _batchnorm(x, dout, gamma, mean_term=True, var_term=True)
    analytic = _batchnorm(x, dout, gamma, mean_term=False, var_term=True)
    diagnosis = one("x", true, analytic, values=x)
    assert (diagnosis.kind, diagnosis.parameters["per"], diagnosis.parameters["axis"]) == (
        "offset",
        "column",
        1,
    )
    expected = (analytic - true)[0]
    assert diagnosis.parameters["offsets"] == pytest.approx(expected, rel=1e-4, abs=1e-8)
    assert "slopes" not in diagnosis.parameters


def test_batchnorm_without_its_variance_term_is_an_offset_plus_x_per_column() -> None:
    x, dout = rng(23).standard_normal((8, 5)) * 2 + 1, rng(24).standard_normal((8, 5))
    gamma = 1 + 0.2 * rng(25).standard_normal(5)
    true = _batchnorm(x, dout, gamma, mean_term=True, var_term=True)
    diagnosis = one("x", true, _batchnorm(x, dout, gamma, mean_term=True, var_term=False), x)
    assert (diagnosis.kind, diagnosis.parameters["per"]) == ("offset", "column")
    assert "slopes" in diagnosis.parameters


def test_layernorm_without_its_mean_term_is_an_offset_per_row() -> None:
    x, dout = rng(26).standard_normal((4, 6)), rng(27).standard_normal((4, 6))
    gamma = np.ones(6)
    true = _batchnorm(x, dout, gamma, mean_term=True, var_term=True, axis=1)
    analytic = _batchnorm(x, dout, gamma, mean_term=False, var_term=True, axis=1)
    diagnosis = one("x", true, analytic, values=x)
    assert (diagnosis.kind, diagnosis.parameters["per"]) == ("offset", "row")


def test_spatial_batchnorm_without_its_mean_term_is_an_offset_per_channel() -> None:
    x, dout = rng(28).standard_normal((2, 3, 3, 3)), rng(29).standard_normal((2, 3, 3, 3))
    gamma = np.ones((1, 3, 1, 1))
    true = _batchnorm(x, dout, gamma, mean_term=True, var_term=True, axis=(0, 2, 3))
    analytic = _batchnorm(x, dout, gamma, mean_term=False, var_term=True, axis=(0, 2, 3))
    diagnosis = one("x", true, analytic, values=x)
    assert (diagnosis.kind, diagnosis.parameters["axis"]) == ("offset", 1)
    assert "per channel (axis 1) of x" in diagnosis.message


def test_random_errors_in_every_entry_are_no_offset() -> None:
    """A different error in every entry of every column: no constant per column fits."""
    true = rng(30).standard_normal((8, 5))
    analytic = true + rng(31).standard_normal((8, 5))
    assert one("x", true, analytic, values=rng(32).standard_normal((8, 5))).kind == "unexplained"


# --- rows and entries named -------------------------------------------------------------------


def test_an_embeddings_repeated_ids_name_their_rows() -> None:
    """dw[ids] += dout counts a repeated id once: exactly those rows are wrong, scattered."""
    ids = np.array([1, 5, 5, 9, 12, 12, 17, 3, 3, 19, 1])
    dout = rng(33).standard_normal((ids.size, 4))
    true, analytic = np.zeros((20, 4)), np.zeros((20, 4))
    np.add.at(true, ids, dout)
    analytic[ids] += dout
    diagnosis = one("w", true, analytic)
    assert diagnosis.kind == "confined"
    assert diagnosis.parameters["indices"] == [1, 3, 5, 12]
    assert diagnosis.message.startswith("only rows 1, 3, 5, 12 of w disagree")


def test_a_few_scattered_wrong_entries_are_named() -> None:
    """Three wrong entries of a 6 x 7 matrix, in three rows and three columns: named."""
    true = rng(34).standard_normal((6, 7))
    analytic = true.copy()
    for index in [(0, 3), (2, 6), (5, 1)]:
        analytic[index] += 1.0
    diagnosis = one("w", true, analytic)
    assert diagnosis.kind == "confined"
    assert diagnosis.parameters["indices"] == [[0, 3], [2, 6], [5, 1]]
    assert diagnosis.message.startswith("only w[0,3], w[2,6], w[5,1] disagree")


def test_a_borderline_failure_is_not_named() -> None:
    """One entry just past its tolerance (a coin flip) tells no story: unexplained."""
    true = rng(35).standard_normal((6, 7))
    numerical, tolerance = noisy(true)
    analytic = numerical.copy()
    analytic[2, 2] += 1.5 * tolerance[2, 2]
    analytic[4, 5] += 1.5 * tolerance[4, 5]
    failed = np.abs(analytic - numerical) > tolerance
    (diagnosis,) = diagnose("w", analytic, numerical, tolerance, failed)
    assert diagnosis.kind == "unexplained"


# --- factors named against the model's dimensions -------------------------------------------


@pytest.mark.parametrize(
    ("factor", "words", "dimension"),
    [
        (0.25, "1/4, 4 = the batch size of x (x.shape[0]", {"input": "x", "axes": [0], "size": 4}),
        (4.0, "4 = the batch size of x (x.shape[0]", {"input": "x", "axes": [0], "size": 4}),
        (1 / 20, "1/20, 20 = x.size", {"input": "x", "axes": [0, 1], "size": 20}),
        (3.0, "3 = w.shape[1] (also b.shape[0])", {"input": "w", "axes": [1], "size": 3}),
    ],
)
def test_a_factor_is_named_as_the_models_dimension(
    factor: float, words: str, dimension: dict[str, object]
) -> None:
    """db = mean(dout) for sum(dout): "× 1/4, 4 = the batch size of x"; a missing 1/N as N."""
    true = rng(36).standard_normal(3)
    context = Context(dimensions={"x": (4, 5), "w": (5, 3), "b": (3,), "output": (4, 3)})
    diagnosis = one("b", true, factor * true, context=context)
    assert diagnosis.kind == "scale"
    assert words in diagnosis.message
    assert diagnosis.parameters["dimension"] == dimension


def test_a_doubled_gradient_reads_as_doubled() -> None:
    """The 0.5 of 0.5 * x**2 forgotten: "doubled", not "a missing 1/N with N = 2"."""
    true = rng(37).standard_normal((3, 4))
    diagnosis = one("x", true, 2 * true, context=Context(dimensions={"x": (3, 4)}))
    assert diagnosis.message.endswith("doubled: a term added twice (or a 1/2 left out)?")
    assert "dimension" not in diagnosis.parameters


# --- transposed inside a product ------------------------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_missing_transpose_inside_a_product_names_the_matrix(side: str) -> None:
    """dx = dout @ w for dout @ w.T (w square), or w @ dout for w.T @ dout."""
    w = rng(38).standard_normal((4, 4))
    if side == "right":
        dout = rng(39).standard_normal((5, 4))
        true, analytic = dout @ w.T, dout @ w
    else:
        dout = rng(39).standard_normal((4, 3))
        true, analytic = w.T @ dout, w @ dout
    diagnosis = one("x", true, analytic, context=Context(values={"w": w}))
    assert (diagnosis.kind, diagnosis.parameters) == ("transposed", {"input": "w", "side": side})


# --- nothing claimed where nothing fits -------------------------------------------------------


def test_random_errors_with_a_full_context_stay_unexplained() -> None:
    """Random errors on half the entries of a 2-D and a 4-D input, with every piece of context
    given: no new kind claims them."""
    for seed, shape in enumerate([(8, 6), (2, 3, 4, 4)]):
        true = rng(40 + seed).standard_normal(shape)
        analytic = true + rng(50 + seed).standard_normal(shape) * (
            rng(60 + seed).random(shape) < 0.5
        )
        other = rng(70 + seed).standard_normal(shape)
        context = Context(
            others={"y": Observed(other, other, 1e-6 * np.abs(other) + 1e-9)},
            values={"y": rng(80 + seed).standard_normal(shape)},
            dimensions={"x": shape, "y": shape},
        )
        values = rng(90 + seed).standard_normal(shape)
        assert one("x", true, analytic, values=values, context=context).kind == "unexplained"


def test_fast_modes_scope_never_says_the_rest_agrees_about_unchecked_entries() -> None:
    """Checked one by one: 8 entries of a 10 x 10 input, all wrong by a factor 3. The message
    speaks of the entries checked one by one, names no region, and carries the lower bound."""
    true = rng(100).standard_normal((10, 10))
    numerical, tolerance = noisy(true)
    checked = np.zeros((10, 10), dtype=bool)
    checked[0, :8] = True
    nan = np.full((10, 10), np.nan)
    analytic = np.where(checked, 3 * true, nan)
    failed = checked & (np.abs(analytic - numerical) > tolerance)
    context = Context(scope="one-by-one", at_least=True)
    (diagnosis,) = diagnose(
        "x",
        analytic,
        np.where(checked, numerical, nan),
        np.where(checked, tolerance, nan),
        failed,
        context=context,
    )
    assert diagnosis.kind == "scale"
    assert "all 8 entries of x checked one by one" in diagnosis.message
    assert "the rest of x" not in diagnosis.message
    assert diagnosis.message.endswith("(localising stopped there: more entries may be wrong)")


def test_every_pattern_has_its_place() -> None:
    """PATTERNS holds each new family once."""
    names = [pattern.__name__ for pattern in PATTERNS]
    assert len(names) == len(set(names))
    for name in (
        "shifted",
        "masked",
        "factor_by_sign",
        "swapped",
        "offset_per_slice",
        "few_entries",
        "transposed_in_product",
    ):
        assert name in names


# --- end to end: the bugs a newcomer makes -----------------------------------------------------

NEWCOMER_BUGS: dict[str, tuple[str, str, dict[str, Any]]] = {
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


@pytest.mark.parametrize("layer", sorted(NEWCOMER_BUGS))
def test_each_newcomers_bug_is_named(layer: str) -> None:
    """The bug fails, in the input it is in, and the diagnosis there is the kind it is."""
    result = gradcheck(
        "run", "--model", f"{MODELS / 'mistakes_bug.py'}:{layer}", "--format", "json"
    )
    assert result.exit_code == 1, result.stderr
    document = document_of(result)
    wrt, kind, parameters = NEWCOMER_BUGS[layer]
    by_input = {d["wrt"]: d for d in document["diagnosis"]}
    assert wrt in by_input, document["diagnosis"]
    diagnosis = by_input[wrt]
    assert diagnosis["kind"] == kind, diagnosis["message"]
    for key, value in parameters.items():
        assert diagnosis["parameters"][key] == value, (key, diagnosis["parameters"])
    assert document["summary"][wrt]["failed"] > 0


def test_a_swap_is_named_from_both_sides() -> None:
    """dx and dy returned in each other's places: each input's diagnosis names the other."""
    result = gradcheck(
        "run", "--model", f"{MODELS / 'mistakes_bug.py'}:multiply", "--format", "json"
    )
    kinds = {
        (d["wrt"], d["kind"], d["parameters"]["with"]) for d in document_of(result)["diagnosis"]
    }
    assert kinds == {("x", "swapped", "y"), ("y", "swapped", "x")}


def test_noise_weights_of_entries_far_apart_do_not_overflow() -> None:
    """1 / noise^2 relative to the least noisy entry of the domain: an entry outside the
    domain, 1e300 times less noisy, is neither weighed nor a numpy overflow warning."""
    import warnings

    from gradcheck_cli.diagnosis.fitting import checked_numbers, noise_weights

    numbers = checked_numbers(
        "x",
        analytic=[1.0, 2.0, 3.0],
        numerical=[1.0, 2.0, 3.0],
        tolerance=[1e150, 2e150, 1e-160],
        failed=np.array([True, True, False]),
        values=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = noise_weights(numbers, np.array([True, True, False]))
    np.testing.assert_allclose(weights, [1.0, 0.25, 0.0])
