"""Correct gradients of functions with extreme or cancelling values pass (or are inconclusive),
never fail; wrong ones still fail; and a verdict never depends on how many processes ran.

Each case runs the real command line on a model file written here: outputs of 1e200 (whose
step must not grow with |f|), a sum that cancels to ~1e-14 (whose rounding is far above
eps |f|), and a forward whose values differ in worker processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck_process

HUGE_LAYER = """
import numpy as np

SCALE = {scale}


def layer_forward(x, w):
    return np.tanh(x @ w) * 1e200, (x, w)


def layer_backward(dout, cache):
    x, w = cache
    d = dout * (1 - np.tanh(x @ w) ** 2) * 1e200
    return d @ w.T * SCALE, x.T @ d


def example_inputs():
    rng = np.random.default_rng(0)
    return {{"x": rng.standard_normal((3, 4)), "w": rng.standard_normal((4, 2))}}
"""

CANCELLING_SUM = """
import numpy as np


def forward(x):
    return float(np.sum(np.tanh(x)))


def backward(x):
    return 1 - np.tanh(x) ** 2 + {offset}


def example_inputs():
    half = np.linspace(-3, 3, 300)
    return {{"x": np.concatenate([half, -half])}}
"""

NOISY_IN_WORKERS = """
import multiprocessing
import time

import numpy as np

# The value differs in worker processes only: a generator seeded per process, say.
NOISE = 0.0 if multiprocessing.current_process().name == "MainProcess" else 1e-9


def forward(x):
    time.sleep(0.004)  # 300 entries: over 2 s in one process, so --jobs 2 starts workers
    return float(np.sum(np.tanh(x))) + NOISE * np.random.default_rng().standard_normal()


def backward(x):
    return 1 - np.tanh(x) ** 2


def example_inputs():
    return {"x": np.linspace(-1, 2, 300)}
"""


def report_in_a_process(directory: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """`gradcheck ARGS --format json` in a process of its own: exit code, document, stderr."""
    done = gradcheck_process(*args, "--format", "json", cwd=directory)
    document = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, document, done.stderr


def failing_entries(document: dict[str, Any]) -> dict[str, int]:
    return {name: part["failed"] for name, part in document["summary"].items()}


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_outputs_of_1e200_keep_a_step_on_their_own_scale(tmp_path: Path, mode: str) -> None:
    """A correct layer whose outputs are ~1e200 passes: its steps follow how fast f varies
    (the gradient is ~1e200 too), not |f| alone, which made them ~1e55; the same layer with dx
    doubled fails in x alone, diagnosed as a factor of 2 without a numpy overflow warning."""
    (tmp_path / "huge.py").write_text(HUGE_LAYER.format(scale=1.0), encoding="utf-8")
    (tmp_path / "huge_bug.py").write_text(HUGE_LAYER.format(scale=2.0), encoding="utf-8")
    code, document, stderr = report_in_a_process(
        tmp_path, "run", "--model", "huge.py:layer", "--mode", mode
    )
    assert (code, stderr) == (0, "")
    assert document["verdict"] == "passed"
    if mode == "full":
        steps = [check["step"] for check in document["checks"]]
        assert max(steps) < 1e-3  # a textbook step for |x| ~ 1, not one grown with |f|
    code, document, stderr = report_in_a_process(
        tmp_path, "run", "--model", "huge_bug.py:layer", "--mode", mode
    )
    assert (code, stderr) == (1, "")  # no numpy warning from products of 1e200 values
    assert document["verdict"] == "failed"
    if mode == "full":
        assert failing_entries(document) == {"x": 12, "w": 0}
        (diagnosis,) = document["diagnosis"]
        assert diagnosis["kind"] == "scale"
        assert diagnosis["parameters"]["factor"] == pytest.approx(2.0, rel=1e-9)


def test_a_sum_that_cancels_to_zero_is_judged_with_its_own_rounding(tmp_path: Path) -> None:
    """sum(tanh(x)) over symmetric points is ~1e-14 while each term is ~1: its values round by
    eps times the terms, not eps |f|. Measured (a few calls of f, only once a check failed), a
    correct gradient passes every entry, with the measured noise behind each tolerance."""
    (tmp_path / "cancel.py").write_text(CANCELLING_SUM.format(offset=0.0), encoding="utf-8")
    code, document, stderr = report_in_a_process(tmp_path, "run", "--model", "cancel.py")
    assert (code, stderr) == (0, "")
    assert failing_entries(document) == {"x": 0}
    assert document["summary"]["x"]["entries"] == 600


def test_a_cancelling_sum_with_a_gradient_off_by_1e_6_still_fails(tmp_path: Path) -> None:
    """The measured noise (~1e-14 per value) widens tolerances to ~1e-9, never to an error of
    1e-6 in the gradient: every entry fails."""
    (tmp_path / "cancel_bug.py").write_text(CANCELLING_SUM.format(offset=1e-6), encoding="utf-8")
    code, document, _ = report_in_a_process(tmp_path, "run", "--model", "cancel_bug.py")
    assert code == 1
    assert failing_entries(document) == {"x": 600}


@pytest.mark.slow
def test_a_forward_that_differs_in_worker_processes_gets_the_same_verdict_for_any_jobs(
    tmp_path: Path,
) -> None:
    """Worker processes check that they compute f as gradcheck's own process does; where they
    do not (noise only in workers, which would pass kinks and doubts off as verdicts), the
    check runs in one process: --jobs 2 gives --jobs 1's verdict, entry for entry."""
    (tmp_path / "noisy.py").write_text(NOISY_IN_WORKERS, encoding="utf-8")
    verdicts = {}
    for jobs in ("1", "2"):
        code, document, stderr = report_in_a_process(
            tmp_path, "run", "--model", "noisy.py", "--jobs", jobs
        )
        assert stderr == ""
        reasons = tuple(sorted({check["reason"] for check in document["checks"]}))
        verdicts[jobs] = (code, document["verdict"], failing_entries(document), reasons)
        assert document["settings"]["jobs"] == 1
    assert verdicts["1"] == verdicts["2"] == (0, "passed", {"x": 0}, ("ok",))


