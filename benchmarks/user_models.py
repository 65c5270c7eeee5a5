"""User-model benchmark: full checks of a model file's own numpy forward/backward.

Run: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/user_models.py
         [--sizes 64,128,256] [--quick] [--csv] [--jobs N] [--budget 60]

The two variables are for a shared machine. There the default threads of OpenBLAS and of
torch's OpenMP, which busy-wait for each other, slowed this forward at 128 from ~170 µs to
6-16 ms from one second to the next, and torch's own work around each call by a few times; at
one thread each it mostly stays within ~10-30%. gradcheck holds OpenBLAS at one thread while it
checks anyway. The preamble prints the setting. With --jobs N, gradcheck's worker processes find
forward and backward by module name: the script runs as this file's module, not as __main__.

The speed of the built-in models comes from their closed-form kernels; a model file has none, so
every checked entry costs whole calls of the user's forward. In one process, for each size n, it
times three tools on the same plain numpy functions, over every entry of every checked input:
- gradcheck: `check_gradients` (with `inputs=` and `jobs=` when this version accepts them);
- torch: torch.autograd.gradcheck on the numpy functions wrapped in a `torch.autograd.Function`
  (forward calls the numpy forward, backward the numpy backward), float64, its defaults;
- naive: the CS231n loop, two whole forward calls per entry (central differences, h = 1e-5),
  judged by CS231n's rule: max |a - n| / max(1e-8, |a| + |n|) <= 1e-4 passes.
The cases:
- sigmoid-sum: f(X, W) = sum(sigmoid(X @ W)), X and W n x n, entries ~ N(0, 1)·n^(-1/4) (so
  X @ W ~ N(0, 1)); X and W are checked.
- mlp: the mean softmax cross-entropy of a 2-layer tanh MLP, batch n, n -> n/2 -> 10, fixed
  integer labels; the data X (n x n) is a constant, the weights W1, b1, W2, b2 are checked.
  n = 256 is a typical course MLP (batch 256, 256 -> 128 -> 10); smaller n scale it down.

For each: wall time, forward calls per checked entry, the verdict, the time against gradcheck's,
the forward's mean time per call, and the overhead: what the tool adds around the user's forward,
(time - calls x forward time) / calls, in µs per call and as a % of the forward time (the
target for gradcheck: under 5 µs per call, 5% of a 100 µs forward). The forward is wrapped to
count its calls and time them, in worker processes too, so "fwd µs" is its mean time inside the
tool's run, under the same load as the tool: on a shared machine a forward timed at another
moment can be off by tens of percent ("alone µs", timed by itself right before and after each
tool, shows by how much). With --jobs N the overhead counts N x the wall time.
A baseline that would run longer than --budget seconds is timed on a prefix of its entries and
extrapolated linearly (every entry costs the same forward calls); the notes say so. gradcheck is
always run in full.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import importlib
import inspect
import mmap
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli import check_gradients as _check_gradients

Array = NDArray[Any]
Matrix = NDArray[np.float64]

NAIVE_STEP = 1e-5
"""CS231n's h for eval_numerical_gradient."""
NAIVE_PASS = 1e-4
"""CS231n: a relative error below 1e-4 is "usually okay"; above 1e-2 the gradient is wrong."""
TARGET_US = 5.0
"""The target: the tool adds under 5% of a 100 µs forward per call."""
CLASSES = 10
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")

check_gradients: Callable[..., Any] = _check_gradients
"""Typed loosely on purpose: the script calls whichever API this version has (`inputs=`,
`jobs=`), found by inspecting the signature at run time."""


# --- counting forward calls and their time, in this process and in any worker process --------

COUNTER_ENV = "GRADCHECK_BENCH_CALL_COUNTER"
"""Path of the shared counter file; workers (forked or spawned) inherit it."""
_SLOTS = 1024
_WIDTH = 3
"""A slot is (pid, calls, nanoseconds spent in forward), int64 each."""
_BYTES = 8 * _WIDTH * _SLOTS
_attached: tuple[int, memoryview | None, int] | None = None
"""(pid, the file's int64 view or None without a counter, this process's slot), set on first
use in each process."""


