"""JAX functions through the real command line: a jax.custom_vjp log-sum-exp and its bug twin,
a jax.custom_jvp function (its rule checked in reverse and forward mode), a plain jax function,
one that cannot be traced; 64-bit types enabled for the check and restored after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck, gradcheck_json, load_fixture

pytestmark = pytest.mark.jax

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def failed_entries(document: dict[str, Any]) -> set[tuple[str, tuple[int, ...]]]:
    return {(c["wrt"], tuple(c["index"])) for c in document["checks"] if not c["passed"]}


def test_the_log_sum_exp_passes_and_its_twin_fails_on_exactly_the_bias(
    report_validator: Any,
) -> None:
    """lse(x, b) with its bwd rule passes all 25 entries, in float64; the twin, whose db drops
    the cotangent, fails on the 5 entries of b alone, with a diagnosis; both reports valid."""
    code, good = gradcheck_json("run", "--model", f"{MODELS / 'jax_logsumexp'}.py:lse")
    assert code == 0
    assert {n: s["entries"] for n, s in good["summary"].items()} == {"x": 20, "b": 5}
    assert {i["dtype"] for i in good["inputs"].values()} == {"float64"}
    assert "jax.custom_vjp" in good["model"]["formula"]
    report_validator.validate(good)
    code, bad = gradcheck_json("run", "--model", f"{MODELS / 'jax_logsumexp_bug'}.py:lse")
    assert code == 1
    assert failed_entries(bad) == {("b", (j,)) for j in range(5)}
    assert [d["wrt"] for d in bad["diagnosis"]] == ["b"]
    report_validator.validate(bad)


def test_the_analytic_side_is_the_gradient_of_softmax() -> None:
    """The bwd rule's values equal the closed form, g_i * softmax(x_i + b) for x, in numpy: an
    opinion independent of JAX."""
    import jax

    _, document = gradcheck_json(
        "run", "--model", f"{MODELS / 'jax_logsumexp'}.py:lse", "--details", "all"
    )
    module = load_fixture("jax_logsumexp")
    with jax.enable_x64(True):
        examples = {k: np.asarray(v) for k, v in module.example_inputs().items()}
    z = examples["x"] + examples["b"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    v = np.random.default_rng(0).standard_normal(4)
    for row in (c for c in document["checks"] if c["cotangent"] == 1):
        if row["wrt"] == "x":
            i, j = row["index"]
            assert row["analytic"] == pytest.approx(v[i] * p[i, j], rel=1e-12)
        else:
            (j,) = row["index"]
            assert row["analytic"] == pytest.approx(float(v @ p[:, j]), rel=1e-12)


SOFTPLUS = """
import jax
import jax.numpy as jnp


@jax.custom_jvp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


@softplus.defjvp
def softplus_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x){bug} * dx


def example_inputs():
    return {{"x": jnp.linspace(-3.0, 3.0, 7)}}
"""


@pytest.mark.parametrize(("bug", "code"), [("", 0), (" ** 2", 1)])
def test_a_custom_jvp_rule_in_both_modes(tmp_path: Path, bug: str, code: int) -> None:
    """A custom_jvp softplus: its rule gives the gradient (through JAX's transpose) and the
    forward mode; sigmoid**2 for sigmoid fails both, sigmoid passes both."""
    path = tmp_path / "softplus.py"
    path.write_text(SOFTPLUS.format(bug=bug), encoding="utf-8")
    got, document = gradcheck_json("run", "--model", f"{path}:softplus")
    assert got == code
    got, document = gradcheck_json("run", "--model", f"{path}:softplus", "--mode", "jvp")
    assert got == code
    assert document["settings"]["check"] == "jvp"


def test_forward_mode_of_a_custom_vjp_is_refused() -> None:
    """JAX has no forward mode for a custom_vjp function: exit 2, naming its line."""
    result = gradcheck("run", "--model", f"{MODELS / 'jax_logsumexp'}.py:lse", "--mode", "jvp")
    assert result.exit_code == 2
    assert result.stderr == (
        "gradcheck: error: jax_logsumexp.py:13: --mode jvp needs a forward-mode rule, and lse "
        "has none: JAX cannot apply forward mode to a jax.custom_vjp function (jax.custom_jvp "
        "gives one)\n"
    )


PLAIN = """
import jax.numpy as jnp


def forward(x, w):
    return jnp.sum(jnp.tanh(x @ w) ** 2)


def example_inputs():
    return {"x": jnp.arange(6.0).reshape(2, 3) / 7, "w": jnp.ones((3, 2)) / 3}
"""


def test_a_plain_jax_function_and_its_hessian(tmp_path: Path) -> None:
    """Any jax function (the file's forward, no rule of its own): gradient and, with --order 2,
    the Hessian-vector product by differentiating JAX's gradient again."""
    path = tmp_path / "plain.py"
    path.write_text(PLAIN, encoding="utf-8")
    code, _ = gradcheck_json("run", "--model", str(path))
    assert code == 0
    code, document = gradcheck_json("run", "--model", str(path), "--order", "2")
    assert code == 0
    assert document["settings"]["check"] == "hvp"


UNTRACEABLE = """
import jax.numpy as jnp


def forward(x):
    if x[0] > 0:  # control flow on a value: neither jit nor vmap can trace it
        return jnp.sum(jnp.sin(x))
    return jnp.sum(jnp.cos(x))


def example_inputs():
    return {"x": jnp.linspace(0.5, 1.5, 4)}
"""


def test_a_function_jit_cannot_trace_is_called_eagerly(tmp_path: Path) -> None:
    """Python control flow on values: no jit, no batches, the same check one call at a time."""
    path = tmp_path / "branchy.py"
    path.write_text(UNTRACEABLE, encoding="utf-8")
    code, document = gradcheck_json("run", "--model", str(path))
    assert code == 0
    assert document["summary"]["x"]["failed"] == 0


def test_64_bit_types_are_restored_after_the_check() -> None:
    """The check runs in float64 and leaves JAX's own setting (32-bit by default) as it was."""
    import jax

    config: Any = jax.config  # untyped in JAX
    before = bool(config.read("jax_enable_x64"))
    code, _ = gradcheck_json("run", "--model", f"{MODELS / 'jax_logsumexp'}.py:lse")
    assert code == 0
    assert bool(config.read("jax_enable_x64")) == before
    assert jax.numpy.ones(1).dtype == (np.float64 if before else np.float32)


def test_an_absent_jax_device_is_exit_2() -> None:
    """--device tpu on a machine without one: one line, exit 2."""
    import jax

    try:
        jax.devices("tpu")
        pytest.skip("this machine has a TPU")
    except RuntimeError:
        pass
    result = gradcheck("run", "--model", f"{MODELS / 'jax_logsumexp'}.py:lse", "--device", "tpu")
    assert result.exit_code == 2
    assert result.stderr.startswith("gradcheck: error: --device tpu: no JAX tpu device here")
