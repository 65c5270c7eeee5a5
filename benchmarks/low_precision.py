"""Low precision's targets (correct layers pass in float32 and float16, a 1% error in one term
fails), and what the check costs against a float64 one.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/low_precision.py [--torch [--cases N]]

For softmax, layer norm and attention (fixtures/models/low_precision.py) and their twins with one
term of the backward off by 1% (low_precision_bug.py), in float32 and float16: the verdict, the
entries failed and inconclusive per input, whether the same code's float64 check came first and
how it went, the forward calls and the time, beside a plain float64 run of the same layer. The
float16-only kernel softmax_half is checked against softmax_forward as its named reference.

--torch: the same layers as torch.autograd.Functions (torch_low_precision.py and its 1% twins)
in float64, float32, float16 and bfloat16, against their own float64 forward (checked first)
and against the numpy layers' forwards as named references (--reference-model, no float64
check first: what the low precision alone resolves). --cases N then checks each correct
Function and each twin at N random input points in bfloat16, against its own float64 forward
(checked first) and against the named reference, and counts the verdicts and entries.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from gradcheck_cli import session
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings
from gradcheck_cli.subject.options import InputOptions, load_subject, reference_loader

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


REFERENCES = {
    "Softmax": "softmax_forward",
    "LayerNorm": "layernorm_forward",
    "Attention": "attention_forward",
}
"""The numpy layer whose float64 forward is each torch Function's named reference."""

SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "Softmax": {"x": (4, 6)},
    "LayerNorm": {"x": (4, 6), "gamma": (6,), "beta": (6,)},
    "Attention": {"q": (5, 4), "k": (5, 4), "v": (5, 4)},
}


def check(
    spec: str, dtype: str, reference: str | None = None, inputs: str | None = None
) -> tuple[str, str, str, int, float]:
    options = InputOptions(
        model_spec=spec, dtype=dtype, reference_model=reference, inputs_archive=inputs
    )
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


def line(name: str, dtype: str, found: tuple[str, str, str, int, float]) -> None:
    verdict, counts, first, calls, seconds = found
    print(
        f"{name:34s} {dtype:8s} {verdict:13s} {counts:36s} {first:13s} {calls:6d} "
        f"{seconds * 1e3:6.0f}ms"
    )


def torch_layers(cases: int) -> None:
    """The torch Functions (see the module docstring)."""
    import torch  # noqa: F401  (the fixtures' framework, imported before they are)

    numpy_layers = MODELS / "low_precision.py"
    print(
        f"{'layer':34s} {'dtype':8s} {'verdict':13s} {'failed/inconclusive':36s} "
        f"{'float64 first':13s} {'calls':>6s} {'time':>7s}"
    )
    for layer, forward in REFERENCES.items():
        for stem in ("torch_low_precision", "torch_low_precision_bug"):
            spec = f"{MODELS / stem}.py:{layer}"
            name = f"{stem.replace('torch_low_precision', 'tlp')}:{layer}"
            for dtype in ("float64", "float32", "float16", "bfloat16"):
                line(name, dtype, check(spec, dtype))
            for dtype in ("float32", "bfloat16"):
                line(f"{name} vs ref", dtype, check(spec, dtype, f"{numpy_layers}:{forward}"))
    if not cases:
        return
    print(f"\nbfloat16 at {cases} random input points each:")
    rng = np.random.default_rng(23)
    with tempfile.TemporaryDirectory() as folder:
        for layer, forward in REFERENCES.items():
            points = []
            for case in range(cases):
                arrays = {n: rng.standard_normal(s) for n, s in SHAPES[layer].items()}
                if "gamma" in arrays:
                    arrays["gamma"] = 1.0 + 0.5 * arrays["gamma"]
                points.append(Path(folder) / f"{layer}{case}.npz")
                np.savez(points[-1], **arrays)  # type: ignore[arg-type]
            for against in ("own forward", "named reference"):
                reference = f"{numpy_layers}:{forward}" if against == "named reference" else None
                for stem in ("torch_low_precision", "torch_low_precision_bug"):
                    verdicts: Counter[str] = Counter()
                    entries: Counter[str] = Counter()
                    for archive in points:
                        options = InputOptions(
                            model_spec=f"{MODELS / stem}.py:{layer}",
                            dtype="bfloat16",
                            reference_model=reference,
                            inputs_archive=str(archive),
                        )
                        _, report = session.run(
                            functools.partial(load_subject, options),
                            CheckSettings(jobs=1),
                            naming=COMMAND_LINE,
                            reference=reference_loader(options),
                        )
                        verdicts[report.verdict] += 1
                        for summary in report.summary.values():
                            entries["entries"] += summary.entries
                            entries["failed"] += summary.failed
                            entries["inconclusive"] += summary.inconclusive
                            entries["doubtful"] += summary.doubtful
                    print(
                        f"  {stem}:{layer} against its {against}: verdicts {dict(verdicts)}; "
                        f"entries {dict(entries)}"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="the torch Functions")
    parser.add_argument("--cases", type=int, default=0, help="random points in bfloat16")
    args = parser.parse_args()
    if args.torch:
        torch_layers(args.cases)
        return
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