def record_call(start_ns: int) -> None:
    """One more forward call, begun at start_ns (time.perf_counter_ns, one clock for every
    process). Each process counts in its own slot of a shared file, so worker processes take no
    lock and race no one; the slot is looked up again after a fork."""
    elapsed = time.perf_counter_ns() - start_ns
    global _attached
    pid = os.getpid()
    if _attached is None or _attached[0] != pid:
        _attached = _attach(pid)
    _, view, slot = _attached
    if view is None:  # no counter set up (imported outside this benchmark)
        return
    view[slot + 1] += 1
    view[slot + 2] += elapsed


def _attach(pid: int) -> tuple[int, memoryview | None, int]:
    path = os.environ.get(COUNTER_ENV)
    if not path:
        return pid, None, 0
    with open(path, "r+b") as file:
        view = memoryview(mmap.mmap(file.fileno(), _BYTES)).cast("q")
    for probe in range(_SLOTS):  # probed linearly from the pid's own slot
        slot = _WIDTH * ((pid + probe) % _SLOTS)
        if view[slot] in (0, pid):
            view[slot] = pid
            return pid, view, slot
    raise RuntimeError("call counter full")


class CallCounter:
    """The shared counter file, summed over every process's slot."""

    def __init__(self) -> None:
        descriptor, name = tempfile.mkstemp(prefix="gradcheck-calls-")
        os.write(descriptor, bytes(_BYTES))
        os.close(descriptor)
        self.path = Path(name)
        os.environ[COUNTER_ENV] = name
        with open(name, "r+b") as file:
            self._view = memoryview(mmap.mmap(file.fileno(), _BYTES)).cast("q")

    def reset(self) -> None:
        for slot in range(0, _WIDTH * _SLOTS, _WIDTH):
            self._view[slot + 1] = self._view[slot + 2] = 0

    def read(self) -> tuple[int, float]:
        """(forward calls, seconds spent inside them) since the last reset."""
        return sum(self._view[1::_WIDTH]), sum(self._view[2::_WIDTH]) / 1e9

    def close(self) -> None:
        os.environ.pop(COUNTER_ENV, None)
        self.path.unlink(missing_ok=True)


# --- the model file's functions (module level: check_gradients reads their source file) -------


def _sigmoid(z: Matrix) -> Matrix:
    result: Matrix = 1.0 / (1.0 + np.exp(-z))
    return result


def sigmoid_sum_forward(X: Matrix, W: Matrix) -> float:
    """f(X, W) = sum(sigmoid(X @ W)), as a user writes it in a model file."""
    return float(np.sum(_sigmoid(X @ W)))


def sigmoid_sum_backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
    s = _sigmoid(X @ W)
    G = s * (1.0 - s)
    return G @ W.T, X.T @ G


def counted_sigmoid_sum(X: Matrix, W: Matrix) -> float:
    start = time.perf_counter_ns()
    value = sigmoid_sum_forward(X, W)
    record_call(start)
    return value


@functools.cache
def mlp_data(n: int) -> tuple[Matrix, NDArray[np.intp]]:
    """The MLP's constant data X (n x n, N(0, 1)) and integer labels, the same in every process."""
    rng = np.random.default_rng(12)
    X = rng.standard_normal((n, n))
    labels = rng.integers(0, CLASSES, size=n).astype(np.intp)
    X.flags.writeable = False
    labels.flags.writeable = False
    return X, labels


def _mlp_pass(
    W1: Matrix, b1: Matrix, W2: Matrix, b2: Matrix, labels: Array
) -> tuple[Matrix, Matrix, Matrix, float]:
    """(data, hidden activations, softmax probabilities, loss); the batch is W1's row count."""
    X = mlp_data(W1.shape[0])[0]
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, labels]))
    return X, hidden, exp / total, loss


def mlp_forward(W1: Matrix, b1: Matrix, W2: Matrix, b2: Matrix, labels: Array) -> float:
    """Mean softmax cross-entropy of tanh(X @ W1 + b1) @ W2 + b2 against the labels."""
    return _mlp_pass(W1, b1, W2, b2, labels)[3]


