"""Several input points: how often `--points 5` catches a backward wrong only for
negative inputs whose examples are all positive, how often it flags a correct layer, and how
long one command takes over a ten-layer file.

Run: .venv/bin/python benchmarks/points.py [--seeds 20] [--points 5]

- caught: fixtures/models/negative_branch.py:elu (ELU whose backward uses alpha where
  alpha * exp(x) belongs, for x < 0; examples uniform in [0.5, 2]) at --points P, for each seed:
  does the run fail? Target: at least 19 of 20 seeds.
- false alarms: every layer of fixtures/models/cs231n_layers.py (ten correct layers) and the
  correct ELU (negative_branch_fixed.py), at --points P for each seed: any layer at any point
  that does not pass (failed, inconclusive or an error) is a false alarm. Target: none.
- time: `gradcheck run --model fixtures/models/cs231n_layers.py` as a program (start-up
  included), the fastest of three, at one point and at P points.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from gradcheck_cli import check_file

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"


def caught(seeds: int, points: int) -> list[int]:
    """The seeds at which --points catches the negative-branch bug."""
    path = MODELS / "negative_branch.py"
    return [s for s in range(seeds) if check_file(path, points=points, seed=s).verdict == "failed"]


def false_alarms(seeds: int, points: int) -> tuple[list[str], int]:
    """Every (seed, layer, point) at which a correct layer did not pass, and the checks run."""
    alarms: list[str] = []
    checks = 0
    for seed in range(seeds):
        for name in ("cs231n_layers.py", "negative_branch_fixed.py"):
            report = check_file(MODELS / name, points=points, seed=seed)
            for layer in report.layers:
                if layer.error is not None:
                    alarms.append(f"seed {seed} {layer.model}: {layer.error}")
                for point in layer.points:
                    checks += 1
                    if point.verdict != "passed":
                        alarms.append(
                            f"seed {seed} {layer.model} point {point.point}: {point.verdict}"
                        )
    return alarms, checks


def command_seconds(*args: str) -> float:
    """The fastest of three runs of `gradcheck run --model cs231n_layers.py ARGS`."""
    program = Path(sys.executable).parent / "gradcheck"
    command = [str(program), "run", "--model", str(MODELS / "cs231n_layers.py"), *args]
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, check=False)
        timings.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)}: exit {done.returncode}")
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--points", type=int, default=5)
    arguments = parser.parse_args()
    seeds, points = arguments.seeds, arguments.points

    started = time.perf_counter()
    found = caught(seeds, points)
    print(
        f"negative-branch bug caught with --points {points}: {len(found)} of {seeds} seeds "
        f"({time.perf_counter() - started:.1f} s)"
    )
    at_one = caught(seeds, 1)
    print(f"  the same at --points 1 (the examples only): {len(at_one)} of {seeds} seeds")
    started = time.perf_counter()
    alarms, checks = false_alarms(seeds, points)
    print(
        f"false alarms on correct layers (11 layers x {points} points x {seeds} seeds = {checks} "
        f"checks): {len(alarms)} ({time.perf_counter() - started:.1f} s)"
    )
    for alarm in alarms[:20]:
        print(f"  {alarm}")
    print(f"ten-layer file, one command: {command_seconds():.2f} s")
    several = command_seconds("--points", str(points))
    print(f"ten-layer file, one command, --points {points}: {several:.2f} s")


if __name__ == "__main__":
    main()
