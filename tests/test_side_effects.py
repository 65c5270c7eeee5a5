"""Side effects of the user's code: what forward and backward write into, whether
backward is re-entrant, whether a result reads memory np.empty left unwritten. Each is a named
verdict that fails the run (exit 1) in every format, alongside the gradient's own verdicts."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck, gradcheck_json

from gradcheck_cli import check_layer
from gradcheck_cli.render.github import github_annotations
from gradcheck_cli.render.junit import junit_xml
from gradcheck_cli.subject.binding import bind
from gradcheck_cli.subject.files import load_model_file

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
KINDS = (
    "dout-modified",
    "cache-modified",
    "input-modified",
    "not-reentrant",
    "uninitialised-memory",
)


def failed(document: dict[str, Any]) -> dict[str, list[str]]:
    """The failed side-effect checks: kind -> what was written into (or which gradient)."""
    return {e["kind"]: e["names"] for e in document["side_effects"] if not e["passed"]}


def write(tmp_path: Path, source: str) -> str:
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return str(path)


# --- The fixtures: each correct layer passes, each twin fails by its own side effect alone ------

PLANTED = [
    # (model, the side effect planted, what it names, does the gradient fail too)
    ("side_effects_bug.py:relu", "dout-modified", ["dout"], False),
    ("side_effects_bug.py:scale", "cache-modified", ["cache[0]"], False),
    ("side_effects_bug.py:center", "input-modified", ["x"], False),
    ("side_effects_bug.py:tanh", "not-reentrant", ["dx"], True),
    ("side_effects_bug.py:leaky", "uninitialised-memory", ["dx"], None),
    ("side_effects_bug.py:ReLU", "dout-modified", ["dvalues"], False),
    ("side_effects_plain_bug.py", "dout-modified", ["grad_output"], False),
]


@pytest.mark.parametrize(("model", "kind", "names", "wrong"), PLANTED)
def test_a_planted_side_effect_is_the_one_named_and_fails_the_run(
    model: str, kind: str, names: list[str], wrong: bool | None
) -> None:
    """Each twin fails (exit 1) by exactly its planted side effect, named as its code names the
    argument; the gradient's verdicts stand beside it (right, but for tanh's accumulation)."""
    code, document = gradcheck_json("run", "--model", str(MODELS / model))
    assert code == 1
    assert document["verdict"] == "failed"
    assert failed(document) == {kind: names}
    entries_failed = sum(s["failed"] for s in document["summary"].values())
    if wrong is not None:
        assert (entries_failed > 0) is wrong


@pytest.mark.parametrize("model", sorted({m.replace("_bug", "") for m, *_ in PLANTED}))
def test_no_correct_fixture_is_flagged(model: str) -> None:
    """The twins' correct originals pass every check, each kind that applies run."""
    code, document = gradcheck_json("run", "--model", str(MODELS / model))
    assert code == 0
    assert document["side_effects"]
    assert all(e["passed"] and e["names"] == [] for e in document["side_effects"])
    assert document["settings"]["side_effects"] is True


def test_which_checks_run_follows_the_convention() -> None:
    """A layer gets all five kinds (input-modified and uninitialised-memory for forward too);
    a loss function returning (loss, dx) has no backward of its own: forward's checks only."""
    _, layer = gradcheck_json("run", "--model", str(MODELS / "side_effects.py:relu"))
    assert [(e["kind"], e["role"]) for e in layer["side_effects"]] == [
        ("input-modified", "relu_forward"),
        ("uninitialised-memory", "relu_forward"),
        ("dout-modified", "relu_backward"),
        ("cache-modified", "relu_backward"),
        ("not-reentrant", "relu_backward"),
        ("uninitialised-memory", "relu_backward"),
    ]
    _, loss = gradcheck_json("run", "--model", str(MODELS / "layers.py:softmax_loss"))
    assert [e["kind"] for e in loss["side_effects"]] == ["input-modified", "uninitialised-memory"]


# --- What each check says -------------------------------------------------------------------------


def test_dout_written_into_is_named_with_an_entry_it_changed() -> None:
    """The message says which entry of dout changed, from what to what: relu zeroes dout where
    its cached x is negative, and the acceptance wording (dout) is in the output."""
    _, document = gradcheck_json("run", "--model", str(MODELS / "side_effects_bug.py:relu"))
    (effect,) = [e for e in document["side_effects"] if not e["passed"]]
    x = np.random.default_rng(23).standard_normal((4, 5))
    first = tuple(int(i) for i in np.argwhere(x <= 0)[0])
    match = re.search(r"dout\[(\d+),(\d+)\] was (\S+), is 0 after the call", effect["message"])
    assert match is not None, effect["message"]
    assert (int(match.group(1)), int(match.group(2))) == first
    assert effect["role"] == "relu_backward"


