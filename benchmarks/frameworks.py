"""PyTorch and JAX custom gradients: gradcheck against torch.autograd.gradcheck
(default and fast_mode) and jax.test_util.check_grads on the same functions, in one process.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/frameworks.py [--sizes 1e3,1e4,1e5]
         [--cases function,operator,jax] [--budget 120] [--quick]

OMP_NUM_THREADS=1 for a shared machine (see benchmarks/user_models.py): every tool then runs
PyTorch on one thread, and the ratios compare like with like. The cases are the fixtures'
functions (fixtures/models/), at growing sizes:
- function: `SoftplusAffine`, a torch.autograd.Function, y = softplus(x @ w + b), x (n, 64),
  w (64, 64), b (64) (an array output: gradcheck checks it through 2 random cotangents);
- operator: `scaled_tanh(x, 2.0)`, a custom operator with register_autograd, x (n, 100);
- jax: `lse(x, b)`, a jax.custom_vjp log-sum-exp, x (n, 16), b (16).
The tools, on the same inputs:
- gradcheck: `gradcheck run --model FILE:NAME --inputs FILE.npz --format json`, called in this
  process (cli.main; the framework is imported already, as it is for the baselines), a full
  check of every entry; `gradcheck 1by1` is the same with batched evaluation switched off (every
  point one forward call; up to --one-by-one entries), to measure what vmap brings;
  `gradcheck fast` is `--mode fast`;
- torch: torch.autograd.gradcheck(f, inputs) (float64, its defaults), `torch fast` with
  fast_mode=True; jax: jax.test_util.check_grads(f, args, order=1, modes=["rev"]).
Forward calls: gradcheck's `forward_calls` (one per point evaluated, batched or not); for the
baselines, calls of the Python function (a wrapper counts them). A baseline that would run
longer than --budget seconds (torch's default mode builds the dense Jacobian, entries x outputs)
is not run; the notes say why.

Then every tool on every fixture twin, correct and buggy: whether it caught the planted bug and
whether it raised a false alarm on the correct one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    entry: str
    arrays: dict[str, Any]
    """The checked inputs (numpy)."""
    params: dict[str, Any]
    framework: str

    @property
    def entries(self) -> int:
        return sum(int(a.size) for a in self.arrays.values())

    @property
    def outputs(self) -> int:
        if self.name == "function":
            return int(self.arrays["x"].shape[0] * self.arrays["w"].shape[1])
        if self.name == "operator":
            return int(self.arrays["x"].size)
        return int(self.arrays["x"].shape[0])


def make_case(name: str, entries: int) -> Case:
    rng = np.random.default_rng(0)
    if name == "function":
        d = 64
        n = max(1, round((entries - d * d - d) / d))
        arrays = {
            "x": rng.standard_normal((n, d)) / math.sqrt(d),
            "w": rng.standard_normal((d, d)),
            "b": rng.standard_normal(d),
        }
        return Case(name, "torch_softplus_affine", "SoftplusAffine", arrays, {}, "torch")
    if name == "operator":
        arrays = {"x": rng.standard_normal((max(1, entries // 100), 100))}
        return Case(name, "torch_custom_op", "scaled_tanh", arrays, {"scale": 2.0}, "torch")
    columns = 16
    arrays = {
        "x": 3 * rng.standard_normal((max(1, round((entries - columns) / columns)), columns)),
        "b": rng.standard_normal(columns),
    }
    return Case(name, "jax_logsumexp", "lse", arrays, {}, "jax")


def load(file: str) -> Any:
    """The fixture module, imported as gradcheck imports it (a fresh module of its own)."""
    from gradcheck_cli.subject.files import _import

    return _import(MODELS / f"{file}.py")


@dataclass(frozen=True)
class Timing:
    tool: str
    seconds: float | None
    calls: int | None
    verdict: str
    note: str = ""


@contextlib.contextmanager
def unbatched() -> Iterator[None]:
    """gradcheck with batched evaluation switched off: every point one forward call."""
    from gradcheck_cli.numerics import evaluation

    original = evaluation.InProcess._in_batches

    def one_by_one(self: Any, model: Any, batched: Any, *rest: Any) -> Any:
        return self.one_at_a_time(model, *rest)

    evaluation.InProcess._in_batches = one_by_one  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        evaluation.InProcess._in_batches = original  # type: ignore[method-assign]


def gradcheck_cli(
    file: str, entry: str, inputs: Path | None, *extra: str
) -> tuple[float, int, dict[str, Any]]:
    """`gradcheck run` in this process: seconds, exit code, the JSON document."""
    from gradcheck_cli.cli import cli

    args = ["run", "--model", f"{MODELS / file}.py:{entry}", "--format", "json"]
    args += ["--details", "worst", *extra]
    if inputs is not None:
        args += ["--inputs", str(inputs)]
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli.main(args, standalone_mode=False)
    seconds = time.perf_counter() - started
    return seconds, int(code or 0), json.loads(out.getvalue())


def run_gradcheck(case: Case, inputs: Path, label: str, *extra: str) -> Timing:
    seconds, _, document = gradcheck_cli(case.file, case.entry, inputs, *extra)
    note = f"jobs={document['settings']['jobs']}"
    return Timing(label, seconds, document["forward_calls"], document["verdict"], note)


def counted(function: Callable[..., Any], calls: list[int]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        calls[0] += 1
        return function(*args)

    return wrapper


def torch_callable(case: Case, module: Any) -> Callable[..., Any]:
    if case.name == "function":
        return module.SoftplusAffine.apply  # type: ignore[no-any-return]
    op = module.scaled_tanh
    return lambda x: op(x, case.params["scale"])


def run_torch(case: Case, fast: bool, budget: float) -> Timing:
    import torch

    label = "torch fast" if fast else "torch"
    if not fast:
        jacobian = case.entries * case.outputs * 8
        # Measured here: ~45 us per forward call and ~150 us per backward call at d = 64.
        guess = 2 * case.entries * 45e-6 + case.outputs * 150e-6 + jacobian / 2e8
        if jacobian > 4 << 30 or guess > budget:
            return Timing(
                label,
                None,
                None,
                "-",
                f"not run: dense Jacobian {case.entries}x{case.outputs} "
                f"({jacobian / 2**30:.1f} GiB), ~{guess:.0f} s estimated",
            )
    module = load(case.file)
    calls = [0]
    function = counted(torch_callable(case, module), calls)
    tensors = tuple(torch.tensor(a, requires_grad=True) for a in case.arrays.values())
    started = time.perf_counter()
    passed = torch.autograd.gradcheck(function, tensors, fast_mode=fast, raise_exception=False)
    seconds = time.perf_counter() - started
    return Timing(label, seconds, calls[0], "passed" if passed else "failed")


def run_jax(case: Case) -> Timing:
    import jax
    from jax import test_util

    check_grads: Any = test_util.check_grads  # untyped in JAX
    module = load(case.file)
    calls = [0]
    function = counted(module.lse, calls)
    with jax.enable_x64(True):
        args = tuple(jax.numpy.asarray(a) for a in case.arrays.values())
        started = time.perf_counter()
        try:
            check_grads(function, args, order=1, modes=["rev"])
            verdict = "passed"
        except AssertionError:
            verdict = "failed"
        seconds = time.perf_counter() - started
    return Timing("jax check_grads", seconds, calls[0], verdict)


def save_inputs(case: Case, directory: Path) -> Path:
    path = directory / f"{case.name}-{case.entries}.npz"
    np.savez(path, **case.arrays)
    return path


def print_table(rows: list[tuple[Case, Timing, float | None]]) -> None:
    header = (
        f"{'case':<9} {'entries':>7} {'outputs':>7} {'tool':<16} {'seconds':>8} "
        f"{'calls':>7} {'verdict':<8} {'x gradcheck':>11}  notes"
    )
    print(header)
    print("-" * len(header))
    for case, timing, reference in rows:
        seconds = f"{timing.seconds:.3g}" if timing.seconds is not None else "-"
        ratio = (
            f"{timing.seconds / reference:.2f}" if timing.seconds is not None and reference else "-"
        )
        calls = str(timing.calls) if timing.calls is not None else "-"
        print(
            f"{case.name:<9} {case.entries:>7} {case.outputs:>7} {timing.tool:<16} "
            f"{seconds:>8} {calls:>7} {timing.verdict:<8} {ratio:>11}  {timing.note}"
        )
    sys.stdout.flush()


def bugs_caught() -> None:
    """Every tool on every fixture twin: exit code or verdict, caught or not."""
    import torch

    print()
    print("fixture twins (the fixtures' own example inputs):")
    print(f"{'fixture':<28} {'tool':<16} {'verdict':<8} {'right?':<6} notes")
    print("-" * 78)
    for stem, entry, framework in (
        ("torch_softplus_affine", "SoftplusAffine", "torch"),
        ("torch_custom_op", "scaled_tanh", "torch"),
        ("jax_logsumexp", "lse", "jax"),
    ):
        for file in (stem, f"{stem}_bug"):
            buggy = file.endswith("_bug")
            _, code, document = gradcheck_cli(file, entry, None)
            failed = {
                name: summary["failed"]
                for name, summary in document["summary"].items()
                if summary["failed"]
            }
            kinds = ", ".join(d["kind"] for d in document["diagnosis"])
            results = [("gradcheck", code == 1, f"exit {code}; failed {failed} {kinds}")]
            module = load(file)
            examples = module.example_inputs()
            if framework == "torch":
                if entry == "scaled_tanh":
                    scale = examples["scale"]
                    op = module.scaled_tanh
                    function: Callable[..., Any] = lambda x, op=op, s=scale: op(x, s)  # noqa: E731
                    tensors: tuple[Any, ...] = (examples["x"].requires_grad_(),)
                else:
                    function = module.SoftplusAffine.apply
                    tensors = tuple(examples[k].requires_grad_() for k in ("x", "w", "b"))
                for fast in (False, True):
                    ok = torch.autograd.gradcheck(
                        function, tensors, fast_mode=fast, raise_exception=False
                    )
                    results.append(("torch fast" if fast else "torch", not ok, ""))
            else:
                import jax
                from jax import test_util

                check_grads: Any = test_util.check_grads
                with jax.enable_x64(True):
                    examples = module.example_inputs()
                    try:
                        check_grads(module.lse, (examples["x"], examples["b"]), 1, ["rev"])
                        caught = False
                    except AssertionError:
                        caught = True
                results.append(("jax check_grads", caught, ""))
            for tool, flagged, note in results:
                right = flagged == buggy
                verdict = "failed" if flagged else "passed"
                print(f"{file:<28} {tool:<16} {verdict:<8} {'yes' if right else 'NO':<6} {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e3,1e4,1e5")
    parser.add_argument("--cases", default="function,operator,jax")
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument(
        "--one-by-one",
        type=int,
        default=20000,
        help="run `gradcheck 1by1` up to this many entries (above, it takes many minutes)",
    )
    parser.add_argument("--quick", action="store_true", help="sizes 1e3 only, no 1by1 runs")
    options = parser.parse_args()
    import jax
    import torch

    sizes = [1000] if options.quick else [int(float(s)) for s in options.sizes.split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), jax {jax.__version__}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    rows: list[tuple[Case, Timing, float | None]] = []
    with tempfile.TemporaryDirectory() as scratch:
        # One untimed run of every tool first: what a process pays once (importing torch.func
        # and jax.test_util, PyTorch's first vmap) is no tool's cost per check.
        for name in ("function", "operator", "jax"):
            warm = make_case(name, 300)
            inputs = save_inputs(warm, Path(scratch))
            run_gradcheck(warm, inputs, "warm-up")
            run_gradcheck(warm, inputs, "warm-up", "--mode", "fast")
            if warm.framework == "torch":
                run_torch(warm, fast=False, budget=options.budget)
                run_torch(warm, fast=True, budget=options.budget)
            else:
                run_jax(warm)
        for name in options.cases.split(","):
            for size in sizes:
                if name == "function" and size > 20000:
                    continue  # a full check costs entries x a 64x64 product per point: minutes
                case = make_case(name, size)
                inputs = save_inputs(case, Path(scratch))
                ours = run_gradcheck(case, inputs, "gradcheck")
                timings = [ours]
                if not options.quick and case.entries <= options.one_by_one:
                    with unbatched():
                        timings.append(run_gradcheck(case, inputs, "gradcheck 1by1", "--jobs", "1"))
                timings.append(run_gradcheck(case, inputs, "gradcheck fast", "--mode", "fast"))
                if case.framework == "torch":
                    timings.append(run_torch(case, fast=False, budget=options.budget))
                    timings.append(run_torch(case, fast=True, budget=options.budget))
                else:
                    timings.append(run_jax(case))
                block = [(case, t, ours.seconds) for t in timings]
                print_table(block)
                rows += block
                print()
    bugs_caught()


if __name__ == "__main__":
    main()
