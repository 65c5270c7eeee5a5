"""Low precision, honestly: a gradient computed in float32 or float16 is judged
against a float64 forward at the same quantised inputs, with a tolerance from the format's
roundoff and the size of the terms; the same code's float64 gradient is checked first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck, gradcheck_json, load_module

from gradcheck_cli import check_layer
from gradcheck_cli.checks.precision import LowPrecision
from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import Gradients
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.binding import bind, cotangent_vectors
from gradcheck_cli.subject.files import load_model_file

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
RIGHT = MODELS / "low_precision.py"
WRONG = MODELS / "low_precision_bug.py"

LAYERS = {
    # layer: (its inputs, the inputs the 1% error in its backward touches)
    "softmax": (("x",), {"x"}),
    "layernorm": (("x", "gamma", "beta"), {"x"}),
    "attention": (("q", "k", "v"), {"q", "k"}),
}


def failed_entries(document: dict[str, Any]) -> set[tuple[str, tuple[int, ...]]]:
    return {(c["wrt"], tuple(c["index"])) for c in document["checks"] if c["reason"] == "mismatch"}


# --- The targets: correct layers pass, a 1% error in one term fails, naming its entries ---------


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_correct_layer_passes_in_low_precision(
    report_validator: Any, layer: str, dtype: str
) -> None:
    """softmax, layer norm and attention in float32 and float16: exit 0 against the same code
    in float64 at the same quantised inputs; its float64 gradient was checked first."""
    code, document = gradcheck_json("run", "--model", f"{RIGHT}:{layer}", "--dtype", dtype)
    assert code == 0, [c for c in document["checks"] if not c["passed"]]
    settings = document["settings"]
    assert (settings["dtype"], settings["precision"]) == (dtype, dtype)
    assert settings["reference_forward"] == "the model's own forward, in float64"
    assert settings["unit_roundoff"] == float(np.finfo(dtype).eps) / 2
    assert document["float64_check"]["verdict"] == "passed"
    assert {info["dtype"] for info in document["inputs"].values()} == {dtype}
    assert list(report_validator.iter_errors(document)) == []


def _moved_by_the_bug(layer: str) -> set[tuple[str, tuple[int, ...]]]:
    """The entries whose float64 gradient the planted 1% moves (by more than round-off), for
    the run's first cotangent: the known answer."""
    right, wrong = load_module(RIGHT), load_module(WRONG)
    inputs = right.example_inputs()
    names, _ = LAYERS[layer]
    args = [inputs[n] for n in names]
    model = bind(load_model_file(RIGHT, layer), {})
    (v,) = cotangent_vectors(model.models[0])
    _, cache = getattr(right, f"{layer}_forward")(*args)
    good = getattr(right, f"{layer}_backward")(v, cache)
    bad = getattr(wrong, f"{layer}_backward")(v, cache)
    good = good if isinstance(good, tuple) else (good,)
    bad = bad if isinstance(bad, tuple) else (bad,)
    moved = set()
    for name, a, b in zip(names, good, bad, strict=True):
        scale = float(np.max(np.abs(a)))
        for index in zip(*np.nonzero(np.abs(a - b) > 1e-9 * scale), strict=True):
            moved.add((name, tuple(int(i) for i in index)))
    return moved


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_one_percent_error_in_one_term_fails_naming_its_entries(layer: str, dtype: str) -> None:
    """The twin's backward with one term off by 1%: exit 1 in float32 and float16 (far below
    what float16 resolves in the terms it moves, so the same code's float64 check finds it),
    failing on exactly the entries the error moves, of the inputs it touches only."""
    code, document = gradcheck_json("run", "--model", f"{WRONG}:{layer}", "--dtype", dtype)
    assert code == 1
    _, touched = LAYERS[layer]
    assert {n for n, s in document["summary"].items() if s["failed"]} == touched
    assert document["float64_check"]["verdict"] == "failed"
    assert document["settings"]["dtype"] == "float64"  # the entries listed are float64's
    assert document["settings"]["precision"] == dtype
    first_cotangent = {
        (c["wrt"], tuple(c["index"]))
        for c in document["checks"]
        if c["reason"] == "mismatch" and c.get("cotangent", 1) == 1
    }
    assert first_cotangent == _moved_by_the_bug(layer)


def test_the_table_says_the_formula_is_wrong_not_the_precision() -> None:
    result = gradcheck("run", "--model", f"{WRONG}:layernorm", "--dtype", "float16")
    assert result.exit_code == 1
    assert "the formula is wrong, not the precision" in result.stdout
    assert "diagnosis (" in result.stdout


# --- A kernel that only exists in low precision: judged by the precision alone ------------------


