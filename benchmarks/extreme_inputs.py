"""Verdicts on correct gradients at inputs of extreme, mixed magnitudes: how often a right
gradient is called wrong (the count that must stay 0), passed, or left inconclusive.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/extreme_inputs.py [--cases 40]
        [--low -12 --high 12] [--dtype float64] [--seed 0] [--models sigmoid-sum,...]

Each case draws X (3x4) and W (4x2) with entries of random sign and magnitude 10^U(low, high)
and runs `gradcheck run` on a built-in model (whose gradient is right) in this process, as
the command line does (a low precision against the float64 forward at the same inputs). Every
"failed" is a false alarm: the case's arrays are saved in the temporary directory printed, to
replay with `gradcheck run --model M --x X.npy --w W.npy`. Figures are counts, not times.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from gradcheck_cli import session
from gradcheck_cli.errors import InputError
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings
from gradcheck_cli.subject.options import InputOptions, load_subject, reference_loader

MODELS = "sigmoid-sum,tanh-sum,softplus-sum,relu-sum,identity-sum,sigmoid-mean,tanh-mean"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--low", type=float, default=-12.0)
    parser.add_argument("--high", type=float, default=12.0)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=MODELS)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="gradcheck-extreme-"))
    print(
        f"{args.cases} cases per model, entries of magnitude 1e{args.low:g}..1e{args.high:g}, "
        f"{args.dtype}; false alarms saved in {folder}"
    )
    print(f"{'model':14s} {'passed':>7s} {'inconclusive':>13s} {'failed':>7s} {'error':>6s}")
    total: Counter[str] = Counter()
    for model in args.models.split(","):
        verdicts: Counter[str] = Counter()
        for case in range(args.cases):
            arrays = {
                "x": rng.choice([-1, 1], (3, 4)) * 10 ** rng.uniform(args.low, args.high, (3, 4)),
                "w": rng.choice([-1, 1], (4, 2)) * 10 ** rng.uniform(args.low, args.high, (4, 2)),
            }
            paths = {n: folder / f"{model}-{case}-{n}.npy" for n in arrays}
            for name, array in arrays.items():
                np.save(paths[name], array)
            options = InputOptions(
                model_spec=model,
                x_path=str(paths["x"]),
                w_path=str(paths["w"]),
                dtype=args.dtype,
            )
            try:
                _, report = session.run(
                    functools.partial(load_subject, options),
                    CheckSettings(jobs=1),
                    naming=COMMAND_LINE,
                    reference=reference_loader(options),  # float32: against float64, as the CLI
                )
                verdict = report.verdict
            except InputError:  # a refusal (exit 2) is counted, not fatal to the count
                verdict = "error"
            verdicts[verdict] += 1
            if verdict != "failed":
                for path in paths.values():
                    path.unlink()
        total.update(verdicts)
        print(
            f"{model:14s} {verdicts['passed']:7d} {verdicts['inconclusive']:13d} "
            f"{verdicts['failed']:7d} {verdicts['error']:6d}"
        )
    print(
        f"{'all':14s} {total['passed']:7d} {total['inconclusive']:13d} {total['failed']:7d} "
        f"{total['error']:6d}"
    )


if __name__ == "__main__":
    main()
