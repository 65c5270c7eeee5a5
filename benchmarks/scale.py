"""Scale benchmark: full gradient checks of sum(sigmoid(X @ W)) from 64^3 to 1024^3.

Run: .venv/bin/python benchmarks/scale.py [--sizes 64,128,256,512,1024] [--budget 60]

In one process it times, for n = k = m:
- ours: `run_check` over every entry of X and W (central differences, default steps, error
  estimates, verdicts and the report), and its peak traced memory;
- floor: the analytic gradient alone;
- naive: the CS231n loop, two whole forward passes per entry;
- torch: torch.autograd.gradcheck on the same function (when torch is installed).
Baselines that would run longer than --budget seconds are timed on a prefix of the entries and
extrapolated linearly (every entry costs the same two forward passes); the table says so.
It also times start-up (`gradcheck --version` against `python -c "import click"`) and, with
--csv, loading a 5000 x 5000 CSV.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.numerics.models import builtin_model

MODEL = builtin_model("sigmoid-sum")
Matrix = NDArray[np.float64]


def inputs(n: int, seed: int = 0) -> tuple[Matrix, Matrix]:
    """Entries ~ N(0, 1) * n^(-1/4), so X @ W ~ N(0, 1): sigmoid neither linear nor saturated."""
    rng = np.random.default_rng(seed)
    scale = n**-0.25
    return rng.standard_normal((n, n)) * scale, rng.standard_normal((n, n)) * scale


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def ours(X: Matrix, W: Matrix) -> tuple[float, float, bool]:
    """Best of up to 3 untraced runs (tracemalloc slows every allocation), then one traced run
    for the peak memory."""
    seconds, report = timed(lambda: run_check(Target.of(MODEL, {"X": X, "W": W})))
    for _ in range(2 if seconds < 2 else 0):
        seconds = min(seconds, timed(lambda: run_check(Target.of(MODEL, {"X": X, "W": W})))[0])
    tracemalloc.start()
    run_check(Target.of(MODEL, {"X": X, "W": W}))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20, report.passed


def naive(X: Matrix, W: Matrix, budget: float) -> tuple[float, str]:
    """CS231n's eval_numerical_gradient: x[i] += h; f(); x[i] -= 2h; f(); x[i] += h."""
    h = 1e-5
    total = X.size + W.size
    start = time.perf_counter()
    done = 0
    for matrix in (X, W):
        flat = matrix.reshape(-1)
        for index in range(flat.size):
            old = flat[index]
            flat[index] = old + h
            plus = MODEL.value({"X": X, "W": W})
            flat[index] = old - h
            minus = MODEL.value({"X": X, "W": W})
            flat[index] = old
            _ = (plus - minus) / (2 * h)
            done += 1
            elapsed = time.perf_counter() - start
            if elapsed > budget / 10 and done < total and elapsed / done * total > budget:
                return elapsed / done * total, f"extrapolated from {done} entries"
    return time.perf_counter() - start, "measured"


def torch_gradcheck(X: Matrix, W: Matrix, budget: float) -> tuple[float, str] | None:
    try:
        import torch
    except ImportError:
        return None
    x = torch.tensor(X, requires_grad=True)
    w = torch.tensor(W, requires_grad=True)

    def f(a: Any, b: Any) -> Any:
        return torch.sigmoid(a @ b).sum()

    total = X.size + W.size
    verdicts: list[bool] = []
    # A first probe on a few entries of X (the rest held constant) prices one entry.
    probe = min(64, X.size)

    def priced(count: int) -> float:
        flat = x.detach().reshape(-1)
        head = flat[:count].clone().requires_grad_(True)
        tail = flat[count:]

        def g(first: Any) -> Any:
            return f(torch.cat([first, tail]).reshape(x.shape), w.detach())

        # torch's fixed tolerances (atol 1e-5) fail this correct gradient once f is large enough
        # for its eps = 1e-6 differences to round by more: time it all the same, note the verdict.
        seconds, ok = timed(lambda: torch.autograd.gradcheck(g, (head,), raise_exception=False))
        verdicts.append(bool(ok))
        return float(seconds)

    priced(min(8, X.size))  # warm-up: torch's first call pays for its own set-up
    per_entry = priced(probe) / probe
    if per_entry * total <= budget:
        seconds, ok = timed(lambda: torch.autograd.gradcheck(f, (x, w), raise_exception=False))
        return seconds, f"measured, torch verdict {'pass' if ok else 'FAIL'}"
    count = max(probe, min(X.size, int(budget / 4 / per_entry)))
    seconds = priced(count) / count * total
    verdict = "pass" if all(verdicts) else "FAIL"
    return seconds, f"extrapolated from {count} entries, torch verdict {verdict}"