def test_a_cache_holding_forwards_input_says_so() -> None:
    """scale_backward writes into the x forward saved, which is forward's input x itself."""
    _, document = gradcheck_json("run", "--model", str(MODELS / "side_effects_bug.py:scale"))
    (effect,) = [e for e in document["side_effects"] if not e["passed"]]
    assert "writes into cache[0] (which holds forward's input x)" in effect["message"]


def test_a_write_that_changes_no_value_is_found_by_the_read_only_view(tmp_path: Path) -> None:
    """forward clips x in place at inputs it leaves unchanged: no fingerprint moves, but the
    read-only view it was given raised, and a read-only view of x alone names it."""
    path = write(
        tmp_path,
        """
        import numpy as np

        def forward(x, w):
            np.clip(x, -100.0, 100.0, out=x)
            return float(np.sum(np.sin(x) * w))

        def backward(x, w):
            return np.cos(x) * w, np.sin(x)

        def example_inputs():
            rng = np.random.default_rng(0)
            return {"x": rng.standard_normal(4), "w": rng.standard_normal(4)}
        """,
    )
    code, document = gradcheck_json("run", "--model", path)
    assert code == 1
    assert failed(document) == {"input-modified": ["x"]}
    (effect,) = [e for e in document["side_effects"] if not e["passed"]]
    assert effect["role"] == "forward"
    assert "(a read-only view of it raised)" in effect["message"]


def test_a_dict_argument_and_a_backward_writing_into_an_input(tmp_path: Path) -> None:
    """forward writes into the array W of its dict argument `params`, named `params['W']`;
    backward writes into x, an input it takes by name: input-modified of backward."""
    path = write(
        tmp_path,
        """
        import numpy as np

        def forward(x, params):
            params["W"] *= 1.0 + 0.0 * x[0]
            params["W"] += 0.0
            params["W"][0] = params["W"][0] + 1.0 - 1.0 + 0.5 - 0.5
            params["b"] -= params["b"] * 0.0 - 0.25
            return float(np.sum(np.tanh(x @ params["W"])) + np.sum(params["b"]))

        def backward(x, params):
            W = params["W"]
            W_used = W
            b_used = params["b"] - 0.25  # the value forward added its 0.25 to
            d = 1.0 - np.tanh(x @ W_used) ** 2
            grads = d @ W_used.T, {"W": x.T @ d, "b": np.ones_like(b_used)}
            x *= 1.0
            x[0, 0] = 7.0
            return grads

        def example_inputs():
            rng = np.random.default_rng(1)
            return {"x": rng.standard_normal((3, 2)),
                    "params": {"W": rng.standard_normal((2, 2)), "b": rng.standard_normal(2)}}
        """,
    )
    code, document = gradcheck_json("run", "--model", path)
    assert code == 1
    effects = {
        (e["kind"], e["role"]): e["names"] for e in document["side_effects"] if not e["passed"]
    }
    assert effects == {
        ("input-modified", "forward"): ["params['b']"],
        ("input-modified", "backward"): ["x"],
    }