def mlp_backward(
    W1: Matrix, b1: Matrix, W2: Matrix, b2: Matrix, labels: Array
) -> dict[str, Matrix]:
    X, hidden, probabilities, _ = _mlp_pass(W1, b1, W2, b2, labels)
    d_logits = probabilities.copy()
    d_logits[np.arange(len(labels)), labels] -= 1.0
    d_logits /= len(labels)
    d_pre = (d_logits @ W2.T) * (1.0 - hidden**2)
    return {
        "W1": X.T @ d_pre,
        "b1": d_pre.sum(axis=0),
        "W2": hidden.T @ d_logits,
        "b2": d_logits.sum(axis=0),
    }


def counted_mlp(W1: Matrix, b1: Matrix, W2: Matrix, b2: Matrix, labels: Array) -> float:
    start = time.perf_counter_ns()
    value = mlp_forward(W1, b1, W2, b2, labels)
    record_call(start)
    return value


# For a check_gradients that takes only (X, W): the weights packed into the columns of one
# matrix W (n rows: W1's n x n/2, then b1, W2, b2 and zero padding, row-major), X the data.


def _unpack(W: Matrix) -> tuple[Matrix, Matrix, Matrix, Matrix]:
    hidden = W.shape[0] // 2
    rest = W[:, hidden:].ravel()
    b1 = rest[:hidden]
    W2 = rest[hidden : hidden + hidden * CLASSES].reshape(hidden, CLASSES)
    b2 = rest[hidden + hidden * CLASSES : hidden + hidden * CLASSES + CLASSES]
    return W[:, :hidden], b1, W2, b2


def pack(weights: Mapping[str, Matrix]) -> Matrix:
    W1 = weights["W1"]
    rows = W1.shape[0]
    rest = np.concatenate([weights[k].ravel() for k in ("b1", "W2", "b2")])
    columns = -(-rest.size // rows)
    padded = np.zeros(rows * columns)
    padded[: rest.size] = rest
    return np.hstack([W1, padded.reshape(rows, columns)])


def packed_mlp_forward(X: Matrix, W: Matrix) -> float:
    start = time.perf_counter_ns()
    value = mlp_forward(*_unpack(W), mlp_data(W.shape[0])[1])
    record_call(start)
    return value


def packed_mlp_backward(X: Matrix, W: Matrix) -> tuple[Matrix, Matrix]:
    return np.zeros_like(X), pack(mlp_backward(*_unpack(W), mlp_data(W.shape[0])[1]))


# --- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    label: str
    n: int
    inputs: dict[str, Array]
    """In forward's parameter order; the float arrays are checked, integer ones are constants."""
    forward: Callable[..., float]
    """Counted."""
    backward: Callable[..., Any]
    legacy: tuple[Callable[..., float], Callable[..., Any], Matrix, Matrix, str]
    """(forward, backward, X, W, wrt) for a check_gradients without `inputs=`."""
    legacy_note: str = ""

    @property
    def checked(self) -> list[str]:
        return [k for k, v in self.inputs.items() if v.dtype.kind == "f"]

    @property
    def entries(self) -> int:
        return sum(self.inputs[k].size for k in self.checked)

    def forward_call(self, *, named: bool = True) -> Callable[[], object]:
        """The forward call a tool makes at the inputs: by name, or the two-input fallback's."""
        if named:
            return functools.partial(self.forward, **self.inputs)
        forward, _, X, W, _ = self.legacy
        return functools.partial(forward, X, W)

    def gradients(self, arrays: Mapping[str, Array]) -> dict[str, Array]:
        result = self.backward(**arrays)
        return (
            dict(result)
            if isinstance(result, dict)
            else dict(zip(self.checked, result, strict=True))
        )


def sigmoid_case(n: int) -> Case:
    rng = np.random.default_rng(0)
    scale = n**-0.25
    X, W = rng.standard_normal((n, n)) * scale, rng.standard_normal((n, n)) * scale
    return Case(
        label="sigmoid-sum",
        n=n,
        inputs={"X": X, "W": W},
        forward=counted_sigmoid_sum,
        backward=sigmoid_sum_backward,
        legacy=(counted_sigmoid_sum, sigmoid_sum_backward, X, W, "both"),
    )


def mlp_case(n: int) -> Case:
    rng = np.random.default_rng(1)
    hidden = n // 2
    weights = {
        "W1": rng.standard_normal((n, hidden)) / np.sqrt(n),
        "b1": 0.1 * rng.standard_normal(hidden),
        "W2": rng.standard_normal((hidden, CLASSES)) / np.sqrt(hidden),
        "b2": 0.1 * rng.standard_normal(CLASSES),
    }
    X, labels = mlp_data(n)
    packed = pack(weights)
    padding = packed.size - sum(w.size for w in weights.values())
    return Case(
        label="mlp",
        n=n,
        inputs={**weights, "labels": labels},
        forward=counted_mlp,
        backward=mlp_backward,
        legacy=(packed_mlp_forward, packed_mlp_backward, X.copy(), packed, "W"),
        legacy_note=f"weights packed into one W, {padding} padding entries",
    )


# --- the tools --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    tool: str
    seconds: float
    """The whole check; extrapolated when a prefix was timed."""
    calls_per_entry: float
    entries: int
    forward: float
    """Mean seconds of one forward call during the run, timed inside the counted forward."""
    verdict: str
    notes: str
    workers: int = 1
    """Processes the tool ran forward calls in: its wall time is shared out over them."""

    @property
    def overhead(self) -> float:
        """Seconds the tool adds around each forward call: (time - calls x forward) / calls."""
        calls = self.calls_per_entry * self.entries
        return (self.seconds * self.workers - calls * self.forward) / calls


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def forward_seconds(call: Callable[[], object]) -> float:
    """Mean seconds per forward call alone, at the inputs: median of 5 batches of ~0.1 s."""
    call()
    probe, calls = 0.0, 0
    while probe < 0.05:
        probe += timed(call)[0]
        calls += 1
    batch = max(1, int(0.1 / (probe / calls)))
    means = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batch):
            call()
        means.append((time.perf_counter() - start) / batch)
    return statistics.median(means)