def test_rounding_noise_is_measured_where_terms_cancel() -> None:
    """The noise estimate sees eps times the terms of a cancelling sum (~1e-14), far above
    eps |f| (~0), and about eps |f| for a sum of terms of one sign; 0 for a constant f."""
    from gradcheck_cli.numerics.noise import rounding_noise

    half = np.linspace(-3, 3, 300)
    symmetric = {"x": np.concatenate([half, -half])}

    def tanh_sum(inputs: Any) -> float:
        return float(np.sum(np.tanh(inputs["x"])))

    def shifted_sum(inputs: Any) -> float:
        return float(np.sum(np.tanh(inputs["x"] + 5)))

    cancelling = rounding_noise(tanh_sum, symmetric, ["x"], f0=tanh_sum(symmetric))
    assert cancelling is not None
    assert 1e-15 < cancelling < 1e-12
    one_sign = rounding_noise(shifted_sum, symmetric, ["x"], f0=shifted_sum(symmetric))
    eps_f = np.finfo(np.float64).eps * abs(shifted_sum(symmetric))
    assert one_sign is not None
    assert one_sign < eps_f
    assert rounding_noise(lambda inputs: 1.0, symmetric, ["x"], f0=1.0) == 0.0


def test_float32_with_an_entry_of_1e30_passes_on_the_closed_form_where_it_reaches(
    tmp_path: Path,
) -> None:
    """X[0, 2] = 1e30 in float32: the closed form still covers every entry whose shifts it
    can take (all of X, and W's rows 0 and 1); W's row 2, whose shifts carry 1e30, is
    differenced the structured way with a step lengthened until float32's round-off is below
    1% of the gradient. A correct gradient passes; one 25% off in W fails in W only (five of
    its six entries: the smallest, 1e-3 among gradients of 5e-3, is judged to its input's
    scale in float32 and passes as doubtful)."""
    X = np.array([[0.1, 0.2, 1e30], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]], dtype=np.float32)
    np.save(tmp_path / "x.npy", X)
    code, document, stderr = report_in_a_process(
        tmp_path, "run", "--x", "x.npy", "--dtype", "float32"
    )
    assert (code, stderr) == (0, "")
    assert document["verdict"] == "passed"
    assert failing_entries(document) == {"X": 0, "W": 0}

    from gradcheck_cli.checks.full import run_check
    from gradcheck_cli.checks.target import Target
    from gradcheck_cli.numerics.models import Gradients, Inputs, builtin_model

    class WrongInW:
        name, formula, complex_analytic = "sigmoid-sum", "25% off in W", False
        right = builtin_model("sigmoid-sum")

        def value(self, inputs: Inputs) -> float | complex:
            return self.right.value(inputs)

        def gradient(self, inputs: Inputs) -> Gradients:
            gradient = self.right.gradient(inputs)
            return {"X": gradient["X"], "W": 1.25 * np.asarray(gradient["W"])}

    W = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    report = run_check(Target.of(WrongInW(), {"X": X, "W": W}))
    assert report.verdict == "failed"
    assert {name: part.failed for name, part in report.summary.items()} == {"X": 0, "W": 5}


