"""Code as it is written (issue 21), end to end: backward's extra arguments by name, dicts of
arrays from the command line, arrays that keep their shape, a backward writing into its own
arguments, classes rebuilt in worker processes, Jacobians and derivatives by name."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import gradcheck_json

from gradcheck_cli.numerics import workers
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.binding import bind
from gradcheck_cli.subject.files import load_model_file

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


SCALED = """
import numpy as np


def scaled_forward(x, w):
    return x @ w, (x, w)


def scaled_backward(dout, cache, factor):
    x, w = cache
    return factor * (dout @ w.T), factor * (x.T @ dout)


def example_inputs():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((3, 4)), "w": rng.standard_normal((4, 2))}
"""


def test_a_backward_only_parameter_comes_from_param_by_name(tmp_path: Path) -> None:
    """backward(dout, cache, factor): --param factor=1 gives it (forward does not take it) and
    the check passes; factor=2 makes every gradient twice too large. (Without it, exit 2 says
    how to give it: test_bad_input.)"""
    path = write(tmp_path, "scaled.py", SCALED)
    code, document = gradcheck_json("run", "--model", f"{path}:scaled", "--param", "factor=1")
    assert code == 0
    assert list(document["inputs"]) == ["x", "w"]
    code, document = gradcheck_json("run", "--model", f"{path}:scaled", "--param", "factor=2")
    assert code == 1
    assert {d["wrt"]: d["parameters"]["simple_factor"] for d in document["diagnosis"]} == {
        "x": "2",
        "w": "2",
    }


def test_a_whole_archive_fills_a_dict_argument_and_its_entries_are_named(tmp_path: Path) -> None:
    """--input parameters=params.npz gives the dict argument every array of the archive, each
    an input `parameters.KEY`; --entries and --wrt name them with the dot."""
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "params.npz",
        W1=rng.standard_normal((3, 4)),
        b1=rng.standard_normal((3, 1)),
        W2=rng.standard_normal((1, 3)),
        b2=rng.standard_normal((1, 1)),
    )
    np.save(tmp_path / "X.npy", rng.standard_normal((4, 2)))
    model = f"{MODELS / 'deep_network.py'}:two_layer"
    given = (
        "--input",
        f"parameters={tmp_path / 'params.npz'}",
        "--input",
        f"X={tmp_path / 'X.npy'}",
    )
    code, document = gradcheck_json("run", "--model", model, *given)
    assert code == 0
    assert {n: i["source"] for n, i in document["inputs"].items()} == {
        "X": str(tmp_path / "X.npy"),
        **{f"parameters.{k}": f"{tmp_path / 'params.npz'}:{k}" for k in ("W1", "b1", "W2", "b2")},
    }
    code, document = gradcheck_json(
        "run",
        "--model",
        model,
        *given,
        "--entries",
        "parameters.W1[0,3];parameters.b2[0,0]",
    )
    assert code == 0
    assert sorted((c["wrt"], tuple(c["index"])) for c in document["checks"]) == sorted(
        [("parameters.W1", (0, 3)), ("parameters.b2", (0, 0))] * 2  # two cotangents
    )
    code, document = gradcheck_json(
        "run", "--model", model, *given, "--wrt", "parameters", codes=(0, 1)
    )
    assert document["settings"]["wrt"] == [f"parameters.{k}" for k in ("W1", "b1", "W2", "b2")]


def test_an_inputs_archive_may_hold_a_dict_arguments_arrays(tmp_path: Path) -> None:
    """--inputs all.npz with keys parameters.W1, ...: the same dict argument; an array of it
    given alone overrides example_inputs()'s and the others stay the example's."""
    examples = _deep_network_examples()
    np.savez(
        tmp_path / "all.npz",
        X=examples["X"],
        **{f"parameters.{k}": v for k, v in examples["parameters"].items()},
    )
    model = f"{MODELS / 'deep_network.py'}:two_layer"
    code, document = gradcheck_json("run", "--model", model, "--inputs", str(tmp_path / "all.npz"))
    assert code == 0
    assert document["inputs"]["parameters.W2"]["source"] == f"{tmp_path / 'all.npz'}:parameters.W2"
    np.save(tmp_path / "w1.npy", np.ones((3, 4)))
    code, document = gradcheck_json(
        "run", "--model", model, "--input", f"parameters.W1={tmp_path / 'w1.npy'}"
    )
    assert code == 0
    sources = {n: i["source"] for n, i in document["inputs"].items()}
    assert sources["parameters.W1"] == str(tmp_path / "w1.npy")
    assert sources["parameters.b1"] == "example_inputs()"


def _deep_network_examples() -> dict[str, Any]:
    examples: dict[str, Any] = _load("deep_network").example_inputs()
    return examples


SQUARES = """
import numpy as np


