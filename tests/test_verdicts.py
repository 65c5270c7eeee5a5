"""Verdicts you can trust: what passes, fails or is inconclusive, and why. No false pass, no
false alarm where the numbers cannot tell, and the table, the JSON and the exit code tell the
same story in every mode.

Every case runs through the command line on small model files written here (a module-scoped
directory), each a way a check can be fooled: |X @ W| at an exact kink, dropout left on, a
forward that computes in float32, planted errors for fast mode, a vector-valued forward, and a
gradient below what finite differences of a black box can see.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from helpers import gradcheck, gradcheck_json
from numpy.typing import NDArray

Document = dict[str, Any]
Matrix = NDArray[np.float64]

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "models"
EXIT = {"passed": 0, "failed": 1, "inconclusive": 4}
FLOAT32_EPS = float(np.finfo(np.float32).eps)

# X @ W has exactly one zero, at [0, 0]; the other entries are well away from 0. W[2, 0] = 0, so
# X[0, 2] does not move it: the kink touches X[0, 0], X[0, 1], W[0, 0], W[1, 0] and W[2, 0].
KINK_X = np.array([[1.0, -1.0, 0.5], [0.3, 0.7, -0.2]])
KINK_W = np.array([[1.0, 0.5], [1.0, -0.25], [0.0, 2.0]])
AT_KINK = {("X", (0, 0)), ("X", (0, 1)), ("W", (0, 0)), ("W", (1, 0)), ("W", (2, 0))}

# A model file's source per name; {placeholders} are filled in by MODEL_FILES below.
SOURCES = {
    "abs": """
        import numpy as np

        AT_KINK = {at_kink}


        def forward(X, W):
            return float(np.sum(np.abs(X @ W)))


        def backward(X, W):
            Z = X @ W
            S = np.sign(Z)
            S[Z == 0] = AT_KINK  # the derivative the backward claims where |z| has its kink
            return S @ W.T, X.T @ S
        """,
    "dropout": """
        import numpy as np

        _rng = np.random.default_rng(0)


        def forward(X, W):
            h = np.tanh(X @ W)
            keep = _rng.random(h.shape + (16,)) < 0.5  # dropout left on: a fresh mask per call
            return float(np.sum(h[..., None] * keep) / 8.0)


        def backward(X, W):
            d = 1.0 - np.tanh(X @ W) ** 2
            return -3.0 * (d @ W.T), -3.0 * (X.T @ d)  # 3x too large, sign flipped
        """,
    "noisy": """
        import numpy as np

        _rng = np.random.default_rng(0)


        def forward(X, W):
            return float(np.sum(np.tanh(X @ W))) + 1e-6 * _rng.standard_normal()


        def backward(X, W):
            d = 1.0 - np.tanh(X @ W) ** 2
            return {sign} * (d @ W.T), {sign} * (X.T @ d)
        """,
    "float32": """
        import numpy as np


        def forward(X, W):
            return float(np.sum(np.tanh(X.astype(np.float32) @ W.astype(np.float32))))


        def backward(X, W):
            d = 1.0 - np.tanh(X @ W) ** 2
            return {factor} * (d @ W.T), X.T @ d
        """,
    "tanh": """
        import numpy as np


        def forward(X, W):
            return float(np.sum(np.tanh(X @ W)))


        def backward(X, W):
            d = 1.0 - np.tanh(X @ W) ** 2
            dX, dW = d @ W.T, X.T @ d
            dW[3, 5] *= {factor}
            return dX, dW + {offset}
        """,
    "tiny": """
        import numpy as np


        def forward(X, W):
            # The gradient, about 1e-20, is far below what differences of f (about 1) resolve.
            return 1.0 + 1e-20 * float(np.sum(np.tanh(X @ W)))


        def backward(X, W):
            d = 1e-20 * (1.0 - np.tanh(X @ W) ** 2)
            return {factor} * (d @ W.T), {factor} * (X.T @ d)
        """,
}

MODEL_FILES = {
    "abs_100.py": ("abs", {"at_kink": 100.0}),
    "dropout.py": ("dropout", {}),
    "noisy_flipped.py": ("noisy", {"sign": -1.0}),
    "noisy_correct.py": ("noisy", {"sign": 1.0}),
    "float32.py": ("float32", {"factor": 1.0}),
    "float32_wrong.py": ("float32", {"factor": 1.1}),
    "tanh.py": ("tanh", {"factor": 1.0, "offset": 0.0}),
    "tanh_one_wrong.py": ("tanh", {"factor": 1.01, "offset": 0.0}),
    "tanh_one_in_a_thousand.py": ("tanh", {"factor": 1.001, "offset": 0.0}),
    # Far below any single entry's tolerance, adding up along a direction over 600 entries.
    "tanh_spread.py": ("tanh", {"factor": 1.0, "offset": 2e-9}),
    "tiny.py": ("tiny", {"factor": 1.0}),
    "tiny_wrong.py": ("tiny", {"factor": -5.0}),
}
SUBGRADIENTS = (0.0, 0.5, -1.0, 1.0)
"""Values between |z|'s one-sided slopes -1 and 1 at z = 0."""


