"""The command line, end to end: the seed's numbers, what every option does, the JSON contract
(schema, --output, stdout holding JSON alone), the exit code of each verdict, --help and
--version. (What it refuses, with exit 2 and one line, is test_bad_input's.)"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import document_of, gradcheck, refusal
from numpy.typing import NDArray

import gradcheck_cli

Matrix = NDArray[np.float64]
Seed = tuple[Matrix, Matrix]
ModelPath = Callable[[str], str]

# The seed story's numbers (the blog post; PyTorch's X.grad[0, 0] printed to 9 digits).
SEED_F = 5.833329393581208
SEED_F_PERTURBED = 5.833349179920838  # f with X[0, 0] + 1e-4
SEED_GRADIENT = 0.19787655855283736  # dF/dX[0, 0]
TORCH_GRADIENT_TEXT = "0.197876559"

BUILTIN_MODELS = [
    f"{activation}-{reduction}"
    for activation in ("sigmoid", "tanh", "softplus", "relu", "identity")
    for reduction in ("sum", "mean")
]
EPS = float(np.finfo(np.float64).eps)


# --- helpers ------------------------------------------------------------------------------------


def closed_form(name: str, X: Matrix, W: Matrix) -> tuple[float, Matrix, Matrix]:
    """f, dF/dX, dF/dW of a built-in model, written out independently of the package."""
    activation, reduction = name.split("-")
    Z = X @ W
    sigmoid = 1.0 / (1.0 + np.exp(-Z))
    values, derivative = {
        "sigmoid": (sigmoid, sigmoid * (1.0 - sigmoid)),
        "tanh": (np.tanh(Z), 1.0 / np.cosh(Z) ** 2),
        "softplus": (np.log1p(np.exp(Z)), sigmoid),
        "relu": (np.maximum(Z, 0.0), (Z > 0).astype(float)),
        "identity": (Z, np.ones_like(Z)),
    }[activation]
    scale = 1.0 if reduction == "sum" else 1.0 / Z.size
    D = derivative * scale
    return float(np.sum(values) * scale), D @ W.T, X.T @ D


def expand(args: list[str], model_path: ModelPath) -> list[str]:
    """Replace each {stem} by the path of fixtures/models/stem.py."""
    return [model_path(a[1:-1]) if a.startswith("{") else a for a in args]


def by_entry(doc: dict[str, Any]) -> dict[tuple[str, int, int, int | None], dict[str, Any]]:
    return {(c["wrt"], c["index"][0], c["index"][1], c.get("cotangent")): c for c in doc["checks"]}


def without_sources(doc: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a report without inputs.X.source and inputs.W.source."""
    copy: dict[str, Any] = json.loads(json.dumps(doc))
    for info in copy["inputs"].values():
        del info["source"]
    return copy


# --- perturb: the seed's experiment -------------------------------------------------------------