def test_uninitialised_memory_is_found_where_empty_is_imported_by_name(tmp_path: Path) -> None:
    """`from numpy import empty` in the model file is filled too: a backward whose result reads
    one entry it never wrote is named, whatever that memory happened to hold."""
    path = write(
        tmp_path,
        """
        import numpy as np
        from numpy import empty

        def forward(x):
            return x ** 2

        def backward(x, grad_output):
            g = empty(x.shape)
            g[1:] = 2 * x[1:] * grad_output[1:]
            return g

        def example_inputs():
            return {"x": np.array([0.5, -1.0, 2.0])}
        """,
    )
    result = gradcheck("run", "--model", path, "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert failed(document)["uninitialised-memory"] == ["dx"]


UNWRITTEN = """
import numpy as np

calls = [0]

def forward(x):
    calls[0] += 1
    np.full(3, {leftover})  # freed at once: numpy's cache hands its memory to the next np.empty
    out = np.empty(3)
    out[1:] = x[1:] ** 2
    return out

def backward(x, grad_output):
    g = 2 * x * grad_output
    g[0] = 0.0
    return g

def example_inputs():
    return {{"x": np.array([0.5, -1.0, 2.0])}}
"""


def test_a_forward_reading_unwritten_memory_the_same_each_time_is_named(tmp_path: Path) -> None:
    """out[0] is whatever the last array of its size held (7.0, every call): deterministic, and
    right by luck; with np.empty's memory filled it is nan, and the side effect says so."""
    path = write(tmp_path, UNWRITTEN.format(leftover="7.0"))
    code, document = gradcheck_json("run", "--model", path)
    assert code == 1
    (effect,) = [e for e in document["side_effects"] if not e["passed"]]
    assert (effect["kind"], effect["role"], effect["names"]) == (
        "uninitialised-memory",
        "forward",
        ["out"],
    )
    assert "out[0] is nan instead of 7" in effect["message"]


def test_a_forward_reading_unwritten_memory_that_changes_is_refused_saying_so(
    tmp_path: Path,
) -> None:
    """out[0] holds the call's count: forward differs between calls (exit 2, as any noisy
    forward), and the line says why: with that memory filled, the calls agree."""
    path = write(tmp_path, UNWRITTEN.format(leftover="float(calls[0])"))
    result = gradcheck("run", "--model", path)
    assert result.exit_code == 2
    assert result.stderr == (
        "gradcheck: error: model.py: forward is not deterministic: two calls at the same inputs "
        "differ by 1, more than --nondet-tol 0; it reads memory np.empty (or empty_like) left "
        "unwritten: with that memory filled with NaN, two calls agree and hold NaN where it is "
        "read. Write every entry (np.zeros)\n"
    )


# --- Re-entrancy: what was exit 2 is a named verdict beside the gradient's ----------------------

NOT_REENTRANT = """
import numpy as np

calls = [0]

def forward(x):
    return float(np.sum(x ** 2))

def backward(x):
    calls[0] += 1
    return 2 * x + {noise} * calls[0]

def example_inputs():
    return {{"x": np.array([1.0, 2.0, 3.0])}}
"""


def test_a_backward_that_drifts_is_not_reentrant_beyond_nondet_tol(tmp_path: Path) -> None:
    """Each call adds 1e-9 more: not re-entrant at --nondet-tol 0 (exit 1, named dx with its
    two values), re-entrant at --nondet-tol 1e-6 (and the gradient itself passes there)."""
    path = write(tmp_path, NOT_REENTRANT.format(noise="1e-9"))
    code, document = gradcheck_json("run", "--model", path)
    assert code == 1
    assert failed(document) == {"not-reentrant": ["dx"]}
    effect = next(e for e in document["side_effects"] if not e["passed"])
    assert "more than --nondet-tol 0 apart" in effect["message"]
    code, document = gradcheck_json("run", "--model", path, "--nondet-tol", "1e-6")
    assert code == 0
    assert failed(document) == {}


def test_without_side_effect_checks_a_drifting_backward_is_refused(tmp_path: Path) -> None:
    """--no-side-effects: backward's determinism is left to the determinism probe, which
    refuses a drifting backward with exit 2 and one line."""
    path = write(tmp_path, NOT_REENTRANT.format(noise="1e-9"))
    result = gradcheck("run", "--model", path, "--no-side-effects")
    assert result.exit_code == 2
    assert "backward is not deterministic" in result.stderr


# --- Every format tells it -----------------------------------------------------------------------


def test_the_table_has_a_line_per_check_and_the_final_line_names_the_side_effect() -> None:
    result = gradcheck("run", "--model", str(MODELS / "side_effects_bug.py:relu"))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    for kind in KINDS:
        assert any(line.startswith(f"side effect ({kind}): ") for line in lines), kind
    assert any(
        line.startswith("side effect (dout-modified): FAILED: relu_backward") for line in lines
    )
    assert (
        lines[-1] == "FAILED: relu_backward writes into dout (a side effect); all 20 entries agree."
    )


def test_junit_and_github_fail_on_the_side_effect_alone(tmp_path: Path) -> None:
    """A case per check: the failing one is a <failure> and an ::error at the model file; the
    inputs' cases pass (their entries agree); the summary is the table's final line."""
    model = str(MODELS / "side_effects_bug.py:relu")
    _, document = gradcheck_json("run", "--model", model)
    xml = junit_xml(document)
    assert 'name="dout-modified of relu_backward"' in xml
    assert xml.count("<failure") == 1
    annotations = github_annotations(document, file="side_effects_bug.py").splitlines()
    errors = [a for a in annotations if a.startswith("::error")]
    assert errors[0].startswith(
        "::error file=side_effects_bug.py,title=gradcheck%3A dout-modified of relu_backward wrong"
        "::relu_backward writes into dout"
    )
    assert errors[-1] == (
        "::error title=gradcheck::FAILED: relu_backward writes into dout (a side effect); all 20 "
        "entries agree."
    )
    result = gradcheck("run", "--model", model, "--junit-xml", str(tmp_path / "out.xml"))
    assert result.exit_code == 1
    assert (tmp_path / "out.xml").read_text(encoding="utf-8").count("<failure") == 1


def test_a_wrong_gradient_keeps_its_diagnosis_beside_the_side_effect() -> None:
    """tanh's twin accumulates: its gradients are wrong (diagnosed) and it is not re-entrant;
    the final line says both."""
    result = gradcheck("run", "--model", str(MODELS / "side_effects_bug.py:tanh"))
    assert result.exit_code == 1
    assert "diagnosis (" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "FAILED: 20 of 20 entries disagree; and tanh_backward is not re-entrant (a side effect)."
    )


