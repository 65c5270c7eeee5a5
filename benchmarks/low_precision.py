"""Low precision's targets (correct layers pass in float32 and float16, a 1% error in one term
fails), and what the check costs against a float64 one.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/low_precision.py

For softmax, layer norm and attention (fixtures/models/low_precision.py) and their twins with one
term of the backward off by 1% (low_precision_bug.py), in float32 and float16: the verdict, the
entries failed and inconclusive per input, whether the same code's float64 check came first and
how it went, the forward calls and the time, beside a plain float64 run of the same layer. The
float16-only kernel softmax_half is checked against softmax_forward as its named reference.
"""

from __future__ import annotations

import time
from pathlib import Path

from gradcheck_cli import session
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings
from gradcheck_cli.subject.options import InputOptions, load_subject, reference_loader

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def check(spec: str, dtype: str, reference: str | None = None) -> tuple[str, str, str, int, float]:
    options = InputOptions(model_spec=spec, dtype=dtype, reference_model=reference)
    started = time.perf_counter()
    _, report = session.run(
        lambda: load_subject(options),
        CheckSettings(jobs=1),
        naming=COMMAND_LINE,
        reference=reference_loader(options),
    )
    seconds = time.perf_counter() - started
    counts = " ".join(f"{n}:{s.failed}/{s.inconclusive}" for n, s in report.summary.items())
    first = report.float64_check["verdict"] if report.float64_check else "-"
    return report.verdict, counts, first, report.forward_calls or 0, seconds


def main() -> None:
    print(
        f"{'layer':28s} {'dtype':8s} {'verdict':13s} {'failed/inconclusive':30s} "
        f"{'float64 first':13s} {'calls':>6s} {'time':>7s}"
    )
    for layer in ("softmax", "layernorm", "attention"):
        for stem in ("low_precision", "low_precision_bug"):
            spec = f"{MODELS / stem}.py:{layer}"
            for dtype in ("float64", "float32", "float16"):
                verdict, counts, first, calls, seconds = check(spec, dtype)
                name = f"{stem.replace('low_precision', 'lp')}:{layer}"
                print(
                    f"{name:28s} {dtype:8s} {verdict:13s} {counts:30s} {first:13s} "
                    f"{calls:6d} {seconds * 1e3:6.0f}ms"
                )
    reference = f"{MODELS / 'low_precision'}.py:softmax_forward"
    for stem in ("low_precision", "low_precision_bug"):
        for dtype in ("float32", "float16"):
            verdict, counts, first, calls, seconds = check(
                f"{MODELS / stem}.py:softmax_half", dtype, reference
            )
            name = f"{stem.replace('low_precision', 'lp')}:softmax_half"
            print(
                f"{name:28s} {dtype:8s} {verdict:13s} {counts:30s} {first:13s} "
                f"{calls:6d} {seconds * 1e3:6.0f}ms"
            )


if __name__ == "__main__":
    main()