def test_a_half_precision_kernel_passes_against_its_named_reference() -> None:
    """softmax_half computes in float16 whatever it is given: its own forward is no float64
    reference, softmax_forward is; at --dtype float32 its float16 rounding is what counts."""
    for dtype in ("float16", "float32"):
        code, document = gradcheck_json(
            "run",
            "--model",
            f"{RIGHT}:softmax_half",
            "--dtype",
            dtype,
            "--reference-model",
            f"{RIGHT}:softmax_forward",
        )
        assert code == 0
        settings = document["settings"]
        assert settings["reference_forward"] == "low_precision.py:softmax_forward, in float64"
        assert settings["unit_roundoff"] == 2.0**-11  # float16's, even at --dtype float32
        assert "float64_check" not in document


def test_a_half_precision_kernel_with_a_wrong_term_fails_where_float16_resolves_it() -> None:
    """Against the reference alone, the 1% error shows on the entries where it exceeds what
    float16 rounds (the largest moves of the gradient), and on no entry it leaves alone."""
    code, document = gradcheck_json(
        "run",
        "--model",
        f"{WRONG}:softmax_half",
        "--dtype",
        "float16",
        "--reference-model",
        f"{RIGHT}:softmax_forward",
    )
    assert code == 1
    failed = [c for c in document["checks"] if c["reason"] == "mismatch"]
    assert failed
    for check in failed:
        # Each failing entry is off by more than its tolerance, which holds u x its terms.
        assert check["abs_error"] > check["tolerance"] >= 10 * 2.0**-11 * abs(check["analytic"])


def test_without_a_float64_forward_the_whole_check_runs_in_low_precision() -> None:
    """No reference named and a forward that computes in float16 at float64 inputs: the check
    differences that very forward in float16, says so, and can vouch for nothing here."""
    result = gradcheck("run", "--model", f"{RIGHT}:softmax_half", "--dtype", "float16")
    assert result.exit_code == 4
    assert "the whole check runs in float16" in result.stdout
    document = json.loads(
        gradcheck(
            "run",
            "--model",
            f"{RIGHT}:softmax_half",
            "--dtype",
            "float16",
            "--format",
            "json",
        ).stdout
    )
    assert document["settings"]["reference_forward"] == "none"


PRECISION_BUG = """
import numpy as np


def scale_forward(x, w):
    return x * w, (x, w)


def scale_backward(dout, cache):
    x, w = cache
    dw = dout * x
    if dout.dtype == np.float16:  # a half-precision path of its own, with a bug
        dw = dw * np.float16(1.25)
    return dout * w, dw


def example_inputs():
    rng = np.random.default_rng(2)
    return {"x": rng.standard_normal((3, 4)), "w": rng.standard_normal((3, 4))}
"""


def test_a_bug_of_the_low_precision_path_alone_fails_there(tmp_path: Path) -> None:
    """Right in float64 (its float64 check passes), wrong in float16: the float16 gradient
    fails on dw alone, every entry."""
    path = tmp_path / "scaled.py"
    path.write_text(PRECISION_BUG, encoding="utf-8")
    code, document = gradcheck_json("run", "--model", f"{path}:scale", "--dtype", "float16")
    assert code == 1
    assert document["float64_check"]["verdict"] == "passed"
    assert {n: s["failed"] for n, s in document["summary"].items()} == {"x": 0, "w": 12}
    assert any(d["wrt"] == "w" and d["kind"] == "scale" for d in document["diagnosis"])


# --- Refusals: one line, exit 2 -------------------------------------------------------------------


# --- The parts: the same cotangents, the rounding estimate, the API -----------------------------


def test_the_reference_gets_the_low_precision_runs_cotangents() -> None:
    """Drawn from the same seed and rounded through float16: bitwise the same values."""
    model_file = load_model_file(RIGHT, "softmax")
    low = bind(model_file, {}, dtype="float16")
    x = Supplied(low.inputs["x"].astype(np.float64), "array")
    reference = bind(model_file, {"x": x}, dtype="float64", cotangent_dtype="float16")
    for a, b in zip(low.models, reference.models, strict=True):
        (va,), (vb,) = cotangent_vectors(a), cotangent_vectors(b)
        assert va.dtype == np.float16
        assert vb.dtype == np.float64
        np.testing.assert_array_equal(va.astype(np.float64), vb)


def test_the_rounding_estimate_is_u_times_the_largest_of_its_sizes() -> None:
    """u x max(|g|, the input's largest |g|, spread / u) + the smallest subnormal (2^-24 in
    float16: the spacing near zero), entry by entry."""
    low = LowPrecision(
        dtype="float16",
        unit=2.0**-11,
        gradients=({"x": np.array([1.0, -4.0, 0.0])},),
        spread=({"x": np.array([0.0, 0.0, 1.0])},),
        dithers=4,
        reference="test",
    )
    np.testing.assert_array_equal(
        low.rounding(0, "x"), np.array([4.0 * 2.0**-11, 4.0 * 2.0**-11, 1.0]) + 2.0**-24
    )