# --- The numbers of the check never come from what the code wrote --------------------------------


def test_the_checks_numbers_are_the_same_with_or_without_the_side_effect() -> None:
    """relu and its dout-writing twin give the same analytic and numerical values entry by
    entry: every call got fresh copies, whatever the code wrote into."""
    _, right = gradcheck_json("run", "--model", str(MODELS / "side_effects.py:relu"))
    _, twin = gradcheck_json("run", "--model", str(MODELS / "side_effects_bug.py:relu"))
    assert [(c["analytic"], c["numerical"]) for c in right["checks"]] == [
        (c["analytic"], c["numerical"]) for c in twin["checks"]
    ]


def test_the_checks_cost_at_most_one_forward_call() -> None:
    """With the checks, forward runs at most once more than without them (they replace the
    determinism probe's two backward calls, each with a forward call of its own)."""
    model = str(MODELS / "side_effects.py:scale")
    _, on = gradcheck_json("run", "--model", model)
    _, off = gradcheck_json("run", "--model", model, "--no-side-effects")
    assert on["forward_calls"] - off["forward_calls"] <= 1


def test_bind_leaves_the_checks_own_arrays_alone() -> None:
    """The probes hand the code copies: the bound inputs are example_inputs()'s values after
    every side effect of center's twin (which writes into x)."""
    bound = bind(load_model_file(MODELS / "side_effects_bug.py", "center"), {}, side_effects=True)
    x = np.random.default_rng(23).standard_normal((4, 5))
    np.testing.assert_array_equal(bound.inputs["x"], x)


# --- The API -------------------------------------------------------------------------------------


def test_check_layer_reports_the_side_effect_and_can_skip_it() -> None:
    """check_layer fails a relu that writes into dout and says so in repr; side_effects=False
    leaves only the gradient, which passes."""

    def relu_forward(x: Any) -> Any:
        return np.maximum(0.0, x), x

    def relu_backward(dout: Any, cache: Any) -> Any:
        dout[cache <= 0] = 0.0
        return dout

    x = np.random.default_rng(4).standard_normal((3, 4))
    report = check_layer(relu_forward, relu_backward, {"x": x})
    assert not report.passed
    assert [(e.kind, e.names) for e in report.side_effects if not e.passed] == [
        ("dout-modified", ("dout",))
    ]
    assert repr(report).endswith("of x; side effects: dout-modified>")
    with pytest.raises(AssertionError, match="relu_backward writes into dout"):
        report.assert_ok()
    assert check_layer(relu_forward, relu_backward, {"x": x}, side_effects=False).passed


def test_a_dout_written_with_its_own_values_is_named_by_its_read_only_view(tmp_path: Path) -> None:
    """backward clips dout in place where nothing needs clipping: no value moves, but the
    read-only view of dout raised, and a read-only view of it alone names it."""
    path = write(
        tmp_path,
        """
        import numpy as np

        def clipped_forward(x):
            return 3.0 * x, None

        def clipped_backward(dout, cache):
            np.clip(dout, -1e9, 1e9, out=dout)
            return 3.0 * dout

        def example_inputs():
            return {"x": np.array([0.5, -1.0, 2.0])}
        """,
    )
    code, document = gradcheck_json("run", "--model", f"{path}:clipped")
    assert code == 1
    assert failed(document) == {"dout-modified": ["dout"]}