def gradcheck_settings(jobs: int | None) -> tuple[bool, dict[str, Any], str]:
    """(takes inputs=, the keyword settings, a note) for the check_gradients installed now."""
    parameters = inspect.signature(check_gradients).parameters
    settings: dict[str, Any] = {}
    note = ""
    if jobs is not None:
        if "jobs" in parameters:
            settings["jobs"] = jobs
            note = f"jobs={jobs}"
        else:
            note = "jobs not supported: serial"
    return "inputs" in parameters, settings, note


def run_gradcheck(case: Case, counter: CallCounter, jobs: int | None) -> Timing:
    """Best of up to 3 runs (one when a run takes 2 s or more), calls and forward time of that
    run."""
    named, settings, note = gradcheck_settings(jobs)
    if named:

        def check() -> Any:
            return check_gradients(case.forward, case.backward, inputs=case.inputs, **settings)

    else:
        forward, backward, X, W, wrt = case.legacy

        def check() -> Any:
            return check_gradients(forward, backward, X, W, wrt=wrt, **settings)

        note = "; ".join(filter(None, [note, "two-input API", case.legacy_note]))
    runs: list[tuple[float, int, float]] = []
    while len(runs) < 3 and (not runs or runs[0][0] < 2):
        counter.reset()
        try:
            seconds, report = timed(check)
        except Exception as error:  # a tree being rewritten may fail: report it, go on
            message = " ".join(str(error).split())[:160]
            note = "; ".join(filter(None, [note, f"{type(error).__name__}: {message}"]))
            nan = float("nan")
            return Timing("gradcheck", nan, nan, 0, nan, "error", note)
        runs.append((seconds, *counter.read()))
    seconds, calls, inside = min(runs)
    entries = sum(summary.entries for summary in report.summary.values())
    failed = sum(summary.failed for summary in report.summary.values())
    verdict = "pass" if report.passed else f"FAIL ({failed})"
    workers = processes(report, settings.get("jobs", 1))
    if workers > 1:
        ran = f"ran on {workers} processes: overhead counts {workers} x the wall time"
    else:
        ran = "ran in one process" if settings.get("jobs", 1) != 1 else ""
    note = ", ".join(filter(None, [note, ran]))
    return Timing(
        "gradcheck", seconds, calls / entries, entries, inside / calls, verdict, note, workers
    )


def processes(report: Any, requested: int | None) -> int:
    """How many processes evaluated the forward calls, as the report's settings say."""
    with contextlib.suppress(Exception):  # older reports have no such setting
        return int(report.to_document()["settings"]["jobs"])
    return requested or 1