def forward(b):
    return float(np.sum(b**2))


def backward(b):
    return 2 * b


def example_inputs():
    return {"b": np.zeros(3)}
"""


def test_npy_arrays_keep_their_shape_and_only_a_csv_line_flattens(tmp_path: Path) -> None:
    """For a 1-D example b, a .npy of shape (3, 1) stays (3, 1) (flattening it would change
    what x + b broadcasts to in other models), while a one-column CSV of 3 numbers is (3,)."""
    path = write(tmp_path, "squares.py", SQUARES)
    np.save(tmp_path / "b.npy", np.ones((3, 1)))
    (tmp_path / "b.csv").write_text("1\n2\n3\n", encoding="utf-8")
    for given, shape in (("b.npy", [3, 1]), ("b.csv", [3])):
        code, document = gradcheck_json(
            "run", "--model", str(path), "--input", f"b={tmp_path / given}"
        )
        assert code == 0
        assert document["inputs"]["b"]["shape"] == shape


WRITES = """
import numpy as np


def relu_forward(x):
    return np.maximum(0, x), [x.copy(), np.zeros_like(x)]


def relu_backward(dout, cache):
    x, scratch = cache
    scratch += 1.0  # writes into its own cache
    dout[x <= 0] = 0  # and into dout, as CS231n's relu_backward does
    return dout * scratch


def example_inputs():
    return {"x": np.random.default_rng(2).standard_normal((4, 5))}
"""


def test_a_backward_writing_into_its_cache_and_dout_gets_fresh_copies_every_call(
    tmp_path: Path,
) -> None:
    """Every backward call sees the cache and dout as forward and the check made them, so a
    backward that writes into both is deterministic and its gradient checked as written (issue
    25): every entry agrees; and both writes are side effects that fail the run, named as the
    code names them (issue 23)."""
    path = write(tmp_path, "writes.py", WRITES)
    code, document = gradcheck_json("run", "--model", f"{path}:relu")
    assert code == 1
    assert document["summary"]["x"]["entries"] == 20
    assert document["summary"]["x"]["failed"] == 0
    found = {e["kind"]: e["names"] for e in document["side_effects"] if not e["passed"]}
    assert found == {"dout-modified": ["dout"], "cache-modified": ["cache[1]"]}
    code, document = gradcheck_json("run", "--model", f"{path}:relu", "--no-side-effects")
    assert code == 0
    assert document["side_effects"] == []
    assert document["settings"]["side_effects"] is False


RANDOM_CLASS = """
import numpy as np


class Noisy:
    '''A layer whose constructor draws two arrays: W (an input: backward reports dW) and
    mask (not an input), both from np.random's global generator.'''

    def __init__(self, n=4):
        self.W = np.random.randn(n, n)
        self.mask = np.random.rand(n) > 0.5

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.W) * self.mask

    def backward(self, dout):
        dz = dout * self.mask * (1 - np.tanh(self.x @ self.W) ** 2)
        self.dW = self.x.T @ dz
        return dz @ self.W.T


def example_inputs():
    return {"x": np.random.default_rng(4).standard_normal((6, 4))}
