"""Model files loaded and bound to their inputs, checked against central differences of the
file's own forward: gradients of any number of inputs of any shape, cotangents of an array
output, example_inputs() and parameters, determinism and the precision forward computes in,
user code writing into its arguments, loading that leaves no trace, and the one-line error for
each way a file or its functions can be wrong."""

from __future__ import annotations

import math
import re
import sys
import textwrap
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import central_differences, gradient_pair, supplied, xw
from numpy.typing import NDArray

from gradcheck_cli.checks.full import run_check
from gradcheck_cli.checks.target import Target
from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.numerics.models import Array, ContractedModel, Model
from gradcheck_cli.settings import CheckSettings
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.binding import Bound, FileModel, bind
from gradcheck_cli.subject.conventions import ModelFile
from gradcheck_cli.subject.files import load_model_file

FloatArray = NDArray[np.float64]
Forward = Callable[[Mapping[str, Array]], float]
MODELS = Path(__file__).resolve().parent.parent / "fixtures" / "models"


@pytest.fixture
def X() -> FloatArray:
    return np.random.default_rng(0).standard_normal((4, 3))


@pytest.fixture
def W() -> FloatArray:
    return np.random.default_rng(1).standard_normal((3, 2))


def write_model(directory: Path, source: str, filename: str = "model.py") -> Path:
    path = directory / filename
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


def bind_xw(model_file: ModelFile, X: Array, W: Array, **settings: Any) -> Bound:
    """A file written for the two-matrix tool, bound to X and W by name."""
    return bind(model_file, supplied(X=X, W=W), **settings)


def bind_source(
    directory: Path, source: str, X: FloatArray, W: FloatArray, **settings: Any
) -> list[Model]:
    return bind_xw(load_model_file(write_model(directory, source)), X, W, **settings).models


def scalar_forward(model_file: ModelFile) -> Forward:
    """The user's scalar forward as a float, bypassing the wrappers under test."""
    return lambda inputs: float(np.asarray(model_file.forward(**inputs)))


def contracted_forward(model_file: ModelFile, v: Array) -> Forward:
    """<forward(inputs), v> straight from the user's forward, bypassing the wrappers under test."""
    return lambda inputs: float(np.sum(np.asarray(model_file.forward(**inputs)) * v))


def only_cotangent(model: Model) -> Array:
    """The cotangent v of a contracted model of a forward with one output."""
    assert isinstance(model, ContractedModel)
    (v,) = model.vectors
    return v


def close(a: Array | None, b: Array) -> bool:
    # atol: gradients here are O(1); round-off in the difference quotient is ~1e-10.
    assert a is not None
    return bool(np.allclose(a, b, rtol=1e-6, atol=1e-8))


# --- correct and buggy models ----------------------------------------------------------------