def flat_entries(case: Case, arrays: Mapping[str, Array]) -> Iterator[tuple[str, Array, int]]:
    for name in case.checked:
        flat = arrays[name].reshape(-1)  # a view: arrays are fresh, contiguous copies
        for index in range(flat.size):
            yield name, flat, index


def naive(case: Case, counter: CallCounter, budget: float) -> Timing:
    """CS231n's eval_numerical_gradient: x[i] += h; f(); x[i] -= 2h; f(); x[i] += h."""
    arrays = {k: v.copy() for k, v in case.inputs.items()}
    total = case.entries
    counter.reset()
    start = time.perf_counter()
    analytic = {k: g.reshape(-1) for k, g in case.gradients(arrays).items()}
    worst, done, note = 0.0, 0, "measured"
    for name, flat, index in flat_entries(case, arrays):
        old = flat[index]
        flat[index] = old + NAIVE_STEP
        plus = case.forward(**arrays)
        flat[index] = old - NAIVE_STEP
        minus = case.forward(**arrays)
        flat[index] = old
        numerical = (plus - minus) / (2 * NAIVE_STEP)
        exact = float(analytic[name][index])
        worst = max(worst, abs(numerical - exact) / max(1e-8, abs(numerical) + abs(exact)))
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed > budget / 10 and done < total and elapsed / done * total > budget:
            note = f"extrapolated from {done} entries"
            break
    elapsed = time.perf_counter() - start
    calls, inside = counter.read()
    verdict = "pass" if worst <= NAIVE_PASS else "FAIL"
    note = f"{note}; max rel. error {worst:.1e}"
    return Timing(
        "naive", elapsed / done * total, calls / done, total, inside / calls, verdict, note
    )


def torch_gradcheck(case: Case, counter: CallCounter, budget: float) -> Timing | None:
    """torch.autograd.gradcheck on a torch.autograd.Function over the numpy functions."""
    try:
        import torch
    except ImportError:
        return None
    names = case.checked
    constants = {k: v for k, v in case.inputs.items() if k not in names}

    class NumpyModel(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *tensors: Any) -> Any:
            ctx.save_for_backward(*tensors)
            arrays = {k: t.detach().numpy() for k, t in zip(names, tensors, strict=True)}
            return torch.tensor(case.forward(**arrays, **constants), dtype=torch.float64)

        @staticmethod
        def backward(ctx: Any, *grad_outputs: Any) -> Any:
            arrays = {k: t.detach().numpy() for k, t in zip(names, ctx.saved_tensors, strict=True)}
            gradients = case.gradients({**arrays, **constants})
            return tuple(grad_outputs[0] * torch.from_numpy(gradients[k]) for k in names)

    apply: Callable[..., Any] = NumpyModel.apply
    tensors = [torch.tensor(case.inputs[k], requires_grad=True) for k in names]
    total = case.entries

    def run(function: Callable[..., Any], arguments: tuple[Any, ...]) -> tuple[float, bool]:
        counter.reset()
        seconds, ok = timed(
            lambda: torch.autograd.gradcheck(function, arguments, raise_exception=False)
        )
        return float(seconds), bool(ok)

    def priced(count: int) -> tuple[float, bool]:
        """gradcheck over the first `count` entries of the first input, the rest held still."""
        first = tensors[0].detach().reshape(-1)
        head = first[:count].clone().requires_grad_(True)
        tail = first[count:]
        others = [t.detach() for t in tensors[1:]]

        def g(part: Any) -> Any:
            return apply(torch.cat([part, tail]).reshape(tensors[0].shape), *others)

        return run(g, (head,))

    priced(min(8, tensors[0].numel()))  # warm-up: torch's first call pays for its own set-up
    probe = min(64, tensors[0].numel())
    per_entry = priced(probe)[0] / probe
    if per_entry * total <= budget:
        seconds, ok = run(apply, tuple(tensors))
        count, note = total, "measured"
    else:
        count = max(probe, min(tensors[0].numel(), int(budget / 4 / per_entry)))
        seconds, ok = priced(count)
        note = f"extrapolated from {count} entries"
    calls, inside = counter.read()
    verdict = "pass" if ok else "FAIL"
    return Timing(
        "torch", seconds / count * total, calls / count, total, inside / calls, verdict, note
    )