"""


def test_worker_processes_build_the_same_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class's recipe imports the file again and builds the instance with the same seeded
    global generator: its models give the parent's numbers, and --jobs 2 the report of
    --jobs 1."""
    path = write(tmp_path, "noisy.py", RANDOM_CLASS)
    bound = bind(load_model_file(path, "Noisy"), {}, {})
    assert list(bound.inputs) == ["x", "W"]
    assert bound.sources["W"] == "Noisy().W"
    rebuilt, _ = bound.recipe({n: np.array(a) for n, a in bound.inputs.items()})
    for parent, child in zip(bound.models, rebuilt, strict=True):
        assert child.value(bound.inputs) == parent.value(bound.inputs)
    one = gradcheck_json("run", "--model", f"{path}:Noisy", "--jobs", "1")
    monkeypatch.setattr(workers, "WORTH_SECONDS", 0.0)
    two = gradcheck_json("run", "--model", f"{path}:Noisy", "--jobs", "2")
    assert two[1]["settings"]["jobs"] == 2
    assert one[0] == two[0] == 0
    assert one[1]["checks"] == two[1]["checks"]


JACOBIAN = """
import numpy as np


class Softmax:
    def __call__(self, x):
        e = np.exp(x - x.max())
        return e / e.sum()

    def gradient(self, x):
        p = self(x)
        return np.diag(p) - np.outer(p, p)  # the full Jacobian: (output, input)


def cube(x):
    return x**3


def cube_prime(x):
    return 3 * x**2


def example_inputs():
    return {"x": np.random.default_rng(5).standard_normal(4)}
"""


@pytest.mark.parametrize("name", ["Softmax", "cube"])
def test_a_jacobian_and_a_derivative_by_name_are_checked(tmp_path: Path, name: str) -> None:
    """gradient(x) of shape (output, input) is a Jacobian (v contracted with it); cube with
    cube_prime is an elementwise derivative."""
    path = write(tmp_path, "jacobian.py", JACOBIAN)
    code, document = gradcheck_json("run", "--model", f"{path}:{name}")
    assert code == 0, document["summary"]
    assert document["summary"]["x"]["entries"] == 4


def test_supplied_inputs_reach_a_class_attribute(tmp_path: Path) -> None:
    """An array given for an attribute's name (here W) replaces the constructor's."""
    path = write(tmp_path, "noisy.py", RANDOM_CLASS)
    W = np.eye(4)
    bound = bind(load_model_file(path, "Noisy"), {"W": Supplied(W, "w.npy")}, {})
    assert bound.sources["W"] == "w.npy"
    np.testing.assert_array_equal(bound.inputs["W"], W)


def test_the_api_takes_a_dict_of_arrays_and_backward_params_by_name() -> None:
    """check_layer(..., inputs={"parameters": {...}}) checks each array as parameters.KEY, and
    params= reaches a backward that takes a value by name."""
    from gradcheck_cli.api import check_layer

    module = _load("deep_network")
    examples = module.example_inputs()
    report = check_layer(
        module.two_layer_forward,
        module.two_layer_backward,
        inputs={"X": examples["X"], "parameters": examples["parameters"]},
    )
    assert report.passed
    assert list(report.inputs) == ["X", *(f"parameters.{k}" for k in ("W1", "b1", "W2", "b2"))]
    cached = _load("activation_cache")
    given = cached.example_inputs()
    report = check_layer(
        cached.linear_activation_forward,
        cached.linear_activation_backward,
        inputs={n: given[n] for n in ("A_prev", "W", "b")},
        params={"activation": "relu"},
    )
    assert report.passed
    assert report.settings.wrt == ("A_prev", "W", "b")


