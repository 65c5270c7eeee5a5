"""What the side-effect checks cost (target: at most 10% of a full check's time).

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/side_effects.py [--repeat 3] [--torch]

For each model, a full `gradcheck run` (in this process, --jobs 1) is timed with the checks on,
and the checks themselves are timed inside it (`side_effects.side_effect_checks`, wrapped); the
share is their time over the whole run's. The checks replace the two backward calls (each with a
forward call of its own, for a layer) the determinism probe makes without them, timed the same
way with --no-side-effects (`probes.check_deterministic`'s backward part): "net" is what the
checks add over that. The fastest of --repeat runs counts for each figure. The models: the
fixtures' layers (a few dozen entries each) and a bigger one, a two-layer tanh MLP layer (x
64x128, w 128x64, forward about a millisecond), where a full check is thousands of forward
calls.

--torch: the same for PyTorch functions, whose checks are the probe at the adapter's edge
(`framework_effects.framework_side_effects`, wrapped): the fixtures' Functions and custom
operators, and the same tanh dense layer as a torch.autograd.Function. Their checks replace
no probe calls (the determinism probe's backward part, "old probe", as for numpy code).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradcheck_cli import session
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings
from gradcheck_cli.subject import binding
from gradcheck_cli.subject.options import InputOptions, load_subject

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"

BIG = """
import numpy as np


def dense_forward(x, w, b):
    out = np.tanh(x @ w + b)
    return out, (x, w, out)


def dense_backward(dout, cache):
    x, w, out = cache
    da = dout * (1.0 - out**2)
    return da @ w.T, x.T @ da, da.sum(axis=0)


def example_inputs():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((64, 128)) / 8, "w": rng.standard_normal((128, 64)) / 8,
            "b": rng.standard_normal(64) / 8}
"""

BIG_TORCH = """
import torch


class Dense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        out = torch.tanh(x @ w + b)
        ctx.save_for_backward(x, w, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, w, out = ctx.saved_tensors
        da = grad_out * (1.0 - out * out)
        return da @ w.T, x.T @ da, da.sum(dim=0)


def example_inputs():
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(64, 128, generator=g, dtype=torch.float64) / 8,
        "w": torch.randn(128, 64, generator=g, dtype=torch.float64) / 8,
        "b": torch.randn(64, generator=g, dtype=torch.float64) / 8,
    }
"""

TORCH_CASES = [
    "torch_side_effects.py:Relu",
    "torch_side_effects.py:Scale",
    "torch_side_effects.py:Leaky",
    "torch_side_effects.py:square",
    "torch_softplus_affine.py:SoftplusAffine",
    "torch_custom_op.py:scaled_tanh",
    "torch_low_precision.py:LayerNorm",
    "torch_low_precision.py:Attention",
]

CASES = [
    "layers.py:affine",
    "layers.py:batchnorm",
    "conv_layers.py:conv",
    "rnn_layers.py:lstm_step",
    "side_effects.py:relu",
    "layer_classes.py:Dense",
    "softmax_regression.py",
]


@contextmanager
def timed(module: Any, name: str, spent: list[float]) -> Iterator[None]:
    """Add the time every call of module.name takes to spent[0] while it lasts."""
    original: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def one_run(spec: str, side_effects: bool) -> tuple[float, float, float, int]:
    """(the run's seconds, the side-effect checks' seconds, the determinism probe's seconds,
    forward calls)."""
    options = InputOptions(model_spec=spec, side_effects=side_effects)
    asked = CheckSettings(jobs=1)
    checks, probe = [0.0], [0.0]
    started = time.perf_counter()
    with (
        timed(binding, "side_effect_checks", checks),
        timed(binding, "framework_side_effects", checks),
        timed(binding, "check_deterministic", probe),
    ):
        _, report = session.run(lambda: load_subject(options), asked, naming=COMMAND_LINE)
    total = time.perf_counter() - started
    return total, checks[0], probe[0], report.forward_calls or 0


def measure(spec: str, repeat: int) -> dict[str, float]:
    on = [one_run(spec, True) for _ in range(repeat)]
    off = [one_run(spec, False) for _ in range(repeat)]
    run = min(r[0] for r in on)
    checks = min(r[1] for r in on)
    # The determinism probe with its backward part (off) and without it (on): the difference
    # is the two backward calls the checks replace.
    replaced = min(r[2] for r in off) - min(r[2] for r in on)
    return {
        "run": run,
        "checks": checks,
        "share": checks / run,
        "old_probe": replaced,
        "net_share": (checks - replaced) / run,
        "calls_on": on[0][3],
        "calls_off": off[0][3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--torch", action="store_true", help="PyTorch functions")
    args = parser.parse_args()
    if args.torch:
        import torch  # noqa: F401  (the fixtures' framework, imported before they are)

        big = Path("/tmp") / "gradcheck_side_effects_big_torch.py"
        big.write_text(BIG_TORCH, encoding="utf-8")
        specs = [str(MODELS / case) for case in TORCH_CASES] + [f"{big}:Dense"]
    else:
        big = Path("/tmp") / "gradcheck_side_effects_big.py"
        big.write_text(BIG, encoding="utf-8")
        specs = [str(MODELS / case) for case in CASES] + [f"{big}:dense"]
    print(
        f"{'model':32s} {'run s':>8s} {'checks s':>9s} {'share':>7s} {'old probe s':>12s} "
        f"{'net share':>10s} {'fwd calls on/off':>17s}"
    )
    for spec in specs:
        m = measure(spec, args.repeat)
        name = Path(spec).name
        print(
            f"{name:32s} {m['run']:8.3f} {m['checks']:9.4f} {m['share']:7.1%} "
            f"{m['old_probe']:12.4f} {m['net_share']:10.1%} "
            f"{int(m['calls_on']):>8d}/{int(m['calls_off']):<8d}"
        )


if __name__ == "__main__":
    main()
