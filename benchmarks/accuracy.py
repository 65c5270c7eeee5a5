"""Accuracy benchmark: how close each finite-difference method gets to the closed-form gradient.

Run: .venv/bin/python benchmarks/accuracy.py

For f = sum(sigmoid(X @ W)) (the seed's model) on the seed's matrices and on seeded random
64 x 64 x 64 inputs (X ~ N(0, 1), W ~ N(0, 1) / 8, so that X @ W is O(1)), it runs `run_check`
over every entry of X and W with each method at its default steps, in float64 and in float32,
and prints max |numerical - exact| / max |exact|, where "exact" is the closed-form gradient
computed in float64 from the float64 inputs. Alongside: the entries that failed or passed with
a doubt (a reason other than "ok"). Then each method's float64 target, PASS or MISS.
A correct gradient is checked, so "failed" should read 0 everywhere.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.models import builtin_model
from gradcheck_cli.numerics.schemes import METHOD_NAMES
from gradcheck_cli.settings import CheckSettings
from gradcheck_cli.subject.seed import seed_matrices

Matrix = NDArray[np.float64]

MODEL = builtin_model("sigmoid-sum")
SIZE = 64
SEED = 0
DTYPES = ("float64", "float32")
TARGETS = {"central": 1e-9, "five-point": 1e-11, "complex-step": 1e-14}
"""The float64 accuracy each method is held to: max |numerical - exact| / max |exact|."""


def inputs() -> dict[str, tuple[Matrix, Matrix]]:
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((SIZE, SIZE))
    W = rng.standard_normal((SIZE, SIZE)) / np.sqrt(SIZE)
    return {"seed 3x3x2": seed_matrices(), f"random {SIZE}^3 (seed {SEED})": (X, W)}


def relative_error(X: Matrix, W: Matrix, method: str, dtype: str) -> tuple[float, int, int]:
    """(max |numerical - exact| / max |exact|, entries failed, entries passed with a doubt)."""
    exact = MODEL.gradient({"X": X, "W": W})
    inputs = {"X": X.astype(dtype), "W": W.astype(dtype)}
    report = run_check(Target.of(MODEL, inputs), CheckSettings(method=method, details="all"))
    errors = [abs(c.numerical - float(np.asarray(exact[c.wrt])[c.index])) for c in report.checks]
    scale = max(float(np.max(np.abs(np.asarray(g)))) for g in exact.values())
    failed = sum(not c.passed for c in report.checks)
    doubtful = sum(c.passed and c.reason != "ok" for c in report.checks)
    return max(errors) / scale, failed, doubtful


def main() -> None:
    started = time.perf_counter()
    results: dict[tuple[str, str, str], float] = {}
    header = f"{'inputs':<22} {'method':<13}" + "".join(
        f" {dtype + ' rel. error':>19} {'failed/doubtful':>15}" for dtype in DTYPES
    )
    print(f"max |numerical - exact| / max |exact|, {MODEL.formula}, default steps")
    print(header)
    print("-" * len(header))
    for label, (X, W) in inputs().items():
        for method in METHOD_NAMES:
            row = f"{label:<22} {method:<13}"
            for dtype in DTYPES:
                error, failed, doubtful = relative_error(X, W, method, dtype)
                results[(label, method, dtype)] = error
                row += f" {error:>19.2e} {f'{failed}/{doubtful}':>15}"
            print(row)
    print()
    print("float64 targets (issue 3)")
    for label in inputs():
        for method, target in TARGETS.items():
            error = results[(label, method, "float64")]
            verdict = "PASS" if error <= target else "MISS"
            print(f"  {label:<22} {method:<13} {error:9.2e} <= {target:.0e}  {verdict}")
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