def startup(runs: int = 15) -> tuple[float, float, str]:
    gradcheck = [sys.executable, "-m", "gradcheck_cli", "--version"]
    script = Path(sys.executable).with_name("gradcheck")
    if script.exists():
        gradcheck = [str(script), "--version"]
    click_only = [sys.executable, "-c", "import click"]

    def median(command: list[str]) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, gradcheck_cli.cli; "
            "print(sorted(m for m in ('numpy', 'rich') if m in sys.modules))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return median(gradcheck), median(click_only), probe


def csv_load(size: int = 5000) -> tuple[float, float, float]:
    from gradcheck_cli.subject.arrays.loading import load_array

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "big.csv")
        data = np.random.default_rng(0).standard_normal((size, size))
        np.savetxt(path, data, delimiter=",", fmt="%.17g")
        megabytes = path.stat().st_size / 2**20
        del data
        tracemalloc.start()
        seconds, _ = timed(lambda: load_array(str(path), option="--x"))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return seconds, peak / 2**20, megabytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256,512,1024")
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds a baseline may run before it is extrapolated",
    )
    parser.add_argument("--csv", action="store_true", help="also time a 5000x5000 CSV load")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    print(
        "model: sum(sigmoid(X @ W)), X and W n x n, entries ~ N(0,1) n^(-1/4); "
        "check of every entry of X and W, central differences\n"
    )
    header = (
        f"{'n':>5} {'entries':>9} {'ours s':>8} {'peak MiB':>9} {'floor s':>9} "
        f"{'ours/floor':>10} {'naive s':>10} {'naive/ours':>10} {'torch s':>10} "
        f"{'torch/ours':>10}  notes"
    )
    print(header)
    print("-" * len(header))
    warm_X, warm_W = inputs(16)
    run_check(
        Target.of(MODEL, {"X": warm_X, "W": warm_W})
    )  # warm-up: imports, thread pool, first-call costs
    for n in sizes:
        X, W = inputs(n)
        seconds, peak, passed = ours(X, W)
        floor, _ = timed(partial(MODEL.gradient, {"X": X, "W": W}))
        naive_seconds, naive_note = naive(X.copy(), W.copy(), args.budget)
        torch_result = torch_gradcheck(X, W, args.budget)
        torch_text, torch_ratio, torch_note = "-", "-", "torch not installed"
        if torch_result is not None:
            torch_text = f"{torch_result[0]:10.3g}"
            torch_ratio = f"{torch_result[0] / seconds:10.0f}"
            torch_note = f"torch {torch_result[1]}"
        print(
            f"{n:>5} {X.size + W.size:>9} {seconds:8.3f} {peak:9.0f} {floor:9.4f} "
            f"{seconds / floor:10.0f} {naive_seconds:10.3g} {naive_seconds / seconds:10.0f} "
            f"{torch_text:>10} {torch_ratio:>10}  passed={passed}; naive {naive_note}; "
            f"{torch_note}",
            flush=True,
        )

    ours_start, click_start, imported = startup()
    print(
        f"\nstart-up: gradcheck --version {ours_start * 1e3:.1f} ms, python -c 'import click' "
        f"{click_start * 1e3:.1f} ms, ratio {ours_start / click_start:.2f} "
        f"(target <= 1.5); heavy modules imported by the CLI at start: {imported}"
    )
    if args.csv:
        seconds, peak, megabytes = csv_load()
        print(
            f"5000x5000 CSV ({megabytes:.0f} MiB): loaded in {seconds:.1f} s, "
            f"peak traced memory {peak:.0f} MiB"
        )


if __name__ == "__main__":
    main()