# --- the table --------------------------------------------------------------------------------

COLUMNS = (
    ("case", "<11"),
    ("n", ">4"),
    ("entries", ">8"),
    ("tool", "<9"),
    ("seconds", ">9"),
    ("calls/entry", ">11"),
    ("verdict", "<8"),
    ("fwd µs", ">8"),
    ("alone µs", ">9"),
    ("overhead µs/call", ">16"),
    ("overhead %", ">10"),
    ("tool/gradcheck", ">14"),
    ("notes", ""),
)


def row(case: Case, timing: Timing, alone: tuple[float, float], reference: float) -> list[str]:
    return [
        case.label,
        str(case.n),
        str(timing.entries),
        timing.tool,
        f"{timing.seconds:.3g}",
        f"{timing.calls_per_entry:.2f}",
        timing.verdict,
        f"{timing.forward * 1e6:.1f}",
        "/".join(f"{t * 1e6:.0f}" for t in alone),
        f"{timing.overhead * 1e6:.1f}",
        f"{timing.overhead / timing.forward * 100:.0f}",
        f"{timing.seconds / reference:.2f}",
        timing.notes,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--quick", action="store_true", help="n = 64 only: a smoke run")
    parser.add_argument("--csv", action="store_true", help="print the rows as CSV on stdout")
    parser.add_argument("--jobs", type=int, help="passed to check_gradients when it takes jobs=")
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds a baseline may run before it is extrapolated",
    )
    args = parser.parse_args()
    sizes = [64] if args.quick else [int(s) for s in args.sizes.split(",")]
    named, _, jobs_note = gradcheck_settings(args.jobs)

    preamble = sys.stderr if args.csv else sys.stdout
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}; check_gradients takes "
        f"{'inputs=' if named else 'only (X, W)'}{', ' + jobs_note if jobs_note else ''}; "
        + ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in BLAS_VARIABLES),
        file=preamble,
    )
    print(
        "overhead = (seconds - calls x fwd) / calls; fwd µs: one forward call, timed inside the "
        "tool's run; alone µs: timed by itself right before/after the tool; "
        f"target for gradcheck <= {TARGET_US:g} µs/call (5% of a 100 µs forward)\n",
        file=preamble,
    )
    writer = csv.writer(sys.stdout) if args.csv else None
    header = [name for name, _ in COLUMNS]
    if writer is not None:
        writer.writerow(header)
    else:
        line = " ".join(f"{name:{align}}" for name, align in COLUMNS)
        print(line)
        print("-" * len(line))

    counter = CallCounter()
    try:
        run_gradcheck(sigmoid_case(8), counter, args.jobs)  # warm-up: imports, first calls
        for n in sizes:
            for case in (sigmoid_case(n), mlp_case(n)):
                tools: list[tuple[Callable[[], Timing | None], bool]] = [
                    (functools.partial(run_gradcheck, case, counter, args.jobs), named),
                    (functools.partial(torch_gradcheck, case, counter, args.budget), True),
                    (functools.partial(naive, case, counter, args.budget), True),
                ]
                reference = float("nan")
                for work, by_name in tools:
                    # "alone": the forward timed by itself right before and after the tool, to
                    # show how the shared machine moved; the overhead uses "fwd", the forward's
                    # own time inside the tool's run.
                    before = forward_seconds(case.forward_call(named=by_name))
                    timing = work()
                    if timing is None:  # no torch
                        continue
                    after = forward_seconds(case.forward_call(named=by_name))
                    if timing.tool == "gradcheck":
                        reference = timing.seconds
                    cells = row(case, timing, (before, after), reference)
                    if writer is not None:
                        writer.writerow(cells)
                    else:
                        print(
                            " ".join(f"{c:{a}}" for c, (_, a) in zip(cells, COLUMNS, strict=True))
                        )
                sys.stdout.flush()
    finally:
        counter.close()


if __name__ == "__main__":
    # check_gradients(jobs=N) pickles forward and backward for its worker processes, which find
    # them by module name, and a script's __main__ is not one: run as this file's module.
    importlib.import_module(Path(__file__).stem).main()