def test_correct_scalar_model_matches_central_differences(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh.py: backward(X, W) equals central differences of forward, as float arrays."""
    model_file = load_model_file(MODELS / "dense_tanh.py")
    (model,) = bind_xw(model_file, X, W).models
    assert isinstance(model, FileModel)
    assert model.value(xw(X, W)) == pytest.approx(np.sum(np.tanh(X @ W)), rel=1e-15)
    dX, dW = gradient_pair(model, X, W)
    fd = central_differences(scalar_forward(model_file), xw(X, W))
    assert dX.dtype == np.float64
    assert dW.dtype == np.float64
    assert close(dX, fd["X"])
    assert close(dW, fd["W"])


def test_buggy_scalar_model_differs_from_central_differences(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh_bug.py: the planted derivative bug shows in both dX and dW."""
    model_file = load_model_file(MODELS / "dense_tanh_bug.py")
    (model,) = bind_xw(model_file, X, W).models
    dX, dW = gradient_pair(model, X, W)
    fd = central_differences(scalar_forward(model_file), xw(X, W))
    assert not close(dX, fd["X"])
    assert not close(dW, fd["W"])


def test_correct_vector_model_matches_central_differences(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh_vector.py: for each cotangent v, backward(X, W, v) is the gradient of <f, v>."""
    model_file = load_model_file(MODELS / "dense_tanh_vector.py")
    bound = bind_xw(model_file, X, W)
    assert len(bound.models) == 2
    assert bound.output_shape == (4, 2)
    for model in bound.models:
        v = only_cotangent(model)
        assert v.shape == (4, 2)
        assert model.value(xw(X, W)) == pytest.approx(np.sum(np.tanh(X @ W) * v), rel=1e-15)
        dX, dW = gradient_pair(model, X, W)
        fd = central_differences(contracted_forward(model_file, v), xw(X, W))
        assert close(dX, fd["X"])
        assert close(dW, fd["W"])


def test_buggy_vector_model_is_wrong_in_dW_only(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh_vector_bug.py: dX matches central differences, dW does not."""
    model_file = load_model_file(MODELS / "dense_tanh_vector_bug.py")
    for model in bind_xw(model_file, X, W).models:
        dX, dW = gradient_pair(model, X, W)
        fd = central_differences(contracted_forward(model_file, only_cotangent(model)), xw(X, W))
        assert close(dX, fd["X"])
        assert not close(dW, fd["W"])


def test_labels_come_from_the_file_or_default_to_its_name(tmp_path: Path) -> None:
    """name/formula from the module; else the file's stem and "forward(...) from <file>"."""
    labelled = load_model_file(MODELS / "dense_tanh.py")
    assert (labelled.name, labelled.formula) == ("dense-tanh", "sum(tanh(X @ W))")
    plain = load_model_file(
        write_model(
            tmp_path,
            """
            def forward(X, W):
                return float((X @ W).sum())

            def backward(X, W):
                return X, W
            """,
            "plain_model.py",
        )
    )
    assert (plain.name, plain.formula) == ("plain_model", "forward(...) from plain_model.py")
    assert plain.path == tmp_path.resolve() / "plain_model.py"
    assert plain.convention == "plain"
    assert plain.label == "plain_model.py"


def test_vector_models_are_named_and_describe_their_cotangent(X: FloatArray, W: FloatArray) -> None:
    """Each cotangent model's name and formula say which cotangent, seed and count it uses."""
    models = bind_xw(load_model_file(MODELS / "dense_tanh_vector.py"), X, W, seed=7).models
    assert [m.name for m in models] == ["dense-tanh-vector/v1", "dense-tanh-vector/v2"]
    assert models[1].formula == "<tanh(X @ W), v>, v ~ N(0, 1), seed 7, cotangent 2 of 2"


def test_user_models_are_not_complex_analytic(X: FloatArray, W: FloatArray) -> None:
    """Complex-step is refused for user code, scalar and vector alike."""
    scalar = bind_xw(load_model_file(MODELS / "dense_tanh.py"), X, W).models
    vector = bind_xw(load_model_file(MODELS / "dense_tanh_vector.py"), X, W).models
    assert [m.complex_analytic for m in scalar + vector] == [False, False, False]


def test_a_file_declaring_complex_safe_is_complex_analytic(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """`complex_safe = True` in the file, and only that, allows complex-step for its models."""
    source = """
        import numpy as np

        complex_safe = True

        def forward(X, W):
            return np.sum(np.tanh(X @ W))

        def backward(X, W):
            d = 1.0 - np.tanh(X @ W) ** 2
            return d @ W.T, X.T @ d
        """
    (model,) = bind_source(tmp_path, source, X, W)
    assert model.complex_analytic
    report = run_check(Target.of(model, xw(X, W)), CheckSettings(method="complex-step"))
    assert report.passed
    assert report.settings.method == "complex-step"


def test_complex_safe_that_is_not_a_bool_is_an_error(tmp_path: Path) -> None:
    """complex_safe must be True or False, not a truthy string."""
    path = write_model(
        tmp_path,
        "complex_safe = 'yes'\n\ndef forward(X, W):\n    return 0.0\n\nbackward = forward\n",
    )
    with pytest.raises(
        UserCodeError, match=r"^model\.py: complex_safe must be True or False; got str$"
    ):
        load_model_file(path)


# --- cotangents ------------------------------------------------------------------------------


def cotangents_of(models: list[Model]) -> list[Array]:
    return [only_cotangent(model) for model in models]


def test_cotangents_are_reproducible_per_seed_and_differ_between_seeds(
    X: FloatArray, W: FloatArray
) -> None:
    """Same seed, same cotangents; another seed, other cotangents; the k cotangents differ."""
    model_file = load_model_file(MODELS / "dense_tanh_vector.py")
    first = cotangents_of(bind_xw(model_file, X, W, cotangents=3, seed=0).models)
    again = cotangents_of(bind_xw(model_file, X, W, cotangents=3, seed=0).models)
    other = cotangents_of(bind_xw(model_file, X, W, cotangents=3, seed=1).models)
    assert len(first) == 3
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
    assert not np.allclose(first[0], first[1])
    expected = np.random.default_rng(0).standard_normal((4, 2))
    np.testing.assert_array_equal(first[0], expected)


def test_cotangents_take_the_float_dtype_of_the_check(X: FloatArray, W: FloatArray) -> None:
    """A float32 check gives float32 inputs, cotangents and gradients; the cotangent is
    read-only."""
    model_file = load_model_file(MODELS / "dense_tanh_vector.py")
    X32, W32 = X.astype(np.float32), W.astype(np.float32)
    bound = bind_xw(model_file, X32, W32, cotangents=1, dtype="float32")
    (model,) = bound.models
    v = only_cotangent(model)
    assert v.dtype == np.float32
    assert not v.flags.writeable
    assert [a.dtype for a in bound.inputs.values()] == [np.float32, np.float32]
    assert [g.dtype for g in gradient_pair(model, X32, W32)] == [np.float32, np.float32]


def test_user_code_cannot_modify_the_callers_arrays(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """In-place edits of X, W or grad_output in forward and backward do not leak."""
    (model,) = bind_source(
        tmp_path,
        """
        def forward(X, W):
            out = X @ W
            X[:] = 0
            return out

        def backward(X, W, grad_output):
            grad_output *= 0
            W[:] = 0
            return grad_output @ W.T, X.T @ grad_output
        """,
        X,
        W,
        cotangents=1,
    )
    v = only_cotangent(model)
    X0, W0, v0 = X.copy(), W.copy(), v.copy()
    model.value(xw(X, W))
    model.gradient(xw(X, W))
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(v, v0)


# --- loading leaves no trace -----------------------------------------------------------------


def test_loading_leaves_no_module_path_entry_or_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module is not left in sys.modules, its dir not on sys.path, no __pycache__ written."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # PYTHONDONTWRITEBYTECODE would hide it
    path = write_model(
        tmp_path,
        """
        from dataclasses import dataclass

        @dataclass
        class Scale:  # dataclasses look the module up in sys.modules while it runs
            factor: float

        def forward(X, W):
            return float((X @ W).sum()) * Scale(2.0).factor

        def backward(X, W):
            return X, W
        """,
    )
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    model_file = load_model_file(path)
    assert set(sys.modules) == modules_before
    assert sys.path == path_before
    assert str(tmp_path) not in sys.path
    assert not (tmp_path / "__pycache__").exists()
    assert model_file.forward.__module__ not in sys.modules


def test_a_model_file_can_import_a_module_next_to_it(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """The file's directory is on sys.path while it runs, so `import helper` works."""
    write_model(tmp_path, "def total(A):\n    return float(A.sum())\n", "gradcheck_helper_xyz.py")
    source = """
        import gradcheck_helper_xyz

        def forward(X, W):
            return gradcheck_helper_xyz.total(X @ W)

        def backward(X, W):
            return X, W
        """
    try:
        (model,) = bind_source(tmp_path, source, X, W)
        assert model.value(xw(X, W)) == pytest.approx(float((X @ W).sum()))
    finally:
        sys.modules.pop("gradcheck_helper_xyz", None)
    assert str(tmp_path) not in sys.path


def test_main_block_does_not_run(tmp_path: Path) -> None:
    """The file is imported under its own module name, not as __main__."""
    path = write_model(
        tmp_path,
        """
        def forward(X, W):
            return 0.0

        def backward(X, W):
            return X, W

        if __name__ == "__main__":
            raise SystemExit("ran as a script")
        """,
    )
    assert load_model_file(path).name == "model"


# --- faults while loading --------------------------------------------------------------------


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """A path that does not exist is named."""
    missing = tmp_path / "nope.py"
    with pytest.raises(UserCodeError, match=f"^model file not found: {re.escape(str(missing))}$"):
        load_model_file(missing)


def test_directory_is_an_error(tmp_path: Path) -> None:
    """A directory is refused as such."""
    with pytest.raises(UserCodeError, match=r"is a directory, not a \.py file$"):
        load_model_file(tmp_path)


def test_non_python_file_is_an_error(tmp_path: Path) -> None:
    """A file without the .py suffix is refused before anything runs."""
    path = write_model(tmp_path, "raise SystemExit\n", "model.txt")
    with pytest.raises(UserCodeError, match=r"model\.txt is not a \.py file$"):
        load_model_file(path)


def test_syntax_error_names_file_line_and_message(tmp_path: Path) -> None:
    """A SyntaxError: `model.py:3: SyntaxError: <message>`, on one line."""
    path = write_model(
        tmp_path,
        """
        import numpy as np

        def forward(X, W)
            return 0.0
        """,
    )
    with pytest.raises(UserCodeError) as info:
        load_model_file(path)
    assert re.fullmatch(r"model\.py:3: SyntaxError: .*expected ':'.*", str(info.value))


def test_exception_during_import_names_innermost_user_line(tmp_path: Path) -> None:
    """An exception while the file runs names the innermost line of the file and the error."""
    path = write_model(
        tmp_path,
        """
        def setup():
            raise RuntimeError("no GPU\\nfound")

        setup()
        """,
    )
    with pytest.raises(UserCodeError) as info:
        load_model_file(path)
    assert str(info.value) == "model.py:2: loading the file raised RuntimeError: no GPU found"


def test_system_exit_during_import_is_a_user_code_error(tmp_path: Path) -> None:
    """sys.exit() in the file (an argparse at module level, say) does not end gradcheck."""
    path = write_model(tmp_path, "import sys\nsys.exit(2)\n")
    with pytest.raises(
        UserCodeError, match=r"^model\.py:2: loading the file raised SystemExit: 2$"
    ):
        load_model_file(path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "def backward(X, W):\n    return X, W\n",
            r"^model\.py: no forward; a model file defines forward\(X, W\) and backward",
        ),
        (
            "forward = 3\nbackward = None\n",
            r"^model\.py: forward is not callable \(it is int\) and no backward;",
        ),
        ("x = 1\n", r"^model\.py: no forward and no backward;"),
    ],
)
def test_missing_or_uncallable_functions_are_named(
    tmp_path: Path, source: str, message: str
) -> None:
    """Each of forward and backward that is absent or not callable is named."""
    with pytest.raises(UserCodeError, match=message):
        load_model_file(write_model(tmp_path, source))


def test_name_that_is_not_a_string_is_an_error(tmp_path: Path) -> None:
    """A module-level name must be a string."""
    path = write_model(
        tmp_path, "name = 3\n\ndef forward(X, W):\n    return 0.0\n\nbackward = forward\n"
    )
    with pytest.raises(UserCodeError, match=r"^model\.py: name must be a string; got int$"):
        load_model_file(path)


# --- faults in forward and backward ----------------------------------------------------------


def gradient_error(tmp_path: Path, source: str, X: FloatArray, W: FloatArray) -> str:
    """The one-line error a faulty backward gives, both when called and at bind time.

    bind calls backward itself (twice: it must be deterministic), so a faulty backward is
    reported there already; without those probes, the model's gradient call reports it.
    """
    model_file = load_model_file(write_model(tmp_path, source))
    (model,) = bind_xw(model_file, X, W, probes=False).models
    with pytest.raises(UserCodeError) as at_call:
        model.gradient(xw(X, W))
    with pytest.raises(UserCodeError) as at_bind:
        bind_xw(model_file, X, W)
    assert str(at_bind.value) == str(at_call.value)
    return str(at_call.value)


def test_forward_raising_names_innermost_user_line(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """An error raised inside numpy, called from the user's helper, names the user's line."""
    source = """
        import numpy as np

        def helper(X, W):
            return X @ W.T

        def forward(X, W):
            return float(np.sum(helper(X, W)))

        def backward(X, W):
            return X, W
        """
    with pytest.raises(UserCodeError) as info:
        bind_source(tmp_path, source, X, W)
    assert re.fullmatch(r"model\.py:4: forward raised ValueError: matmul: .*", str(info.value))


def test_backward_raising_names_its_line(tmp_path: Path, X: FloatArray, W: FloatArray) -> None:
    """`model.py:5: backward raised ValueError: boom`."""
    source = """
        def forward(X, W):
            return float((X @ W).sum())

        def backward(X, W):
            raise ValueError("boom")
        """
    message = gradient_error(tmp_path, source, X, W)
    assert message == "model.py:5: backward raised ValueError: boom"


@pytest.mark.parametrize(
    ("returned", "described"),
    [
        ("(X, W, W)", "a tuple of 3"),
        ("[X]", "a list of 1"),
        ("1.5", "float"),
        ("None", "NoneType"),
        ("np.stack([X, X])", "an array of shape (2, 4, 3) and dtype float64"),
    ],
)
def test_backward_must_return_a_pair(
    tmp_path: Path, X: FloatArray, W: FloatArray, returned: str, described: str
) -> None:
    """Anything but a 2-tuple/list (or a dict by name) is refused, saying what came back."""
    source = f"""
        import numpy as np

        def forward(X, W):
            return float((X @ W).sum())

        def backward(X, W):
            return {returned}
        """
    message = gradient_error(tmp_path, source, X, W)
    assert message == (
        f"model.py: backward must return (dX, dW), a pair of arrays; got {described}"
    )


def test_backward_of_three_inputs_must_return_three_gradients(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """With three inputs the message lists the three gradients and the dict alternative."""
    source = """
        def forward(X, W, b):
            return float((X @ W + b).sum())

        def backward(X, W, b):
            return X, W
        """
    model_file = load_model_file(write_model(tmp_path, source))
    with pytest.raises(UserCodeError) as info:
        bind(model_file, supplied(X=X, W=W, b=np.zeros(2)))
    assert str(info.value) == (
        "model.py: backward must return (dX, dW, db): one gradient per input in forward's "
        "order, or a dict by name; got a tuple of 2"
    )


def test_backward_dict_naming_no_input_is_an_error(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """A dict key that is not an input (a typo) is named with the inputs."""
    source = """
        def forward(X, W):
            return float((X @ W).sum())

        def backward(X, W):
            return {"X": X, "w": W}
        """
    message = gradient_error(tmp_path, source, X, W)
    assert message == (
        "model.py: backward returned a gradient for 'w', which is not an input; the inputs are X, W"
    )


def test_backward_part_that_is_not_numeric_is_an_error(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """A pair whose dW is not an array of numbers is named."""
    source = """
        def forward(X, W):
            return float((X @ W).sum())

        def backward(X, W):
            return X, "dW"
        """
    message = gradient_error(tmp_path, source, X, W)
    assert message == "model.py: backward returned a dW that is str"


def test_transposed_dW_names_expected_and_actual_shapes(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """dW of W.T's shape: both shapes are named."""
    source = """
        import numpy as np

        def forward(X, W):
            return float(np.sum(np.tanh(X @ W)))

        def backward(X, W):
            d = 1.0 - np.tanh(X @ W) ** 2
            return d @ W.T, (X.T @ d).T
        """
    message = gradient_error(tmp_path, source, X, W)
    assert message == (
        "model.py: backward returned dW of shape (2, 3); expected (3, 2), the shape of W"
    )


def test_backward_non_finite_entry_is_named(tmp_path: Path, X: FloatArray, W: FloatArray) -> None:
    """The first non-finite entry of the gradient is named with its value."""
    source = """
        import numpy as np

        def forward(X, W):
            return float((X @ W).sum())

        def backward(X, W):
            dX = np.ones_like(X)
            dX[0, 1] = np.nan
            dX[2, 0] = np.inf
            return dX, np.ones_like(W)
        """
    message = gradient_error(tmp_path, source, X, W)
    assert message == "model.py: backward returned a non-finite dX[0, 1] = nan"


def test_non_finite_scalar_forward_at_the_input_is_an_error(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """forward(X, W) = inf at the unperturbed input is refused (no warning either)."""
    source = """
        import numpy as np

        def forward(X, W):
            return float(np.exp(1000.0 + X[0, 0]))

        def backward(X, W):
            return X, W
        """
    with pytest.raises(UserCodeError) as info:
        bind_source(tmp_path, source, X, W)
    assert (
        str(info.value)
        == "model.py: forward(X, W) = inf at the given X, W; it must be finite there"
    )


def test_non_finite_vector_forward_entry_is_named(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """The first non-finite entry of an array forward is named at the unperturbed input."""
    source = """
        import numpy as np

        def forward(X, W):
            out = X @ W
            out[1, 0] = np.nan
            return out

        def backward(X, W, grad_output):
            return X, W
        """
    with pytest.raises(UserCodeError) as info:
        bind_source(tmp_path, source, X, W)
    assert str(info.value) == (
        "model.py: forward(X, W)[1, 0] = nan at the given X, W; it must be finite there"
    )


def test_nan_at_a_perturbed_input_is_returned_not_raised(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """Away from the given X, W a NaN from forward reaches the numerics as a NaN value.

    The numerics call value() with numpy's floating-point errors silenced (value() is their
    hot path and does not silence them itself), so this calls it the same way."""
    source = """
        import numpy as np

        def forward(X, W):
            if X[0, 0] > 100:
                return np.log(-1.0)  # nan, and numpy would warn if errors were not ignored
            return float((X @ W).sum())

        def backward(X, W):
            ones = np.ones((X.shape[0], W.shape[1]))
            return ones @ W.T, X.T @ ones
        """
    (model,) = bind_source(tmp_path, source, X, W)
    moved = X.copy()
    moved[0, 0] = 1000.0
    with np.errstate(all="ignore"):
        value = model.value(xw(moved, W))
    assert isinstance(value, float)
    assert math.isnan(value)


def test_forward_changing_its_output_shape_names_both_shapes(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """An array forward whose shape depends on the values is refused, naming both shapes."""
    source = """
        def forward(X, W):
            out = X @ W
            return out[:, 0] if X[0, 0] > 100 else out

        def backward(X, W, grad_output):
            return grad_output @ W.T, X.T @ grad_output
        """
    model = bind_source(tmp_path, source, X, W)[0]
    moved = X.copy()
    moved[0, 0] = 1000.0
    with pytest.raises(UserCodeError) as info:
        model.value(xw(moved, W))
    assert str(info.value) == (
        "model.py: forward returned shape (4,) here but shape (4, 2) at the given X, W; "
        "its output shape must not depend on the values of X and W"
    )


@pytest.mark.parametrize(
    ("returned", "described"), [("None", "NoneType"), ("'0.5'", "str"), ("True", "bool")]
)
def test_forward_must_return_numbers(
    tmp_path: Path, X: FloatArray, W: FloatArray, returned: str, described: str
) -> None:
    """A forward returning no number (a forgotten return, say) is refused, saying what came back."""
    source = f"""
        def forward(X, W):
            return {returned}

        def backward(X, W):
            return X, W
        """
    with pytest.raises(UserCodeError) as info:
        bind_source(tmp_path, source, X, W)
    assert str(info.value) == (
        f"model.py: forward must return a number or an array; got {described}"
    )


def test_array_forward_needs_a_backward_taking_grad_output(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """An array forward with backward(X, W) is refused at bind time with both signatures."""
    source = """
        def forward(X, W):
            return X @ W

        def backward(X, W):
            return X, W
        """
    with pytest.raises(UserCodeError) as info:
        bind_source(tmp_path, source, X, W)
    assert str(info.value) == (
        "model.py: forward returns an array of shape (4, 2), so backward is called as "
        "backward(X, W, grad_output); but its signature is backward(X, W)"
    )


def test_scalar_forward_needs_a_backward_without_grad_output(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """A scalar forward with backward(X, W, grad_output) is refused at bind time."""
    source = """
        def forward(X, W):
            return float((X @ W).sum())

        def backward(X, W, grad_output):
            return X, W
        """
    with pytest.raises(UserCodeError) as info:
        bind_source(tmp_path, source, X, W)
    assert str(info.value) == (
        "model.py: forward returns a scalar, so backward is called as backward(X, W); "
        "but its signature is backward(X, W, grad_output)"
    )


def test_cotangents_must_be_positive(X: FloatArray, W: FloatArray) -> None:
    """cotangents=0 is a caller's error, not a user-code one."""
    model_file = load_model_file(MODELS / "dense_tanh_vector.py")
    with pytest.raises(ValueError, match="cotangents must be at least 1; got 0"):
        bind_xw(model_file, X, W, cotangents=0)


# --- named inputs of any number and shape ----------------------------------------------------

PICKS = """
    import numpy as np

    def forward(x, w, b, scale, y):
        t = np.tanh(x @ w + b)
        return float(scale * np.sum(t[np.arange(len(y)), y]))

    def backward(x, w, b, scale, y):
        t = np.tanh(x @ w + b)
        picked = np.zeros_like(t)
        picked[np.arange(len(y)), y] = 1.0
        dz = scale * picked * (1.0 - t ** 2)
        dx, dw, db, dscale = dz @ w.T, x.T @ dz, dz.sum(axis=0), np.sum(t * picked)
        return {returned}
    """
"""f = scale * sum_i tanh(x @ w + b)[i, y_i]: a 2-D x and w, a 1-D b, a 0-D scale and integer
labels y; backward returns `returned`, built from dx, dw, db and dscale."""


@pytest.fixture
def picks_inputs() -> dict[str, Array]:
    rng = np.random.default_rng(2)
    return {
        "x": rng.standard_normal((4, 3)),
        "w": rng.standard_normal((3, 2)),
        "b": rng.standard_normal(2),
        "scale": np.array(1.5),
        "y": np.array([0, 1, 1, 0]),
    }


def bind_picks(tmp_path: Path, returned: str, inputs: Mapping[str, Array]) -> Bound:
    path = write_model(tmp_path, PICKS.format(returned=returned))
    return bind(load_model_file(path), supplied(**inputs))


@pytest.mark.parametrize(
    "returned",
    [
        "dx, dw, db, dscale, None",
        "dx, dw, db, dscale",
        "[dx, dw, db, dscale, np.zeros(4)]",
        "{'x': dx, 'w': dw, 'b': db, 'scale': dscale}",
        "{'scale': dscale, 'b': db, 'x': dx, 'w': dw, 'y': None}",
    ],
    ids=["tuple-with-None", "floating-only", "list-with-label-gradient", "dict", "dict-reordered"],
)
def test_named_inputs_of_any_shape_match_central_differences(
    tmp_path: Path, picks_inputs: dict[str, Array], returned: str
) -> None:
    """forward(x, w, b, scale, y): 2-D, 1-D and 0-D inputs and integer labels, whichever way
    backward returns the gradients (tuple in forward's order, one per floating input, dict by
    name); every floating input's gradient is its central difference, the labels get none."""
    bound = bind_picks(tmp_path, returned, picks_inputs)
    assert list(bound.inputs) == ["x", "w", "b", "scale", "y"]
    assert {n: a.shape for n, a in bound.inputs.items()} == {
        "x": (4, 3),
        "w": (3, 2),
        "b": (2,),
        "scale": (),
        "y": (4,),
    }
    assert bound.inputs["y"].dtype.kind == "i"
    assert bound.output_shape is None
    (model,) = bound.models
    gradients = model.gradient(bound.inputs)
    assert gradients["y"] is None
    fd = central_differences(scalar_forward(bound.model_file), bound.inputs)
    assert set(fd) == {"x", "w", "b", "scale"}
    for name, expected in fd.items():
        assert close(gradients[name], expected), name


def test_integer_labels_are_constants_never_perturbed(
    tmp_path: Path, picks_inputs: dict[str, Array]
) -> None:
    """A full check passes over x, w, b and the 0-D scale; y is reported as a constant and
    every forward call sees it unchanged."""
    record = "        seen.append(np.array(y, copy=True))\n"
    source = PICKS.format(returned="dx, dw, db, dscale, None").replace(
        "        t = np.tanh(x @ w + b)\n        return",
        f"{record}        t = np.tanh(x @ w + b)\n        return",
    )
    source = source.replace("import numpy as np", "import numpy as np\n\n    seen = []")
    path = write_model(tmp_path, source)
    model_file = load_model_file(path)
    bound = bind(model_file, supplied(**picks_inputs))
    report = run_check(Target(tuple(bound.models), bound.inputs, sources=bound.sources))
    assert report.passed
    assert {n: s.entries for n, s in report.summary.items()} == {
        "x": 12,
        "w": 6,
        "b": 2,
        "scale": 1,
    }
    assert [c.index for c in report.checks if c.wrt == "scale"] == [()]
    label = report.inputs["y"]
    assert (label.checked, label.why) == (False, "constant: an integer array")
    assert (label.shape, label.dtype) == ((4,), "int64")
    forward = model_file.forward
    assert isinstance(forward, types.FunctionType)
    seen: list[NDArray[Any]] = forward.__globals__["seen"]
    assert len(seen) > 20
    for y in seen:
        assert y.dtype == picks_inputs["y"].dtype
        np.testing.assert_array_equal(y, picks_inputs["y"])


@pytest.mark.parametrize(
    "returned",
    ["dx, dw, None, dscale, None", "{'x': dx, 'w': dw, 'scale': dscale}"],
    ids=["None", "missing-key"],
)
def test_an_input_without_a_gradient_is_not_checked(
    tmp_path: Path, picks_inputs: dict[str, Array], returned: str
) -> None:
    """None (or a missing key) for b: b is not checked, and the report says why."""
    bound = bind_picks(tmp_path, returned, picks_inputs)
    assert bound.models[0].gradient(bound.inputs)["b"] is None
    report = run_check(Target(tuple(bound.models), bound.inputs, sources=bound.sources))
    assert report.passed
    assert set(report.summary) == {"x", "w", "scale"}
    assert (report.inputs["b"].checked, report.inputs["b"].why) == (
        False,
        "not checked: the backward gives no gradient for it",
    )


def test_a_bug_in_the_bias_gradient_alone_fails_only_the_bias(
    tmp_path: Path, picks_inputs: dict[str, Array]
) -> None:
    """db 1% too small: every entry of b fails, no entry of x, w or scale does."""
    bound = bind_picks(tmp_path, "dx, dw, 0.99 * db, dscale, None", picks_inputs)
    report = run_check(Target(tuple(bound.models), bound.inputs, sources=bound.sources))
    assert not report.passed
    assert {n: s.failed for n, s in report.summary.items()} == {
        "x": 0,
        "w": 0,
        "b": 2,
        "scale": 0,
    }
    assert sorted(c.index for c in report.checks if not c.passed) == [(0,), (1,)]
    assert {c.wrt for c in report.checks if not c.passed} == {"b"}


# --- example_inputs(), parameters and missing inputs -----------------------------------------

WEIGHTED = """
    import numpy as np

    def example_inputs():
        rng = np.random.default_rng(3)
        return {
            "x": rng.standard_normal((3, 4)),
            "gamma": rng.standard_normal(4),
            "options": {"reduce": "sum"},
            "label": "from example_inputs()",
        }

    def forward(x, gamma, options, label, power=2):
        total = np.sum(gamma * x ** power)
        return float(total if options["reduce"] == "sum" else total / x.size)

    def backward(x, gamma, options, label, power=2):
        scale = 1.0 if options["reduce"] == "sum" else 1.0 / x.size
        return scale * power * gamma * x ** (power - 1), scale * np.sum(x ** power, axis=0)
    """
"""f = sum(gamma * x**power), or its mean: inputs x and gamma, parameters options, label and
power, all from example_inputs() except power (its default, or bind's params)."""


def test_example_inputs_supply_inputs_and_parameters(tmp_path: Path) -> None:
    """With nothing given, example_inputs() gives the arrays (inputs) and the dict and string
    (parameters, passed through unchanged); power keeps its default."""
    model_file = load_model_file(write_model(tmp_path, WEIGHTED))
    bound = bind(model_file, {})
    rng = np.random.default_rng(3)
    x, gamma = rng.standard_normal((3, 4)), rng.standard_normal(4)
    assert list(bound.inputs) == ["x", "gamma"]
    np.testing.assert_array_equal(bound.inputs["x"], x)
    np.testing.assert_array_equal(bound.inputs["gamma"], gamma)
    assert bound.sources == {"x": "example_inputs()", "gamma": "example_inputs()"}
    assert bound.params == {"options": {"reduce": "sum"}, "label": "from example_inputs()"}
    (model,) = bound.models
    assert model.value(bound.inputs) == pytest.approx(float(np.sum(gamma * x**2)), rel=1e-15)
    assert run_check(Target.of(bound.models, bound.inputs)).passed


def test_given_arrays_and_params_override_example_inputs(tmp_path: Path) -> None:
    """A supplied array replaces the example's; params (even a number) are passed unchanged,
    never turned into inputs, and override the example's parameters."""
    model_file = load_model_file(write_model(tmp_path, WEIGHTED))
    x = np.random.default_rng(4).standard_normal((2, 4))
    bound = bind(
        model_file,
        {"x": Supplied(x, "x.npy")},
        params={"power": 3, "options": {"reduce": "mean"}},
    )
    assert list(bound.inputs) == ["x", "gamma"]
    assert bound.sources == {"x": "x.npy", "gamma": "example_inputs()"}
    assert bound.params == {
        "options": {"reduce": "mean"},
        "label": "from example_inputs()",
        "power": 3,
    }
    gamma = bound.inputs["gamma"]
    (model,) = bound.models
    assert model.value(bound.inputs) == pytest.approx(float(np.mean(gamma * x**3)), rel=1e-14)
    report = run_check(Target.of(bound.models, bound.inputs))
    assert report.passed
    assert set(report.summary) == {"x", "gamma"}


def test_a_missing_input_names_it_and_the_option_that_gives_it(
    tmp_path: Path, X: FloatArray
) -> None:
    """An input nobody gives is an InputError naming it and --input NAME=PATH."""
    source = """
        def forward(X, W, b):
            return float((X @ W + b).sum())

        def backward(X, W, b):
            return X, W, b
        """
    model_file = load_model_file(write_model(tmp_path, source))
    with pytest.raises(InputError) as info:
        bind(model_file, supplied(X=X))
    assert not isinstance(info.value, UserCodeError)
    assert str(info.value) == (
        "model.py: no value for 'W', a parameter of forward without a default: give an array "
        "with --input W=PATH (or --inputs FILE.npz), anything else with --param W=JSON, or "
        "define example_inputs() in the model file"
    )


def test_an_input_forward_does_not_take_is_named(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """--input for a name forward has no parameter for is refused, listing its parameters;
    so is --param."""
    model_file = load_model_file(MODELS / "dense_tanh.py")
    with pytest.raises(InputError) as given:
        bind(model_file, supplied(X=X, W=W, b=np.zeros(2)))
    assert str(given.value) == (
        "--input b: dense_tanh.py's forward has no parameter of that name; its parameters are X, W"
    )
    with pytest.raises(InputError) as param:
        bind(model_file, supplied(X=X, W=W), params={"scale": 2})
    assert str(param.value) == (
        "--param scale: dense_tanh.py's forward has no parameter of that name; its parameters "
        "are X, W"
    )


# --- determinism -----------------------------------------------------------------------------

DROPOUT = """
    import numpy as np

    def forward(X, W):
        mask = np.random.default_rng().random(X.shape) < 0.5  # dropout left on: a fresh mask
        return float(np.sum(np.tanh((X * mask) @ W)))

    def backward(X, W):
        return np.zeros_like(X), np.zeros_like(W)
    """


def test_a_forward_with_a_fresh_random_mask_is_not_deterministic(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """Dropout left on: bind refuses, saying so and what to do about it."""
    with pytest.raises(UserCodeError) as info:
        bind_source(tmp_path, DROPOUT, X, W)
    assert re.fullmatch(
        r"model\.py: forward is not deterministic: two calls at the same inputs differ by "
        r"\S+ \(\S+ and \S+\), more than --nondet-tol 0; a dropout layer left on, or an "
        r"unseeded random number generator\? Seed it, or allow the difference with --nondet-tol",
        str(info.value),
    )


def test_nondet_tol_allows_a_random_forward_and_is_its_noise(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """With nondet_tol above any difference two calls can show (f is a sum of 8 tanh, so two
    values differ by less than 16), bind succeeds and records it as f's noise."""
    model_file = load_model_file(write_model(tmp_path, DROPOUT))
    bound = bind_xw(model_file, X, W, nondet_tol=16.0)
    assert bound.precision.noise == 16.0


def test_a_random_backward_is_not_deterministic(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """An unseeded rng in backward: bind refuses, naming the gradient that moved."""
    source = """
        import numpy as np

        def forward(X, W):
            return float(np.sum(X @ W))

        def backward(X, W):
            noise = np.random.default_rng().standard_normal(X.shape)
            ones = np.ones((X.shape[0], W.shape[1]))
            return ones @ W.T + noise, X.T @ ones
        """
    with pytest.raises(UserCodeError) as info:
        bind_source(tmp_path, source, X, W)
    assert re.fullmatch(
        r"model\.py: backward is not deterministic: two calls at the same inputs give dX "
        r"differing by \S+, more than --nondet-tol 0; a dropout layer left on, .*",
        str(info.value),
    )


# --- the precision forward computes in -------------------------------------------------------

FLOAT32_FORWARD = """
    import numpy as np

    def forward(X, W):
        return float(np.sum(np.tanh(X.astype(np.float32) @ W.astype(np.float32))))

    def backward(X, W):
        d = 1.0 - np.tanh(X @ W) ** 2
        return d @ W.T, X.T @ d
    """

INTEGER_FORWARD = """
    import numpy as np

    def forward(X, W):
        return float(np.sum(np.round(X @ W)))

    def backward(X, W):
        return np.zeros_like(X), np.zeros_like(W)
    """


def test_a_float32_forward_on_float64_inputs_is_detected(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """forward casts to float32 and returns a Python float: its eps is float32's."""
    bound = bind_xw(load_model_file(write_model(tmp_path, FLOAT32_FORWARD)), X, W)
    assert bound.precision.eps == float(np.finfo(np.float32).eps)


def test_a_float64_forward_has_the_inputs_precision(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh.py computes in float64: no coarser precision, for scalar and array output."""
    for stem in ("dense_tanh", "dense_tanh_vector"):
        bound = bind_xw(load_model_file(MODELS / f"{stem}.py"), X, W)
        assert bound.precision.eps is None, stem


def test_an_integer_valued_forward_tells_no_precision(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """Integers are exact in any precision: they are no evidence of float32."""
    bound = bind_xw(load_model_file(write_model(tmp_path, INTEGER_FORWARD)), X, W)
    assert bound.precision.eps is None


def test_a_float64_forward_at_small_integer_inputs_is_not_taken_for_float32(
    tmp_path: Path,
) -> None:
    """f = sum(x * w) computed in float64 at small integer-valued inputs: f and f one
    power-of-two step away happen to be float32 numbers too, but that is no evidence that
    forward computes in float32 (it does not: the inputs are float64 and so is every step)."""
    source = """
        import numpy as np

        def forward(x, w):
            return float(np.sum(x * w))

        def backward(x, w):
            return w.copy(), x.copy()
        """
    model_file = load_model_file(write_model(tmp_path, source))
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    w = np.array([[1.0, 1.0], [1.0, 1.0]])
    bound = bind(model_file, supplied(x=x, w=w))
    assert bound.precision.eps is None


# --- user code that writes into its arguments ------------------------------------------------


def test_user_code_writing_into_its_arguments_still_works(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """`X *= 2` in forward and `grad_output *= 2` in backward: the calls fall back to copies,
    the (correct) gradient of tanh(2 X @ W) passes, and neither the caller's arrays, the bound
    inputs nor the cotangents change."""
    source = """
        import numpy as np

        def forward(X, W):
            X *= 2
            return np.tanh(X @ W)

        def backward(X, W, grad_output):
            grad_output *= 2
            d = grad_output / 2 * (1.0 - np.tanh(2 * X @ W) ** 2)
            return 2 * d @ W.T, 2 * X.T @ d
        """
    X0, W0 = X.copy(), W.copy()
    bound = bind_xw(load_model_file(write_model(tmp_path, source)), X, W)
    vectors = [only_cotangent(m).copy() for m in bound.models]
    for model in bound.models:
        v = only_cotangent(model)
        assert model.value(xw(X, W)) == pytest.approx(np.sum(np.tanh(2 * X @ W) * v))
        dX, dW = gradient_pair(model, X, W)
        d = v * (1.0 - np.tanh(2 * X @ W) ** 2)
        np.testing.assert_allclose(dX, 2 * d @ W.T, rtol=1e-13)
        np.testing.assert_allclose(dW, 2 * X.T @ d, rtol=1e-13)
    report = run_check(Target.of(bound.models, bound.inputs))
    assert report.passed
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(bound.inputs["X"], X0)
    np.testing.assert_array_equal(bound.inputs["W"], W0)
    for model, v0 in zip(bound.models, vectors, strict=True):
        np.testing.assert_array_equal(only_cotangent(model), v0)


def test_a_write_through_np_add_at_still_works(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """`np.add.at(X, (0, 0), 1.0)` in forward writes into X as `X[0, 0] += 1` does: the call
    must not reach the check's own arrays, and the (correct) gradient of
    sum(tanh(X' @ W)), X' = X + e_00, passes."""
    source = """
        import numpy as np

        def forward(X, W):
            np.add.at(X, (0, 0), 1.0)
            return float(np.sum(np.tanh(X @ W)))

        def backward(X, W):
            shifted = X.copy()
            shifted[0, 0] += 1.0
            d = 1.0 - np.tanh(shifted @ W) ** 2
            return d @ W.T, shifted.T @ d
        """
    X0 = X.copy()
    bound = bind_xw(load_model_file(write_model(tmp_path, source)), X, W)
    report = run_check(Target.of(bound.models, bound.inputs))
    assert report.passed
    np.testing.assert_array_equal(bound.inputs["X"], X0)
    np.testing.assert_array_equal(X, X0)


def test_a_non_finite_example_input_is_refused_naming_it(tmp_path: Path) -> None:
    """example_inputs() giving a NaN: an InputError naming the input, its source and entry,
    even where forward would never look at it."""
    source = """
        import numpy as np

        def forward(x):
            return float(np.sum(x[1:]))

        def backward(x):
            g = np.ones_like(x)
            g[0] = 0
            return g

        def example_inputs():
            return {"x": np.array([1.0, np.inf, 2.0])}
        """
    model_file = load_model_file(write_model(tmp_path, source))
    with pytest.raises(InputError) as info:
        bind(model_file, {})
    assert str(info.value) == (
        "model.py: input x from example_inputs() holds inf at [1]; the inputs must be finite"
    )