def test_the_api_checks_a_layer_in_float16() -> None:
    """check_layer(dtype="float16"): the correct layer norm passes, the twin fails; a kernel
    that only computes in float16 passes against reference_forward."""
    right, wrong = load_module(RIGHT), load_module(WRONG)
    inputs = {k: right.example_inputs()[k] for k in ("x", "gamma", "beta")}
    report = check_layer(right.layernorm_forward, right.layernorm_backward, inputs, dtype="float16")
    assert report.passed
    assert report.settings.low_precision is not None
    assert not check_layer(
        wrong.layernorm_forward, wrong.layernorm_backward, inputs, dtype="float16"
    ).passed
    half = check_layer(
        right.softmax_half_forward,
        right.softmax_half_backward,
        {"x": inputs["x"]},
        dtype="float16",
        reference_forward=right.softmax_forward,
    )
    assert half.passed
    with pytest.raises(InputError, match="reference_forward is for a gradient computed in low"):
        check_layer(
            right.softmax_half_forward,
            right.softmax_half_backward,
            {"x": inputs["x"]},
            reference_forward=right.softmax_forward,
        )


def test_cancellation_inside_the_code_is_inconclusive_in_float32_not_failed() -> None:
    """tanh(X @ W) at the seed saturates on row 1 of X: `1 - tanh(z)**2` loses three digits in
    float32 that no perturbation from outside shows. Those entries exceed their rounding
    estimate by less than 1024 units of the input's largest gradient: inconclusive (exit 4),
    while the same code passes in float64; nothing fails."""
    code, document = gradcheck_json(
        "run", "--model", str(MODELS / "dense_tanh_vector.py"), "--dtype", "float32"
    )
    assert code == 4
    assert document["float64_check"]["verdict"] == "passed"
    assert failed_entries(document) == set()
    unsure = {
        (c["wrt"], tuple(c["index"])) for c in document["checks"] if c["reason"] == "inconclusive"
    }
    assert ("X", (1, 0)) in unsure
    for check in document["checks"]:
        if check["reason"] == "inconclusive":
            assert check["abs_error"] > check["tolerance"]
            scale = max(
                abs(c["analytic"])
                for c in document["checks"]
                if c["wrt"] == check["wrt"] and c["cotangent"] == check["cotangent"]
            )
            assert check["abs_error"] <= 1024 * 2.0**-24 * scale


def test_the_resolution_is_1024_units_at_most_one_percent() -> None:
    """float32: 1024 u of max(|g|, the largest |g|); float16: capped at 1%."""
    gradients: tuple[Gradients, ...] = ({"x": np.array([2.0, -0.5])},)
    spread = ({"x": np.zeros(2)},)
    single = LowPrecision("float32", 2.0**-24, gradients, spread, 4, "test")
    np.testing.assert_array_equal(single.resolution(0, "x"), np.full(2, 1024 * 2.0**-24 * 2.0))
    half = LowPrecision("float16", 2.0**-11, gradients, spread, 4, "test")
    np.testing.assert_array_equal(half.resolution(0, "x"), np.full(2, 0.01 * 2.0))


FLOAT32_BACKWARD = """
import numpy as np


def forward(x, w):
    return np.tanh(x @ w)


def backward(x, w, grad_output):
    d = (grad_output * (1.0 - np.tanh(x @ w) ** 2)).astype(np.float32)
    dx = d @ w.T.astype(np.float32)
    dw = x.T.astype(np.float32) @ d
    return dx.astype(np.float64), dw.astype(np.float64)


def example_inputs():
    rng = np.random.default_rng(5)
    return {"x": rng.standard_normal((4, 3)), "w": rng.standard_normal((3, 2)) / 2}
"""


def test_a_backward_that_computes_in_float32_is_not_checked_in_float64(tmp_path: Path) -> None:
    """Its gradient at float64 inputs holds float32 values only: no float64 check of the same
    code (it would blame the formula for float32's rounding); at --dtype float32 it passes."""
    path = tmp_path / "single.py"
    path.write_text(FLOAT32_BACKWARD, encoding="utf-8")
    code, document = gradcheck_json("run", "--model", str(path), "--dtype", "float32")
    assert code == 0
    assert "float64_check" not in document
    assert document["settings"]["reference_forward"] == "the model's own forward, in float64"


ON_A_GRID = """
import numpy as np


def square_forward(x):
    return x * x, x


def square_backward(dout, cache):
    assert np.all(cache * 8 == np.round(cache * 8)), "x must be on the grid of eighths"
    return 2 * cache * dout


def example_inputs():
    return {"x": np.array([0.5, -1.25, 2.0, 0.875])}
"""


def test_code_that_fails_an_ulp_away_leaves_the_precision_unable_to_vouch(tmp_path: Path) -> None:
    """The backward refuses inputs off its grid, as the rounding-level perturbations are: in
    float16 nothing near these inputs can be vouched for, so every entry is inconclusive (exit
    4), never passed, and the run is no error."""
    path = tmp_path / "grid.py"
    path.write_text(ON_A_GRID, encoding="utf-8")
    code, document = gradcheck_json("run", "--model", f"{path}:square", "--dtype", "float16")
    assert code == 4
    assert document["float64_check"]["verdict"] == "passed"
    assert {c["reason"] for c in document["checks"]} == {"inconclusive"}