def _load(stem: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_{stem}", MODELS / f"{stem}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wrt_names_a_dict_arguments_arrays_one_by_one() -> None:
    """--wrt parameters.W1,parameters.b2 checks those two arrays alone."""
    model = f"{MODELS / 'deep_network.py'}:two_layer"
    wrt = "parameters.W1,parameters.b2"
    code, document = gradcheck_json("run", "--model", model, "--wrt", wrt)
    assert code == 0
    assert document["settings"]["wrt"] == ["parameters.W1", "parameters.b2"]
    assert {c["wrt"] for c in document["checks"]} == {"parameters.W1", "parameters.b2"}


PLANAR = """
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def layer_sizes(X, Y):
    return X.shape[0], 4, Y.shape[0]


def forward_propagation(X, parameters):
    A1 = np.tanh(parameters["W1"] @ X + parameters["b1"])
    A2 = sigmoid(parameters["W2"] @ A1 + parameters["b2"])
    return A2, {"A1": A1, "A2": A2}


def compute_cost(A2, Y, parameters):
    return float(-np.mean(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)))


def backward_propagation(parameters, cache, X, Y):
    m = X.shape[1]
    A1, A2 = cache["A1"], cache["A2"]
    dZ2 = A2 - Y
    dZ1 = (parameters["W2"].T @ dZ2) * (1 - A1**2)
    return {
        "dW1": dZ1 @ X.T / m,
        "db1": dZ1.sum(axis=1, keepdims=True) / m,
        "dW2": dZ2 @ A1.T / m,
        "db2": dZ2.sum(axis=1, keepdims=True) * FACTOR / m,
    }


def nn_model(X, Y, n_h, num_iterations=10000):
    return None


def example_inputs():
    rng = np.random.default_rng(0)
    return {
        "X": rng.standard_normal((2, 5)),
        "Y": (rng.random((1, 5)) > 0.5).astype(float),
        "parameters": {
            "W1": rng.standard_normal((4, 2)),
            "b1": rng.standard_normal((4, 1)),
            "W2": rng.standard_normal((1, 4)),
            "b2": rng.standard_normal((1, 1)),
        },
    }
"""

COST_LAYER = """
import numpy as np


def forward_propagation_n(X, Y, parameters):
    A = 1 / (1 + np.exp(-(parameters["W"] @ X + parameters["b"])))
    cost = float(-np.mean(Y * np.log(A) + (1 - Y) * np.log(1 - A)))
    return cost, (A, X)


def backward_propagation_n(X, Y, cache):
    A, X = cache
    dZ = (A - Y) / X.shape[1]
    return {"dZ": dZ, "dW": FACTOR * dZ @ X.T, "db": dZ.sum(axis=1, keepdims=True)}


def example_inputs():
    rng = np.random.default_rng(1)
    return {
        "X": rng.standard_normal((3, 4)),
        "Y": np.array([[1.0, 0.0, 1.0, 1.0]]),
        "parameters": {"W": rng.standard_normal((1, 3)), "b": rng.standard_normal((1, 1))},
    }
"""


@pytest.mark.parametrize(
    ("source", "name", "wrong"),
    [(PLANAR, "propagation", "parameters.b2"), (COST_LAYER, "propagation_n", "parameters.W")],
    ids=["loss-of-output", "cost-and-cache"],
)
def test_deeplearning_ai_backwards_of_a_cost_are_checked_as_written(
    tmp_path: Path, source: str, name: str, wrong: str
) -> None:
    """backward_propagation(parameters, cache, X, Y) differentiates compute_cost(A2, Y,
    parameters) (the one function named a cost that takes Y and forward's output; not
    layer_sizes(X, Y) or nn_model); backward_propagation_n(X, Y, cache) is the gradient of the
    cost forward_propagation_n returns. Each passes, and a factor planted in one gradient
    fails that input alone; X and Y are listed, not checked; dZ is ignored."""
    path = write(tmp_path, "network.py", source.replace("FACTOR", "1.0"))
    code, document = gradcheck_json("run", "--model", f"{path}:{name}")
    assert code == 0, document["summary"]
    unchecked = [n for n, i in document["inputs"].items() if not i["checked"]]
    assert sorted(unchecked) == ["X", "Y"]
    path = write(tmp_path, "network.py", source.replace("FACTOR", "2.0"))
    code, document = gradcheck_json("run", "--model", f"{path}:{name}")
    assert code == 1
    assert [n for n, s in document["summary"].items() if s["failed"]] == [wrong]


def test_a_loss_holding_one_number_in_a_matrix_is_that_number(tmp_path: Path) -> None:
    """A cost left unsqueezed, of shape (1, 1), is the loss it holds: checked, not refused."""
    source = """
    import numpy as np

    X = np.random.default_rng(1).standard_normal((4, 3))


    def cost(w):
        return np.array([[np.sum((X @ w) ** 2)]]), 2 * X.T @ (X @ w)


    def example_inputs():
        return {"w": np.random.default_rng(0).standard_normal((3, 1))}
    """
    path = write(tmp_path, "cost.py", source)
    code, document = gradcheck_json("run", "--model", f"{path}:cost")
    assert code == 0
    assert document["output_shape"] is None