def test_a_gradient_below_what_float32_represents_is_not_called_wrong(tmp_path: Path) -> None:
    """tanh-sum in float32 at inputs of mixed magnitudes (1e-8 to 1e8, found by fuzzing):
    every tanh saturates, and the true gradient of two entries is about 6e-202, which float32
    holds as 0. The built-in gradient is right: no entry fails (the rounding estimate is at
    least float32's smallest subnormal); what float32 cannot resolve is inconclusive."""
    X = np.array(
        [
            [
                4.7711416765987299e07,
                -6.9798163903445371e01,
                -2.4564836419063433e-05,
                9.0379822391473630e04,
            ],
            [
                -1.1517205312165522e-01,
                -2.5071371151337803e03,
                1.4542659082029661e-03,
                3.4932005379764556e-05,
            ],
            [
                -1.8527243920691170e07,
                -1.6291256083700290e-07,
                -8.5001037736626090e-08,
                3.3457577248048445e04,
            ],
        ]
    )
    W = np.array(
        [
            [-3.9511377123999601e01, 2.3749485377226196e02],
            [9.2325157040518371e-02, -4.8293928497138910e07],
            [-2.3324225957595897e-06, -1.2817879826440645e02],
            [-1.9851716485182988e-05, 2.2789823744708191e-03],
        ]
    )
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "w.npy", W)
    code, document, stderr = report_in_a_process(
        tmp_path, "run", "--model", "tanh-sum", "--x", "x.npy", "--w", "w.npy", "--dtype", "float32"
    )
    assert (code, stderr) == (4, "")
    assert failing_entries(document) == {"X": 0, "W": 0}
    tiny = [c for c in document["checks"] if c["analytic"] == 0 and c["numerical"] != 0]
    assert tiny
    assert all(abs(c["numerical"]) < 1e-190 and c["reason"] != "mismatch" for c in tiny)


def test_a_step_that_would_carry_tanh_across_its_bend_is_kept_on_the_slope(
    tmp_path: Path,
) -> None:
    """tanh-sum at inputs of mixed magnitudes (1e-12 to 1e12, found by fuzzing): X[2, 3]
    touches g = 9.4 through a weight of -4.5e10, so the textbook step (4e-6) moves g by 1.7e5
    and tanh reads +-1 on both sides (the difference was 0 against a gradient of -1238, a
    false FAILED). The step is kept where g moves by its own textbook step: the difference
    finds -1238 there, and no entry fails."""
    X = np.array(
        [
            [
                -6.4572843509123146e-12,
                5.7793637448577224e-06,
                9.1541651050445825e11,
                1.4427258222180816e-03,
            ],
            [
                6.4991068467368424e07,
                4.9559286091555083e08,
                -9.0531183985344832e00,
                8.8288428125090197e07,
            ],
            [
                1.3911282841950767e-07,
                -6.8419182348507737e-11,
                8.2777921387446416e-08,
                -2.0960230741916292e-10,
            ],
        ]
    )
    W = np.array(
        [
            [1.3979781281182410e01, -1.7012555774086077e-05],
            [6.3260101646999390e11, -1.2394414143437605e03],
            [-2.9726195074337597e10, -3.9069824461244559e05],
            [3.6104425725591226e09, -4.4988577093781448e10],
        ]
    )
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "w.npy", W)
    code, document, stderr = report_in_a_process(
        tmp_path, "run", "--model", "tanh-sum", "--x", "x.npy", "--w", "w.npy"
    )
    assert stderr == ""
    assert code in (0, 4)
    assert failing_entries(document) == {"X": 0, "W": 0}
    (entry,) = [c for c in document["checks"] if c["wrt"] == "X" and c["index"] == [2, 3]]
    exact = (1 - np.tanh(X @ W)[2] ** 2) @ W[3]
    assert entry["numerical"] == pytest.approx(exact, rel=1e-3)
    assert entry["step"] * abs(W[3, 1]) < 1.0  # g moved by less than 1, not by 1.7e5


def test_the_closed_form_brackets_of_float32_inputs_do_not_overflow() -> None:
    """sigmoid-sum checked wholly in float32 (as --mode fast and --order 2 run it) at inputs of
    mixed magnitudes (found by fuzzing): the closed form's cosh and sinh, taken in float32,
    overflowed past 89 (inside the brackets' reach) and inf / inf came out as a NaN
    difference, a false FAILED (non-finite) with a numpy warning. In float64 every bracket is
    finite and no entry fails."""
    import warnings

    from gradcheck_cli.checks.full import run_check
    from gradcheck_cli.checks.target import Target
    from gradcheck_cli.numerics.models import builtin_model

    X = np.array(
        [
            [
                1.1202810416089304e-07,
                -1.2016693901691084e-05,
                -7.0278339090020586e02,
                -1.0629168126286304e00,
            ],
            [
                -6.0883086031942302e00,
                1.7808545630883252e-01,
                -2.4522617716972689e-04,
                -6.5097647864782737e-01,
            ],
            [
                -5.7429896900284039e06,
                1.6746299314966908e-05,
                -5.2935337433035365e03,
                -1.0424971299568343e-04,
            ],
        ],
        dtype=np.float32,
    )
    W = np.array(
        [
            [-6.9525475769712207e-03, -6.5073290867236933e-06],
            [-1.0000501101395983e-08, -9.2648871792426222e-08],
            [2.7190884258635782e-05, -4.8134718980256633e-02],
            [4.2181663209516955e01, 4.9715278686026335e07],
        ],
        dtype=np.float32,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = run_check(Target.of(builtin_model("sigmoid-sum"), {"X": X, "W": W}))
    assert {name: part.failed for name, part in report.summary.items()} == {"X": 0, "W": 0}
    assert all(np.isfinite(check.numerical) for check in report.checks)
