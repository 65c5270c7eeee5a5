"""diagnosis/: the kinds of issue 24 from planted bugs with known answers, at the level of the
numbers a check hands over (analytic, numerical, tolerance, failed, and the context: the other
inputs' numbers and values, the model's dimensions, what was checked): shifted, masked, swapped,
an offset per row/column/channel, a few wrong rows or entries named, a factor named against the
model's dimensions, a .T missing inside a product. Each kind is found where it is planted, and
not claimed for a correct gradient, for random errors or for the other kinds."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from gradcheck_cli.diagnosis.fitting import Context, Observed
from gradcheck_cli.diagnosis.result import Diagnosis
from gradcheck_cli.diagnosis.search import PATTERNS, diagnose

FloatArray = NDArray[np.float64]


def noisy(true: FloatArray, seed: int = 0) -> tuple[FloatArray, FloatArray]:
    """The true gradient seen through finite differences, and its tolerance."""
    tolerance = 1e-6 * np.abs(true) + 1e-9
    rng = np.random.default_rng(seed)
    return true + rng.uniform(-0.5, 0.5, np.shape(true)) * tolerance, tolerance


def one(
    wrt: str,
    true: FloatArray,
    analytic: FloatArray,
    values: FloatArray | None = None,
    context: Context | None = None,
) -> Diagnosis:
    numerical, tolerance = noisy(true)
    failed = np.abs(analytic - numerical) > tolerance
    assert failed.any()
    found = diagnose(
        wrt, analytic, numerical, tolerance, failed, values, context=context or Context()
    )
    assert len(found) == 1, found
    return found[0]


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


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
