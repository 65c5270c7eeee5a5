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