def test_perturb_reproduces_the_seed_numbers() -> None:
    """perturb X[0,0] by 1e-4 gives the seed's f, perturbed f and gradient, and passes."""
    result = gradcheck("perturb", "--entry", "0,0", "--delta", "1e-4", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert doc["passed"] is True
    assert doc["f"] == pytest.approx(SEED_F, rel=1e-12)
    (p,) = doc["perturbations"]
    assert (p["wrt"], p["index"], p["delta"]) == ("X", [0, 0], 1e-4)
    assert p["f"] == pytest.approx(SEED_F, rel=1e-12)
    assert p["f_perturbed"] == pytest.approx(SEED_F_PERTURBED, rel=1e-12)
    assert p["gradient"] == pytest.approx(SEED_GRADIENT, rel=1e-12)
    assert p["actual_change"] == p["f_perturbed"] - p["f"]
    assert p["predicted_change"] == pytest.approx(p["gradient"] * 1e-4, rel=1e-15)
    assert p["abs_error"] == pytest.approx(abs(p["actual_change"] - p["predicted_change"]))
    assert p["passed"] is True
    assert p["reason"] == "ok"


def test_perturb_table_shows_the_seed_numbers() -> None:
    """The table prints f and perturbed f in full, both changes and the gradient as the seed."""
    result = gradcheck("perturb", "--entry", "0,0", "--delta", "1e-4")
    assert result.exit_code == 0, result.stderr
    for text in ("5.833329393581208", "5.833349179920838", "1.97863e-05", "1.97877e-05"):
        assert text in result.stdout
    assert TORCH_GRADIENT_TEXT in result.stdout
    assert "PASSED" in result.stdout


def test_perturb_w_entries_match_closed_form(seed_arrays: Seed) -> None:
    """Repeated --entry on W: each perturbation's f(W + delta e_ij) and dF/dW match numpy."""
    X, W = seed_arrays
    result = gradcheck(
        "perturb", "--wrt", "W", "--entry", "2,1", "--entry", "0,0", "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    _, _, dW = closed_form("sigmoid-sum", X, W)
    assert [p["index"] for p in doc["perturbations"]] == [[2, 1], [0, 0]]
    for p in doc["perturbations"]:
        i, j = p["index"]
        moved = W.copy()
        moved[i, j] += 1e-4
        assert p["wrt"] == "W"
        assert p["f_perturbed"] == pytest.approx(closed_form("sigmoid-sum", X, moved)[0], 1e-12)
        assert p["gradient"] == pytest.approx(dW[i, j], rel=1e-12)
        assert p["passed"] is True


# --- run: the seed against the closed form ------------------------------------------------------


def test_run_seed_matches_closed_form(seed_arrays: Seed) -> None:
    """run on the seed checks all 15 entries; analytic = s(1-s) closed form, numerical near it."""
    X, W = seed_arrays
    result = gradcheck("run", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert doc["passed"] is True
    assert doc["f"] == pytest.approx(SEED_F, rel=1e-12)
    assert len(doc["checks"]) == 15
    s = 1.0 / (1.0 + np.exp(-(X @ W)))
    expected = {"X": s * (1 - s) @ W.T, "W": X.T @ (s * (1 - s))}
    seen = set()
    for c in doc["checks"]:
        exact = float(expected[c["wrt"]][tuple(c["index"])])
        assert math.isclose(c["analytic"], exact, rel_tol=1e-12), c
        assert abs(c["numerical"] - exact) <= 1e-8, c
        assert c["passed"] is True
        seen.add((c["wrt"], *c["index"]))
    assert seen == {("X", i, j) for i in range(3) for j in range(3)} | {
        ("W", i, j) for i in range(3) for j in range(2)
    }


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ([], 0),
        (["--model", "relu-mean", "--method", "five-point"], 0),
        (["--model", "{dense_tanh_bug}"], 1),
        (["--model", "{dense_tanh_vector_bug}"], 1),
    ],
)
def test_run_summary_agrees_with_the_checks(
    model_path: ModelPath, args: list[str], code: int
) -> None:
    """summary's entries/failed/doubtful/max errors/worst entry/listed follow from the checks."""
    result = gradcheck("run", *expand(args, model_path), "--details", "all", "--format", "json")
    doc = document_of(result)
    assert result.exit_code == code
    assert doc["passed"] is (code == 0)
    assert doc["omitted"] == 0
    for name, summary in doc["summary"].items():
        mine = [c for c in doc["checks"] if c["wrt"] == name]
        assert summary["listed"] == len(mine)
        # Each entry counts once, whatever the number of cotangents: it fails if any fails.
        entries: dict[tuple[int, ...], list[dict[str, Any]]] = {}
        for c in mine:
            entries.setdefault(tuple(c["index"]), []).append(c)
        assert summary["entries"] == len(entries)
        failed = [i for i, cs in entries.items() if any(not c["passed"] for c in cs)]
        assert summary["failed"] == len(failed)
        doubtful = [
            i
            for i, cs in entries.items()
            if all(c["passed"] for c in cs) and any(c["reason"] != "ok" for c in cs)
        ]
        assert summary["doubtful"] == len(doubtful)
        assert summary["max_abs_error"] == max(c["abs_error"] for c in mine)
        assert summary["max_rel_error"] == max(c["rel_error"] for c in mine)
        worst = max(mine, key=lambda c: c["abs_error"] / c["tolerance"])
        assert summary["worst_index"] == worst["index"]
    assert doc["passed"] is all(c["passed"] for c in doc["checks"])


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtin_model_matches_closed_form(seed_arrays: Seed, name: str) -> None:
    """--model NAME: every built-in model's f and analytic gradient equal the closed form."""
    X, W = seed_arrays
    result = gradcheck("run", "--model", name, "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    activation, reduction = name.split("-")
    assert doc["model"]["name"] == name
    assert doc["model"]["formula"] == f"{reduction}({activation}(X @ W))"
    f, dX, dW = closed_form(name, X, W)
    assert doc["f"] == pytest.approx(f, rel=1e-12)
    for c in doc["checks"]:
        exact = float((dX if c["wrt"] == "X" else dW)[tuple(c["index"])])
        assert math.isclose(c["analytic"], exact, rel_tol=1e-12), c
        assert abs(c["numerical"] - exact) <= 1e-8, c


# --- run options -------------------------------------------------------------------------------


@pytest.mark.parametrize(("wrt", "count"), [("X", 9), ("W", 6), ("both", 15)])
def test_wrt_chooses_the_matrices(wrt: str, count: int) -> None:
    """--wrt X|W|both checks the entries of that matrix only, and summarises only it."""
    doc = document_of(gradcheck("run", "--wrt", wrt, "--format", "json"))
    names = {"X", "W"} if wrt == "both" else {wrt}
    assert {c["wrt"] for c in doc["checks"]} == names
    assert set(doc["summary"]) == names
    assert len(doc["checks"]) == count
    assert doc["settings"]["wrt"] == (["X", "W"] if wrt == "both" else [wrt])


@pytest.mark.parametrize(
    ("method", "step", "bound"),
    [
        ("forward", EPS ** (1 / 2), 1e-7),
        ("backward", EPS ** (1 / 2), 1e-7),
        ("central", EPS ** (1 / 3), 1e-9),
        ("five-point", EPS ** (1 / 5), 1e-10),
        ("complex-step", 1e-20, 1e-14),
    ],
)
def test_method_sets_scheme_step_and_accuracy(method: str, step: float, bound: float) -> None:
    """--method: each scheme's default step (eps^(1/(p+1)) x max(1,|x|), rounded down to a power of
    two) and its accuracy."""
    result = gradcheck("run", "--method", method, "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert doc["settings"]["method"] == method
    checks = by_entry(doc)

    def power_of_two(value: float) -> float:
        return value if method == "complex-step" else float(2.0 ** math.floor(math.log2(value)))

    assert checks["X", 0, 0, None]["step"] == power_of_two(step)  # |x| = 0.1
    scaled = step if method == "complex-step" else step * 6.0  # |W[2, 1]| = 6
    assert checks["W", 2, 1, None]["step"] == power_of_two(scaled)
    assert max(abs(c["analytic"] - c["numerical"]) for c in doc["checks"]) < bound
    assert all(c["passed"] for c in doc["checks"])


def test_delta_fixes_every_step() -> None:
    """--delta 1e-5: every entry uses that step and settings record it."""
    result = gradcheck("run", "--delta", "1e-5", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert doc["settings"]["delta"] == 1e-5
    assert "--delta" in doc["settings"]["step_rule"]
    assert {c["step"] for c in doc["checks"]} == {1e-5}
    assert all(c["passed"] and c["reason"] == "ok" for c in doc["checks"])


def test_delta_does_not_hide_a_wrong_gradient(model_path: ModelPath) -> None:
    """A chosen step still fails a planted bug as a mismatch, not as a step problem."""
    result = gradcheck("run", "--model", model_path("dense_tanh_bug"), "--delta", "1e-3")
    assert result.exit_code == 1
    doc = document_of(
        gradcheck(
            "run", "--model", model_path("dense_tanh_bug"), "--delta", "1e-3", "--format", "json"
        )
    )
    assert {c["reason"] for c in doc["checks"]} == {"mismatch"}


def test_default_tolerance_is_the_error_estimate() -> None:
    """Without --rtol/--atol the tolerance is atol + rtol|numerical| + safety x estimate."""
    doc = document_of(gradcheck("run", "--format", "json"))
    settings = doc["settings"]
    assert settings["tolerance"] == "estimate"
    for c in doc["checks"]:
        expected = (
            settings["atol"]
            + settings["rtol"] * abs(c["numerical"])
            + settings["safety"] * c["error_estimate"]
        )
        assert c["tolerance"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("options", "rtol", "atol"),
    [
        (["--rtol", "1e-5"], 1e-5, 1e-9),
        (["--atol", "1e-6"], 1e-6, 1e-6),
        (["--rtol", "1e-4", "--atol", "1e-7"], 1e-4, 1e-7),
    ],
)
def test_rtol_atol_fix_the_tolerance(options: list[str], rtol: float, atol: float) -> None:
    """--rtol/--atol switch to a fixed tolerance atol + rtol|numerical| (the other defaulted)."""
    result = gradcheck("run", *options, "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert doc["settings"]["tolerance"] == "fixed"
    assert (doc["settings"]["rtol"], doc["settings"]["atol"]) == (rtol, atol)
    for c in doc["checks"]:
        assert c["tolerance"] == pytest.approx(atol + rtol * abs(c["numerical"]), rel=1e-12)


def test_impossible_tolerance_fails_as_mismatch() -> None:
    """--rtol 0 --atol 0 with forward differences: nothing is exact, so exit 1, mismatch."""
    result = gradcheck(
        "run", "--rtol", "0", "--atol", "0", "--method", "forward", "--format", "json"
    )
    assert result.exit_code == 1
    doc = document_of(result)
    assert doc["passed"] is False
    assert doc["settings"]["tolerance"] == "fixed"
    failed = [c for c in doc["checks"] if not c["passed"]]
    assert failed
    assert {c["reason"] for c in failed} == {"mismatch"}


def test_top_limits_the_table() -> None:
    """--top 3 shows the 3 worst of the 15 entries in the table."""
    result = gradcheck("run", "--top", "3")
    assert result.exit_code == 0, result.stderr
    assert "Worst 3 of 15 entries" in result.stdout
    assert "PASSED: all 15 entries agree." in result.stdout


@pytest.mark.parametrize("top", [1, 4])
def test_details_worst_lists_the_top_worst(top: int) -> None:
    """--details worst --top K lists the K entries furthest past their tolerance."""
    everything = document_of(gradcheck("run", "--details", "all", "--format", "json"))["checks"]
    doc = document_of(gradcheck("run", "--details", "worst", "--top", str(top), "--format", "json"))
    ranked = sorted(everything, key=lambda c: -c["abs_error"] / c["tolerance"])
    assert doc["checks"] == ranked[:top]
    assert doc["omitted"] == 15 - top
    assert doc["settings"]["details"] == "worst"
    assert sum(s["listed"] for s in doc["summary"].values()) == top
    assert sum(s["entries"] for s in doc["summary"].values()) == 15


@pytest.mark.parametrize(
    ("details", "model", "listed"),
    [
        ("all", None, 15),
        ("auto", None, 15),
        ("worst", None, 1),
        ("worst", "dense_tanh_bug", 15),  # every failed entry is listed, whatever --top says
    ],
)
def test_details_chooses_the_listed_entries(
    model_path: ModelPath, details: str, model: str | None, listed: int
) -> None:
    """--details all|auto|worst: how many of the 15 checked entries the JSON lists."""
    extra = [] if model is None else ["--model", model_path(model)]
    doc = document_of(
        gradcheck("run", *extra, "--details", details, "--top", "1", "--format", "json")
    )
    assert len(doc["checks"]) == listed
    assert doc["omitted"] == 15 - listed


def test_details_auto_lists_only_the_worst_beyond_1000_entries(tmp_path: Path) -> None:
    """--details auto with 1280 entries lists the --top worst and counts the rest as omitted."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.standard_normal((30, 40)) * 0.1)
    np.save(tmp_path / "W.npy", rng.standard_normal((40, 2)) * 0.1)
    result = gradcheck(
        "run", "--x", str(tmp_path / "X.npy"), "--w", str(tmp_path / "W.npy"), "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert sum(s["entries"] for s in doc["summary"].values()) == 1280
    assert len(doc["checks"]) == 10
    assert doc["omitted"] == 1270


def test_entries_list_checks_those_entries_in_each_matrix() -> None:
    """--entries "0,0;2,1" checks exactly X[0,0], X[2,1], W[0,0], W[2,1], with the numbers of a
    full check: the same analytic values and verdicts, numerical values within the two error
    estimates (a full check of a built-in model takes the dense path, a selection does not)."""
    everything = by_entry(document_of(gradcheck("run", "--format", "json")))
    doc = document_of(gradcheck("run", "--entries", "0,0;2,1", "--format", "json"))
    chosen = by_entry(doc)
    assert set(chosen) == {
        ("X", 0, 0, None),
        ("X", 2, 1, None),
        ("W", 0, 0, None),
        ("W", 2, 1, None),
    }
    for key, check in chosen.items():
        full = everything[key]
        assert check["analytic"] == full["analytic"]
        assert (check["passed"], check["reason"]) == (full["passed"], full["reason"])
        bound = check["error_estimate"] + full["error_estimate"]
        assert abs(check["numerical"] - full["numerical"]) <= bound
    assert doc["settings"]["entries"] == "0,0;2,1"
    assert {name: s["entries"] for name, s in doc["summary"].items()} == {"X": 2, "W": 2}
    assert doc["omitted"] == 0


def test_entries_random_is_seeded_and_reproducible() -> None:
    """--entries random:3 picks 3 distinct entries per matrix, the same ones for the same seed."""
    first = document_of(gradcheck("run", "--entries", "random:3", "--format", "json"))
    again = document_of(gradcheck("run", "--entries", "random:3", "--format", "json"))
    other = document_of(
        gradcheck("run", "--entries", "random:3", "--seed", "1", "--format", "json")
    )
    assert first["checks"] == again["checks"]
    assert first["settings"]["entries"] == "random:3"
    for doc in (first, other):
        for name in ("X", "W"):
            picked = {tuple(c["index"]) for c in doc["checks"] if c["wrt"] == name}
            assert len(picked) == 3
            assert doc["summary"][name]["entries"] == 3
    assert set(by_entry(first)) != set(by_entry(other))


@pytest.mark.parametrize("command", ["run", "perturb", "sweep"])
def test_float32_passes_on_the_seed(command: str) -> None:
    """--dtype float32: inputs are float32 in the report and the seed's correct gradient passes."""
    result = gradcheck(command, "--dtype", "float32", "--format", "json")
    doc = document_of(result)
    assert {info["dtype"] for info in doc["inputs"].values()} == {"float32"}
    assert doc["settings"]["dtype"] == "float32"
    assert doc["passed"] is True, doc.get("reason")
    assert result.exit_code == 0


# --- inputs --------------------------------------------------------------------------------------


def test_csv_inputs_equal_the_builtin_seed(fixtures_dir: Path) -> None:
    """--x/--w from fixtures/seed_*.csv give the builtin run's report, sources apart."""
    x_path, w_path = str(fixtures_dir / "seed_X.csv"), str(fixtures_dir / "seed_W.csv")
    builtin = document_of(gradcheck("run", "--format", "json"))
    loaded = document_of(gradcheck("run", "--x", x_path, "--w", w_path, "--format", "json"))
    assert builtin["inputs"]["X"]["source"] == "builtin:seed"
    assert (loaded["inputs"]["X"]["source"], loaded["inputs"]["W"]["source"]) == (x_path, w_path)
    assert without_sources(loaded) == without_sources(builtin)


@pytest.mark.parametrize("fmt", ["npy", "npz", "npz:key"])
def test_npy_and_npz_inputs_equal_the_builtin_seed(
    seed_arrays: Seed, tmp_path: Path, fmt: str
) -> None:
    """.npy, single-array .npz and .npz:KEY inputs load the seed exactly; the source says which."""
    X, W = seed_arrays
    if fmt == "npy":
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "W.npy", W)
        x_spec, w_spec = str(tmp_path / "X.npy"), str(tmp_path / "W.npy")
    elif fmt == "npz":
        np.savez(tmp_path / "X.npz", X)
        np.savez(tmp_path / "W.npz", W)
        x_spec, w_spec = str(tmp_path / "X.npz"), str(tmp_path / "W.npz")
    else:
        np.savez(tmp_path / "both.npz", X=X, W=W)
        x_spec, w_spec = f"{tmp_path / 'both.npz'}:X", f"{tmp_path / 'both.npz'}:W"
    builtin = document_of(gradcheck("run", "--format", "json"))
    loaded = document_of(gradcheck("run", "--x", x_spec, "--w", w_spec, "--format", "json"))
    sources = (loaded["inputs"]["X"]["source"], loaded["inputs"]["W"]["source"])
    if fmt == "npz":
        assert sources == (f"{x_spec}:arr_0", f"{w_spec}:arr_0")
    else:
        assert sources == (x_spec, w_spec)
    assert without_sources(loaded) == without_sources(builtin)


def test_other_shapes_from_files_match_closed_form(tmp_path: Path) -> None:
    """A 4x5 X and a 5x3 W from .npy: shapes reported, f and gradient equal the closed form."""
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "W.npy", W)
    result = gradcheck(
        "run", "--x", str(tmp_path / "X.npy"), "--w", str(tmp_path / "W.npy"), "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert (doc["inputs"]["X"]["shape"], doc["inputs"]["W"]["shape"]) == ([4, 5], [5, 3])
    f, dX, dW = closed_form("sigmoid-sum", X, W)
    assert doc["f"] == pytest.approx(f, rel=1e-12)
    assert len(doc["checks"]) == 20 + 15
    for c in doc["checks"]:
        exact = float((dX if c["wrt"] == "X" else dW)[tuple(c["index"])])
        assert c["analytic"] == pytest.approx(exact, rel=1e-10, abs=1e-14)


# --- model files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "code", "verdict"),
    [("dense_tanh", 0, "PASSED"), ("dense_tanh_bug", 1, "FAIL")],
)
def test_model_file_verdict_and_exit_code(
    model_path: ModelPath, stem: str, code: int, verdict: str
) -> None:
    """A correct model file exits 0 and says PASSED; the planted bug exits 1 and shows FAIL."""
    table = gradcheck("run", "--model", model_path(stem))
    assert table.exit_code == code, table.stderr
    assert verdict in table.stdout
    doc = document_of(gradcheck("run", "--model", model_path(stem), "--format", "json"))
    assert doc["passed"] is (code == 0)
    assert doc["model"]["source"] == model_path(stem)
    assert doc["model"]["name"] == stem.replace("_", "-")
    if code:
        assert all(not c["passed"] and c["reason"] == "mismatch" for c in doc["checks"])


def test_vector_model_passes_with_two_cotangents(model_path: ModelPath) -> None:
    """A correct vector model is checked through 2 cotangents by default and exits 0."""
    result = gradcheck("run", "--model", model_path("dense_tanh_vector"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert {c["cotangent"] for c in doc["checks"]} == {1, 2}
    assert len(doc["checks"]) == 30
    assert all(c["passed"] for c in doc["checks"])


def test_vector_model_bug_fails_only_in_w(model_path: ModelPath) -> None:
    """The vector model whose dW forgets tanh' fails every W entry and no X entry (exit 1)."""
    result = gradcheck("run", "--model", model_path("dense_tanh_vector_bug"), "--format", "json")
    assert result.exit_code == 1
    doc = document_of(result)
    assert doc["summary"]["X"]["failed"] == 0
    # 6 entries of W, each failing through both cotangents (12 rows of checks).
    assert doc["summary"]["W"]["failed"] == doc["summary"]["W"]["entries"] == 6
    assert sum(not c["passed"] for c in doc["checks"]) == 12
    assert {c["wrt"] for c in doc["checks"] if not c["passed"]} == {"W"}
    table = gradcheck("run", "--model", model_path("dense_tanh_vector_bug"))
    assert table.exit_code == 1
    assert "FAIL" in table.stdout
    assert "W[2,0] v" in table.stdout


def test_cotangents_option_sets_their_number(model_path: ModelPath) -> None:
    """--cotangents 3 checks each entry once per cotangent, numbered 1..3."""
    doc = document_of(
        gradcheck(
            "run",
            "--model",
            model_path("dense_tanh_vector"),
            "--cotangents",
            "3",
            "--format",
            "json",
        )
    )
    assert sorted({c["cotangent"] for c in doc["checks"]}) == [1, 2, 3]
    for index in ((0, 0), (2, 2)):
        assert sorted(
            c["cotangent"] for c in doc["checks"] if c["wrt"] == "X" and tuple(c["index"]) == index
        ) == [1, 2, 3]
    # Each entry counts once in the summary; the settings say through how many cotangents.
    assert (doc["summary"]["X"]["entries"], doc["summary"]["W"]["entries"]) == (9, 6)
    assert len(doc["checks"]) == 45
    assert doc["settings"]["cotangents"] == 3


# --- the JSON contract ---------------------------------------------------------------------------

REPORT_CASES = [  # (arguments, exit code): a passing and a failing report of each command
    (["run"], 0),
    (["run", "--model", "{dense_tanh_bug}"], 1),
    (["run", "--model", "{dense_tanh_vector_bug}", "--details", "worst"], 1),
    (["run", "--dtype", "float32", "--method", "five-point"], 0),
    (["perturb", "--entry", "0,0", "--delta", "1e-4"], 0),
    (["perturb", "--model", "{dense_tanh_bug}", "--wrt", "W", "--entry", "1,1"], 1),
    (["sweep", "--entry", "0,0"], 0),
    (["sweep", "--model", "{dense_tanh_bug}"], 1),
    (["sweep", "--model", "identity-sum"], 0),
]
REPORT_IDS = [" ".join(args) for args, _ in REPORT_CASES]


@pytest.mark.parametrize(("args", "code"), REPORT_CASES, ids=REPORT_IDS)
def test_json_report_is_valid_against_the_schema(
    model_path: ModelPath, report_validator: Any, args: list[str], code: int
) -> None:
    """Every report, passing or failing, validates against `gradcheck schema`."""
    result = gradcheck(*expand(args, model_path), "--format", "json")
    doc = document_of(result)
    assert result.exit_code == code
    assert doc["passed"] is (code == 0)
    assert doc["command"] == args[0]
    errors = [error.message for error in report_validator.iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize(("args", "code"), REPORT_CASES, ids=REPORT_IDS)
@pytest.mark.parametrize("mode", ["json", "table"])
def test_output_file_holds_the_json_report(
    model_path: ModelPath, tmp_path: Path, args: list[str], code: int, mode: str
) -> None:
    """--output FILE holds exactly what --format json prints, in json and in table mode."""
    args = expand(args, model_path)
    reference = gradcheck(*args, "--format", "json")
    out = tmp_path / "report.json"
    result = gradcheck(*args, "--format", mode, "--output", str(out))
    assert result.exit_code == reference.exit_code == code
    assert out.read_text(encoding="utf-8") == reference.stdout
    if mode == "table":
        assert not result.stdout.lstrip().startswith("{")


def test_non_finite_values_are_null_not_nan(tmp_path: Path, report_validator: Any) -> None:
    """f undefined beside the input: those entries fail as non-finite, JSON says null not NaN."""
    model = tmp_path / "sqrt_model.py"
    model.write_text(
        "import numpy as np\n"
        "SHIFT = 2.2 - 1e-9  # the seed's smallest entry of X @ W is 2.2\n"
        "def forward(X, W):\n"
        "    return float(np.sum(np.sqrt(X @ W - SHIFT)))\n"
        "def backward(X, W):\n"
        "    d = 0.5 / np.sqrt(X @ W - SHIFT)\n"
        "    return d @ W.T, X.T @ d\n",
        encoding="utf-8",
    )
    result = gradcheck("run", "--model", str(model), "--format", "json")
    assert result.exit_code == 1
    assert "NaN" not in result.stdout
    assert "Infinity" not in result.stdout
    doc = document_of(result)
    bad = [c for c in doc["checks"] if c["reason"] == "non-finite"]
    assert bad
    assert all(c["numerical"] is None and not c["passed"] for c in bad)
    assert list(report_validator.iter_errors(doc)) == []


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["perturb"],
        ["sweep"],
        ["models"],
        ["run", "--model", "{dense_tanh_bug}"],
    ],
)
def test_json_mode_stdout_is_one_document(model_path: ModelPath, args: list[str]) -> None:
    """In JSON mode stdout is a single JSON object and nothing else (no banner, no table)."""
    result = gradcheck(*expand(args, model_path), "--format", "json")
    assert result.exit_code in (0, 1)
    text = result.stdout.strip()
    assert text.startswith("{")
    assert text.endswith("}")
    json.loads(text)  # raises "Extra data" on anything after the document


# --- sweep ----------------------------------------------------------------------------------------


def test_sweep_correct_gradient_has_slope_two(seed_arrays: Seed) -> None:
    """sweep along X[0,0]: residuals fall like delta^2 (slope ~2), reason slope-2, exit 0."""
    X, W = seed_arrays
    result = gradcheck("sweep", "--entry", "0,0", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = document_of(result)
    assert 1.9 <= doc["slope"] <= 2.1
    assert doc["reason"] == "slope-2"
    assert doc["passed"] is True
    assert doc["direction"] == {"kind": "entry", "wrt": "X", "index": [0, 0]}
    assert doc["directional_derivative"] == pytest.approx(SEED_GRADIENT, rel=1e-12)
    assert [r["delta"] for r in doc["rows"]] == pytest.approx([10.0**-k for k in range(1, 11)])
    assert sum(r["in_fit"] for r in doc["rows"]) >= 2
    # The residual at delta = 1e-2 is f(x + d e00) - f(x) - d g, by numpy.
    moved = X.copy()
    moved[0, 0] += 1e-2
    f0, f1 = closed_form("sigmoid-sum", X, W)[0], closed_form("sigmoid-sum", moved, W)[0]
    assert doc["rows"][1]["residual"] == pytest.approx(abs(f1 - f0 - 1e-2 * SEED_GRADIENT), 1e-6)


def test_sweep_planted_bug_has_slope_one(model_path: ModelPath) -> None:
    """sweep on dense_tanh_bug.py: residuals fall like delta (slope ~1), reason slope-1, exit 1."""
    result = gradcheck("sweep", "--model", model_path("dense_tanh_bug"), "--format", "json")
    assert result.exit_code == 1
    doc = document_of(result)
    assert 0.9 <= doc["slope"] <= 1.1
    assert doc["reason"] == "slope-1"
    assert doc["passed"] is False


def test_sweep_random_direction_in_both_is_seeded() -> None:
    """--direction random --wrt both --seed 3 passes and gives the same report every time."""
    args = ("sweep", "--direction", "random", "--wrt", "both", "--seed", "3", "--format", "json")
    first, again = gradcheck(*args), gradcheck(*args)
    assert first.exit_code == 0, first.stderr
    assert first.stdout == again.stdout
    doc = document_of(first)
    assert doc["direction"] == {"kind": "random", "wrt": "X,W", "seed": 3}
    assert doc["reason"] == "slope-2"
    other = document_of(gradcheck(*args[:-3], "4", "--format", "json"))
    assert other["directional_derivative"] != doc["directional_derivative"]


# --- models, schema, help, version ------------------------------------------------------------


def test_models_lists_every_builtin() -> None:
    """models lists the 10 built-in models in the table and in JSON, relu without complex-step."""
    table = gradcheck("models")
    assert table.exit_code == 0, table.stderr
    for name in BUILTIN_MODELS:
        assert name in table.stdout
    result = gradcheck("models", "--format", "json")
    assert result.exit_code == 0
    rows = document_of(result)["models"]
    assert sorted(row["name"] for row in rows) == sorted(BUILTIN_MODELS)
    assert {row["name"] for row in rows if not row["complex_step"]} == {"relu-sum", "relu-mean"}


def test_schema_prints_the_packaged_json_schema(report_validator: Any) -> None:
    """schema prints valid JSON, a Draft 2020-12 schema, identical to the packaged schema.json."""
    result = gradcheck("schema")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    packaged = json.loads(files("gradcheck_cli").joinpath("schema.json").read_text("utf-8"))
    assert printed == packaged
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    report_validator.check_schema(printed)


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        ([], ["Exit codes", "run", "perturb", "sweep", "models", "schema"]),
        (["run"], ["Examples", "finite differences", "--wrt", "--entries"]),
        (["perturb"], ["Examples", "delta", "--entry"]),
        (["sweep"], ["Examples", "Taylor", "--direction", "--plot"]),
        (["models"], ["built-in models", "--format"]),
        (["schema"], ["Example", "JSON Schema"]),
    ],
)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_says_what_each_command_does(args: list[str], phrases: list[str], flag: str) -> None:
    """--help/-h for the group and every command exits 0 and explains that command."""
    result = gradcheck(*args, flag)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Usage: gradcheck")
    for phrase in phrases:
        assert phrase in result.stdout


@pytest.mark.parametrize("command", ["run", "perturb", "sweep"])
def test_help_says_a_model_file_is_code_that_runs(command: str) -> None:
    """`--help` says that a model file runs, as `python FILE.py` would."""
    result = gradcheck(command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "A model file is code: gradcheck runs it, as 'python FILE.py' would." in text


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_package_version(flag: str) -> None:
    """--version prints gradcheck_cli.__version__ and exits 0."""
    result = gradcheck(flag)
    assert result.exit_code == 0
    assert result.stdout.strip() == f"gradcheck, version {gradcheck_cli.__version__}"


def test_no_command_shows_the_help_not_an_error() -> None:
    """Plain `gradcheck` shows the formatted help (with its Commands list), not a one-line error."""
    result = gradcheck()
    shown = result.stdout + result.stderr
    assert result.exit_code in (0, 2)
    assert "gradcheck: error" not in shown
    assert "\nCommands:\n" in shown


def test_sweep_plot_writes_a_png(tmp_path: Path) -> None:
    """sweep --plot FILE.png draws the Taylor test with matplotlib (the plot extra, which the
    test extra installs): a real PNG appears and the verdict is unchanged."""
    pytest.importorskip("matplotlib", reason="the test extra installs matplotlib")
    target = tmp_path / "taylor.png"
    result = gradcheck("sweep", "--plot", str(target), "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 10_000
    assert json.loads(result.stdout)["reason"] == "slope-2"
    assert [p.name for p in tmp_path.iterdir()] == ["taylor.png"]  # no temporary file left


def test_cli_lists_match_the_core() -> None:
    """The CLI's own copies (kept so --help loads no numpy) match the core: methods, reasons."""
    from gradcheck_cli.numerics.schemes import METHOD_NAMES
    from gradcheck_cli.report import REASON_TEXT
    from gradcheck_cli.settings import METHODS

    assert METHODS == METHOD_NAMES
    schema_path = Path(__file__).resolve().parents[1] / "gradcheck_cli" / "schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    reasons = schema["$defs"]["check"]["properties"]["reason"]
    assert set(reasons["enum"]) == set(REASON_TEXT)


def test_a_full_check_over_the_call_budget_is_refused_up_front(model_path: ModelPath) -> None:
    """--max-calls: a model file's full check needing more forward calls (2 per entry: 30 for
    the 15 entries) is exit 2 before any check, saying how many, how long, and what to do
    instead; --mode fast and a raised budget run."""
    result = gradcheck("run", "--model", model_path("dense_tanh"), "--max-calls", "29")
    message = refusal(result)
    assert result.stdout == ""
    for phrase in ("15 entries", "30 forward calls", "--max-calls 29", "--mode fast", "random:K"):
        assert phrase in message, message
    assert gradcheck("run", "--model", model_path("dense_tanh"), "--max-calls", "30").exit_code == 0
    fast = ("run", "--model", model_path("dense_tanh"), "--max-calls", "29", "--mode", "fast")
    assert gradcheck(*fast).exit_code == 0


def test_forward_calls_are_counted_in_the_report(model_path: ModelPath) -> None:
    """A model file's report says how many times its forward ran: about two per entry on a
    smooth correct model (the determinism and precision probes add a few), and the table says
    it per entry."""
    doc = document_of(gradcheck("run", "--model", model_path("dense_tanh"), "--format", "json"))
    assert 30 <= doc["forward_calls"] <= 2.2 * 15 + 10
    assert document_of(gradcheck("run", "--format", "json"))["forward_calls"] is None
    table = gradcheck("run", "--model", model_path("dense_tanh"))
    assert "forward calls:" in table.stdout


def test_jobs_beyond_the_cores_is_capped_and_said() -> None:
    """--jobs larger than any machine (2^64) neither overflows nor starts thousands of
    processes: it is capped at the cores this process may use, one line on stderr says so, and
    the report's jobs never exceeds that."""
    from gradcheck_cli.numerics.workers import default_jobs

    huge = str(2**64)
    result = gradcheck("run", "--jobs", huge, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"gradcheck: --jobs {huge} capped at {default_jobs()}, the cores this process may use\n"
    )
    assert json.loads(result.stdout)["settings"]["jobs"] <= default_jobs()