def _arrays() -> dict[str, Matrix]:
    fast = np.random.default_rng(3)
    vector = np.random.default_rng(0)
    big = np.random.default_rng(0)
    n = 64
    return {
        "kink_X.npy": KINK_X,
        "kink_W.npy": KINK_W,
        "fast_X.npy": fast.standard_normal((40, 30)) / 4,
        "fast_W.npy": fast.standard_normal((30, 20)) / 4,
        "vector_X.npy": vector.standard_normal((5, 6)),
        "vector_W.npy": vector.standard_normal((6, 2)),
        "big_X.npy": big.standard_normal((n, n)) * n**-0.25,
        "big_W.npy": big.standard_normal((n, n)) * n**-0.25,
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every model file of MODEL_FILES (and abs_<v>.py for SUBGRADIENTS)
    and the input arrays of _arrays()."""
    directory = tmp_path_factory.mktemp("verdicts")
    models = dict(MODEL_FILES)
    for k, value in enumerate(SUBGRADIENTS):
        models[f"abs_sub{k}.py"] = ("abs", {"at_kink": value})
    for filename, (kind, values) in models.items():
        source = textwrap.dedent(SOURCES[kind]).lstrip("\n")
        (directory / filename).write_text(source.format(**values), encoding="utf-8")
    for filename, array in _arrays().items():
        np.save(directory / filename, array)
    return directory


@pytest.fixture(autouse=True)
def in_files(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in `files`, so that a model file or an array is named by its file name."""
    monkeypatch.chdir(files)


def wide_table(*args: str) -> Result:
    """`gradcheck ARGS...` with the table on a terminal wide enough that no line wraps."""
    return gradcheck(*args, columns=1000)


def last_line(result: Result) -> str:
    return result.stdout.rstrip().splitlines()[-1]


def entries_where(document: Document, predicate: Callable[[Document], bool]) -> set[Any]:
    return {(c["wrt"], tuple(c["index"])) for c in document["checks"] if predicate(c)}


def failed_entries(document: Document) -> set[Any]:
    return entries_where(document, lambda c: not c["passed"] and c["reason"] != "inconclusive")


KINK_INPUTS = ("--x", "kink_X.npy", "--w", "kink_W.npy")
FAST_INPUTS = ("--x", "fast_X.npy", "--w", "fast_W.npy")
VECTOR_INPUTS = ("--x", "vector_X.npy", "--w", "vector_W.npy")


# --- kinks are judged, not waved through -------------------------------------------------------


def test_a_gradient_outside_a_kinks_one_sided_slopes_fails() -> None:
    """sum(|X @ W|) at an exact zero of X @ W, with a backward that says 100 there (the
    one-sided slopes are -1 and 1): every entry the kink touches fails as kink-mismatch, the
    rest pass, exit 1, and the table ends FAILED and explains the reason."""
    code, document = gradcheck_json("run", "--model", "abs_100.py", *KINK_INPUTS)
    assert code == 1
    assert document["verdict"] == "failed"
    assert document["passed"] is False
    assert failed_entries(document) == AT_KINK
    assert {c["reason"] for c in document["checks"] if not c["passed"]} == {"kink-mismatch"}
    table = wide_table("run", "--model", "abs_100.py", *KINK_INPUTS)
    assert table.exit_code == 1
    assert last_line(table).startswith("FAILED: 5 of 12 entries disagree")
    assert "kink-mismatch: " in table.stdout


def test_fast_mode_fails_a_gradient_outside_a_kinks_slopes() -> None:
    """The same wrong subgradient in fast mode: a direction through the kink fails as
    kink-mismatch (not waved through as a kink), and bisection names the same five entries."""
    code, document = gradcheck_json("run", "--mode", "fast", "--model", "abs_100.py", *KINK_INPUTS)
    assert code == 1
    assert document["verdict"] == "failed"
    top = [d for d in document["directions"] if d["depth"] == 0]
    assert not top[0]["passed"]
    assert top[0]["reason"] == "kink-mismatch"
    assert failed_entries(document) == AT_KINK


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("k", range(len(SUBGRADIENTS)), ids=[str(v) for v in SUBGRADIENTS])
def test_a_subgradient_between_the_slopes_passes(k: int, mode: str) -> None:
    """sum(|X @ W|) with any value in [-1, 1] at the kink (0 as np.sign gives, 0.5, and the
    one-sided slopes themselves) is a correct subgradient: exit 0, nothing fails."""
    code, document = gradcheck_json(
        "run", "--mode", mode, "--model", f"abs_sub{k}.py", *KINK_INPUTS
    )
    assert code == 0, [(c["wrt"], c["index"], c["reason"]) for c in document["checks"]]
    assert document["verdict"] == "passed"
    assert all(s["failed"] == 0 for s in document["summary"].values())


def relu_sum(X: Matrix, W: Matrix) -> float:
    return float(np.sum(np.maximum(X @ W, 0.0)))


def one_sided_slopes(name: str, index: tuple[int, int]) -> tuple[float, float]:
    """relu-sum's slopes to the right and to the left of KINK_X, KINK_W along one entry. relu
    is piecewise linear and no other kink lies within h, so these are exact to rounding."""
    h = 2.0**-20
    slopes = []
    for sign in (1.0, -1.0):
        inputs = {"X": KINK_X.copy(), "W": KINK_W.copy()}
        inputs[name][index] += sign * h
        slopes.append(sign * (relu_sum(inputs["X"], inputs["W"]) - relu_sum(KINK_X, KINK_W)) / h)
    return slopes[0], slopes[1]


def test_relu_sum_at_an_exact_kink_passes_as_a_kink_between_the_slopes() -> None:
    """The built-in relu-sum with an entry of X @ W exactly 0: its gradient (relu'(0) = 0) lies
    between the one-sided slopes, computed here independently, so the entries the kink
    touches pass with reason kink, and the run passes."""
    code, document = gradcheck_json("run", "--model", "relu-sum", *KINK_INPUTS)
    assert code == 0
    assert document["verdict"] == "passed"
    assert entries_where(document, lambda c: c["reason"] == "kink") == AT_KINK
    for check in document["checks"]:
        key = (check["wrt"], tuple(check["index"]))
        if key not in AT_KINK:
            continue
        assert check["passed"]
        right, left = one_sided_slopes(*key)
        assert right != left, key  # a real kink along this entry
        slack = 1e-9
        assert min(right, left) - slack <= check["analytic"] <= max(right, left) + slack, key


# --- a noisy forward is caught before any verdict -----------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("run",), ("run", "--mode", "fast"), ("perturb",), ("sweep",)],
    ids=["run", "fast", "perturb", "sweep"],
)
@pytest.mark.parametrize("model", ["dropout.py", "noisy_flipped.py"])
def test_a_forward_that_is_not_deterministic_stops_every_command(
    model: str, command: tuple[str, ...]
) -> None:
    """Dropout left on (a fresh mask per call) or additive noise of 1e-6, each with a wrong
    gradient: no verdict at all, but exit 2 and one line saying forward is not deterministic,
    by how much, and what to do (--nondet-tol)."""
    result = gradcheck(*command, "--model", model)
    assert result.exit_code == 2, (result.stdout[-300:], result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "forward is not deterministic" in lines[0]
    assert re.search(r"differ by [0-9.e+-]+", lines[0]), lines[0]
    assert "--nondet-tol" in lines[0]


def test_nondet_tol_lets_a_noisy_forward_run_and_a_sign_flip_still_fails() -> None:
    """With --nondet-tol 1e-5 a forward with 1e-6 noise is checked; a sign-flipped gradient
    (|g| up to 0.33 on the seed) is far beyond what that noise can explain, so it fails."""
    code, document = gradcheck_json("run", "--model", "noisy_flipped.py", "--nondet-tol", "1e-5")
    assert document["settings"]["nondet_tol"] == 1e-5
    assert (code, document["verdict"]) == (1, "failed"), [
        (c["wrt"], c["index"], c["analytic"], c["numerical"], c["tolerance"], c["reason"])
        for c in document["checks"]
    ]


def test_nondet_tol_never_passes_an_entry_on_an_absurd_tolerance() -> None:
    """With --nondet-tol 1e-5 and a correct gradient, an entry either passes with a tolerance
    below the size of its input's gradient, or it is inconclusive: never "ok step-too-large"
    with a tolerance that would let any value through. The verdict and exit code agree."""
    code, document = gradcheck_json("run", "--model", "noisy_correct.py", "--nondet-tol", "1e-5")
    assert code == EXIT[document["verdict"]]
    assert document["verdict"] != "failed"
    scale = {
        name: max(abs(c["analytic"]) for c in document["checks"] if c["wrt"] == name)
        for name in document["summary"]
    }
    for check in document["checks"]:
        if check["passed"]:
            assert check["tolerance"] < scale[check["wrt"]], check
        else:
            assert check["reason"] == "inconclusive", check


# --- a forward that computes in float32 ---------------------------------------------------------


def test_a_float32_forward_passes_with_steps_for_its_precision() -> None:
    """forward casts X and W to float32 inside; with a correct backward on the seed it passes
    (the steps follow float32, where a float64 step would not move f at all), and the settings
    say which precision forward was found to compute in."""
    code, document = gradcheck_json("run", "--model", "float32.py")
    assert code == 0, [(c["index"], c["numerical"], c["reason"]) for c in document["checks"]]
    assert document["verdict"] == "passed"
    assert document["settings"]["forward_eps"] == FLOAT32_EPS
    assert all(s["failed"] == 0 and s["inconclusive"] == 0 for s in document["summary"].values())


def test_a_float32_forward_with_a_ten_percent_wrong_dx_fails_in_x() -> None:
    """The same forward with dX 10% too large: exit 1, with failed entries in X and none in W
    (whose gradient is right)."""
    code, document = gradcheck_json("run", "--model", "float32_wrong.py")
    assert code == 1
    assert document["verdict"] == "failed"
    assert document["settings"]["forward_eps"] == FLOAT32_EPS
    assert document["summary"]["X"]["failed"] > 0
    assert document["summary"]["W"]["failed"] == 0
    assert {name for name, _ in failed_entries(document)} == {"X"}


# --- fast mode: the report and the exit code agree ----------------------------------------------


@pytest.mark.parametrize(
    ("model", "verdict", "wrong"),
    [
        ("tanh.py", "passed", set()),
        ("tanh_one_wrong.py", "failed", {("W", (3, 5))}),
        ("tanh_spread.py", "failed", set()),
    ],
    ids=["correct", "one-entry-wrong", "spread-too-thin"],
)
def test_fast_mode_report_and_exit_code_agree(model: str, verdict: str, wrong: set[Any]) -> None:
    """Fast mode at 40x30x20 (1800 entries): a correct gradient, one wrong entry, and an
    error spread too thin for any entry to fail alone. The exit code, the JSON's verdict and
    passed, the summary and the table's last line agree in each; the wrong entry is named;
    entries checked one by one are counted as such."""
    args = ("run", "--mode", "fast", "--model", model, *FAST_INPUTS)
    code, document = gradcheck_json(*args)
    assert code == EXIT[verdict]
    assert document["verdict"] == verdict
    assert document["passed"] is (verdict == "passed")
    assert failed_entries(document) == wrong
    assert sum(s["failed"] for s in document["summary"].values()) == len(wrong)
    assert {k: s["entries"] for k, s in document["summary"].items()} == {"X": 1200, "W": 600}
    one_by_one = sum(s["checked_one_by_one"] for s in document["summary"].values())
    assert one_by_one == len(document["checks"]) < 1800
    top = [d for d in document["directions"] if d["depth"] == 0]
    assert all(d["passed"] for d in top) is (verdict == "passed")

    table = wide_table(*args)
    assert table.exit_code == code
    final = last_line(table)
    assert final.startswith(verdict.upper()), final
    if verdict == "passed":
        detectable = document["fast"]["detectable_error"]
        assert detectable > 0
        assert final.startswith("PASSED: 4 random directions over 1800 entries agree")
        assert f"An error of size {detectable:.2g} or more" in final
    else:
        assert document["fast"]["detectable_error"] is None
        title = re.search(r"Worst (\d+) of (\d+) entries checked one by one", table.stdout)
        assert title is not None, table.stdout
        assert int(title.group(2)) == one_by_one
        if wrong:
            noun = "wrong entry" if len(wrong) == 1 else "wrong entries"
            assert f"{len(wrong)} {noun} found" in final
        else:
            assert "no single entry was found wrong" in final or "block" in final


def test_fast_mode_names_one_entry_off_by_one_in_a_thousand_at_64_cubed() -> None:
    """Fast mode's target, through the command line on a model file (the black-box path): at
    64x64x64 (8192 entries) with dW[3,5] 1e-3 too large, on at least 9 of 10 seeds fast mode
    exits 1 and names W[3,5] alone; on every seed the summary counts the failures it names, and
    the table ends FAILED."""
    args: tuple[str, ...] = ("run", "--mode", "fast", "--model", "tanh_one_in_a_thousand.py")
    args += ("--x", "big_X.npy", "--w", "big_W.npy")
    named = 0
    for seed in range(10):
        code, document = gradcheck_json(*args, "--seed", str(seed))
        assert (code, document["verdict"]) == (1, "failed"), seed
        found = failed_entries(document)
        assert sum(s["failed"] for s in document["summary"].values()) == len(found)
        named += found == {("W", (3, 5))}
    assert named >= 9
    table = wide_table(*args, "--seed", "0")
    assert table.exit_code == 1
    assert last_line(table).startswith("FAILED: 1 of 1 random direction disagrees; 1 wrong")


# --- vector-valued models -----------------------------------------------------------------------


@pytest.mark.parametrize("cotangents", [1, 2, 3])
def test_a_vector_model_labels_its_contracted_value_and_counts_each_entry_once(
    cotangents: int,
) -> None:
    """forward returns tanh(X @ W), 5x2, with a 30-entry X and a 12-entry W: the table prints
    <forward, v1> = ... with the output's shape (no unlabelled f(X, W) = number), the summary
    counts 30 and 12 entries whatever --cotangents, and the JSON's settings say how many
    cotangents and output_shape is the forward's shape."""
    args: tuple[str, ...] = ("run", "--model", str(FIXTURES / "dense_tanh_vector.py"))
    args += VECTOR_INPUTS
    args += ("--cotangents", str(cotangents))
    code, document = gradcheck_json(*args)
    assert code == 0
    assert document["settings"]["cotangents"] == cotangents
    assert document["output_shape"] == [5, 2]
    assert {k: s["entries"] for k, s in document["summary"].items()} == {"X": 30, "W": 12}
    table = wide_table(*args)
    assert table.exit_code == 0
    value = [line for line in table.stdout.splitlines() if line.startswith("<forward, v1> = ")]
    assert len(value) == 1, table.stdout
    assert "5x2" in value[0]
    assert re.search(r"^f\(X, W\) = [-\d]", table.stdout, re.MULTILINE) is None
    assert re.search(r"^X +30 ", table.stdout, re.MULTILINE), table.stdout
    assert last_line(table) == "PASSED: all 42 entries agree."


def test_a_wrong_vector_model_counts_each_failing_entry_once() -> None:
    """The buggy vector model through 3 cotangents: each of the 42 entries counts once (it
    fails if any cotangent fails it), in the summary and in the final line."""
    args: tuple[str, ...] = ("run", "--model", str(FIXTURES / "dense_tanh_vector_bug.py"))
    args += VECTOR_INPUTS
    args += ("--cotangents", "3")
    code, document = gradcheck_json(*args)
    assert code == 1
    summary = document["summary"]
    assert {k: s["entries"] for k, s in summary.items()} == {"X": 30, "W": 12}
    failed = sum(s["failed"] for s in summary.values())
    assert 0 < failed <= 42
    assert failed == len(failed_entries(document))
    table = wide_table(*args)
    assert last_line(table) == f"FAILED: {failed} of 42 entries disagree."


# --- sweeps, perturb in float32, what cannot be verified ------------------------------------------


def test_sweep_at_a_relu_kink_passes_as_a_kink_as_run_does() -> None:
    """sweep along X[0,0], which moves the exact zero of X @ W across relu's kink: the
    residuals fall like delta on one side, but the gradient lies between the one-sided slopes,
    so it passes as a kink (exit 0), as `run` passes the same entry."""
    args = ("--model", "relu-sum", *KINK_INPUTS)
    code, document = gradcheck_json("sweep", *args, "--entry", "0,0", "--wrt", "X")
    assert (code, document["reason"], document["verdict"]) == (0, "kink", "passed"), [
        (r["delta"], r["residual"], r["residual_opposite"]) for r in document["rows"]
    ]
    run_code, run = gradcheck_json("run", *args, "--entries", "X[0,0]")
    assert run_code == 0
    assert [(c["reason"], c["passed"]) for c in run["checks"]] == [("kink", True)]


def test_perturb_in_float32_steps_by_a_float32_delta() -> None:
    """perturb --dtype float32 without --delta steps by 1e-2, where float32's round-off does not
    swamp the difference, and passes on the seed."""
    code, document = gradcheck_json("perturb", "--dtype", "float32")
    assert code == 0
    assert document["verdict"] == "passed"
    assert document["settings"]["delta"] == 1e-2
    assert [p["reason"] for p in document["perturbations"]] == ["ok"]


def test_an_unverifiable_run_is_inconclusive_and_exits_4() -> None:
    """A model file whose gradient (about 1e-20) is hidden under the black box's noise floor:
    nothing can fail and nothing can be vouched for, so every entry is inconclusive, the run
    exits 4, and the table's last line starts with INCONCLUSIVE."""
    code, document = gradcheck_json("run", "--model", "tiny.py")
    assert code == 4
    assert document["verdict"] == "inconclusive"
    assert document["passed"] is False
    assert {k: (s["inconclusive"], s["failed"]) for k, s in document["summary"].items()} == {
        "X": (9, 0),
        "W": (6, 0),
    }
    table = wide_table("run", "--model", "tiny.py")
    assert table.exit_code == 4
    assert last_line(table).startswith("INCONCLUSIVE")


@pytest.mark.parametrize(
    "command",
    [("run",), ("run", "--mode", "fast"), ("perturb",), ("sweep",)],
    ids=["run", "fast", "perturb", "sweep"],
)
def test_a_gradient_below_the_noise_floor_never_passes(command: tuple[str, ...]) -> None:
    """The same hidden gradient, but -5 times the true one: no mode can see it, so none may
    say PASSED (exit 0); it is inconclusive (or failed)."""
    code, document = gradcheck_json(*command, "--model", "tiny_wrong.py")
    assert document["verdict"] != "passed", document.get("reason")
    assert code == EXIT[document["verdict"]]


VERDICT_RUNS = [
    ("passed", ("run",)),
    ("passed", ("run", "--mode", "fast")),
    ("passed", ("perturb",)),
    ("passed", ("sweep",)),
    ("passed", ("run", "--dtype", "float32")),
    ("passed", ("perturb", "--dtype", "float32")),
    ("failed", ("run", "--model", str(FIXTURES / "dense_tanh_bug.py"))),
    ("failed", ("run", "--mode", "fast", "--model", str(FIXTURES / "dense_tanh_bug.py"))),
    ("failed", ("perturb", "--model", str(FIXTURES / "dense_tanh_bug.py"))),
    ("failed", ("sweep", "--model", str(FIXTURES / "dense_tanh_bug.py"))),
    ("failed", ("run", "--model", str(FIXTURES / "dense_tanh_vector_bug.py"))),
    ("inconclusive", ("run", "--model", "tiny.py")),
    ("inconclusive", ("perturb", "--model", "tiny.py")),
    ("failed", ("run", "--model", "abs_100.py", *KINK_INPUTS)),
    ("passed", ("run", "--model", "relu-sum", *KINK_INPUTS)),
    ("passed", ("run", "--model", "float32.py")),
    ("failed", ("run", "--model", "float32_wrong.py")),
]


@pytest.mark.parametrize(
    ("verdict", "args"),
    VERDICT_RUNS,
    ids=[" ".join(Path(a).name if "/" in a else a for a in args) for _, args in VERDICT_RUNS],
)
def test_the_verdict_the_json_the_table_and_the_exit_code_agree(
    verdict: str, args: tuple[str, ...]
) -> None:
    """For runs of every command and outcome: the JSON's verdict is the expected one, passed
    is verdict == "passed", the exit code is 0, 1 or 4 accordingly, and the table run exits
    the same and ends with a line starting PASSED, FAILED or INCONCLUSIVE to match."""
    code, document = gradcheck_json(*args)
    assert document["verdict"] == verdict
    assert document["passed"] is (verdict == "passed")
    assert code == EXIT[verdict]
    table = wide_table(*args)
    assert table.exit_code == code
    assert last_line(table).startswith(verdict.upper()), last_line(table)


JUMPING = """
import numpy as np


def forward(x):
    return float(np.floor(np.sum(x)))


def backward(x):
    return np.ones_like(x)


def example_inputs():
    return {"x": np.array(AT)}
"""


@pytest.mark.parametrize(
    ("at", "verdict"), [("[1.0, 1.0]", "inconclusive"), ("[0.3, 0.4]", "failed")]
)
def test_a_jump_within_the_step_is_no_kink(tmp_path: Path, at: str, verdict: str) -> None:
    """floor(sum(x)) with a gradient of ones: at an integer sum f jumps within every step, one
    one-sided slope is J / h, and "between the slopes" would pass anything: inconclusive, never
    passed. Away from the jump f is flat, and the ones fail."""
    path = tmp_path / "jumping.py"
    path.write_text(JUMPING.replace("AT", at))
    code, document = gradcheck_json("run", "--model", str(path))
    assert document["verdict"] == verdict
    assert code == {"inconclusive": 4, "failed": 1}[verdict]
    assert not any(c["passed"] for c in document["checks"])
    assert not any(c["reason"] == "kink" for c in document["checks"])


def test_a_jump_is_no_kink_in_fast_mode_or_the_taylor_test(tmp_path: Path) -> None:
    """The same jump along random directions (fast mode) and along x[0] (sweep): inconclusive,
    never passed as a kink; the sweep says that f jumps."""
    path = tmp_path / "jumping.py"
    path.write_text(JUMPING.replace("AT", "[1.0, 1.0]"))
    code, document = gradcheck_json("run", "--model", str(path), "--mode", "fast")
    assert (code, document["verdict"]) == (4, "inconclusive")
    assert not any(d["reason"] == "kink" for d in document["directions"])
    result = gradcheck("sweep", "--model", str(path))
    assert result.exit_code == 4
    assert "f jumps at x along v" in result.stdout
