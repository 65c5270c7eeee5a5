"""Loading and binding `--model path/to/model.py` files (gradcheck_cli.user_model)."""

from __future__ import annotations

import math
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.models import Array, ContractedModel, Model
from gradcheck_cli.user_model import FileModel, ModelFile, bind_models, load_model_file

FloatArray = NDArray[np.float64]
MODELS = Path(__file__).resolve().parent.parent / "fixtures" / "models"
STEP = 1e-6


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


def bind_source(directory: Path, source: str, X: FloatArray, W: FloatArray) -> list[Model]:
    return bind_models(load_model_file(write_model(directory, source)), X, W)


def central_difference(
    f: Callable[[FloatArray, FloatArray], float], X: FloatArray, W: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(df/dX, df/dW) by central differences with step STEP, one entry at a time."""
    grads = []
    for which in (0, 1):
        args = [X.copy(), W.copy()]
        grad = np.zeros_like(args[which])
        for index in np.ndindex(grad.shape):
            base = args[which][index]
            args[which][index] = base + STEP
            up = f(args[0], args[1])
            args[which][index] = base - STEP
            down = f(args[0], args[1])
            args[which][index] = base
            grad[index] = (up - down) / (2 * STEP)
        grads.append(grad)
    return grads[0], grads[1]


def scalar_forward(model_file: ModelFile) -> Callable[[FloatArray, FloatArray], float]:
    """The user's scalar forward as a float, bypassing the wrappers under test."""
    return lambda X, W: float(np.asarray(model_file.forward(X, W)))


def contracted_forward(
    model_file: ModelFile, v: Array
) -> Callable[[FloatArray, FloatArray], float]:
    """<forward(X, W), v> straight from the user's forward, bypassing the wrappers under test."""
    return lambda X, W: float(np.sum(np.asarray(model_file.forward(X, W)) * v))


def close(a: Array, b: Array) -> bool:
    # atol: gradients here are O(1); round-off in the difference quotient is ~1e-10.
    return bool(np.allclose(a, b, rtol=1e-6, atol=1e-8))


# --- correct and buggy models ----------------------------------------------------------------


def test_correct_scalar_model_matches_central_differences(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh.py: backward(X, W) equals central differences of forward, as float arrays."""
    model_file = load_model_file(MODELS / "dense_tanh.py")
    (model,) = bind_models(model_file, X, W)
    assert isinstance(model, FileModel)
    assert model.value(X, W) == pytest.approx(np.sum(np.tanh(X @ W)), rel=1e-15)
    dX, dW = model.gradient(X, W)
    fd_X, fd_W = central_difference(scalar_forward(model_file), X, W)
    assert dX.dtype == np.float64
    assert dW.dtype == np.float64
    assert close(dX, fd_X)
    assert close(dW, fd_W)


def test_buggy_scalar_model_differs_from_central_differences(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh_bug.py: the planted derivative bug shows in both dX and dW."""
    model_file = load_model_file(MODELS / "dense_tanh_bug.py")
    (model,) = bind_models(model_file, X, W)
    dX, dW = model.gradient(X, W)
    fd_X, fd_W = central_difference(scalar_forward(model_file), X, W)
    assert not close(dX, fd_X)
    assert not close(dW, fd_W)


def test_correct_vector_model_matches_central_differences(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh_vector.py: for each cotangent v, backward(X, W, v) is the gradient of <f, v>."""
    model_file = load_model_file(MODELS / "dense_tanh_vector.py")
    models = bind_models(model_file, X, W)
    assert len(models) == 2
    for model in models:
        assert isinstance(model, ContractedModel)
        v = model.cotangent
        assert v.shape == (4, 2)
        assert model.value(X, W) == pytest.approx(np.sum(np.tanh(X @ W) * v), rel=1e-15)
        dX, dW = model.gradient(X, W)
        fd_X, fd_W = central_difference(contracted_forward(model_file, v), X, W)
        assert close(dX, fd_X)
        assert close(dW, fd_W)


def test_buggy_vector_model_is_wrong_in_dW_only(X: FloatArray, W: FloatArray) -> None:
    """dense_tanh_vector_bug.py: dX matches central differences, dW does not."""
    model_file = load_model_file(MODELS / "dense_tanh_vector_bug.py")
    for model in bind_models(model_file, X, W):
        assert isinstance(model, ContractedModel)
        dX, dW = model.gradient(X, W)
        fd_X, fd_W = central_difference(contracted_forward(model_file, model.cotangent), X, W)
        assert close(dX, fd_X)
        assert not close(dW, fd_W)


def test_labels_come_from_the_file_or_default_to_its_name(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """name/formula from the module; else the file's stem and "forward(X, W) from <file>"."""
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
    assert (plain.name, plain.formula) == ("plain_model", "forward(X, W) from plain_model.py")
    assert plain.path == tmp_path.resolve() / "plain_model.py"


def test_vector_models_are_named_and_describe_their_cotangent(X: FloatArray, W: FloatArray) -> None:
    """Each cotangent model's name and formula say which cotangent, seed and count it uses."""
    models = bind_models(load_model_file(MODELS / "dense_tanh_vector.py"), X, W, seed=7)
    assert [m.name for m in models] == ["dense-tanh-vector/v1", "dense-tanh-vector/v2"]
    assert models[1].formula == "<tanh(X @ W), v>, v ~ N(0, 1), seed 7, cotangent 2 of 2"


def test_user_models_are_not_complex_analytic(X: FloatArray, W: FloatArray) -> None:
    """Complex-step is refused for user code, scalar and vector alike."""
    scalar = bind_models(load_model_file(MODELS / "dense_tanh.py"), X, W)
    vector = bind_models(load_model_file(MODELS / "dense_tanh_vector.py"), X, W)
    assert [m.complex_analytic for m in scalar + vector] == [False, False, False]


# --- cotangents ------------------------------------------------------------------------------


def cotangents_of(models: list[Model]) -> list[Array]:
    out = []
    for model in models:
        assert isinstance(model, ContractedModel)
        out.append(model.cotangent)
    return out


def test_cotangents_are_reproducible_per_seed_and_differ_between_seeds(
    X: FloatArray, W: FloatArray
) -> None:
    """Same seed, same cotangents; another seed, other cotangents; the k cotangents differ."""
    model_file = load_model_file(MODELS / "dense_tanh_vector.py")
    first = cotangents_of(bind_models(model_file, X, W, cotangents=3, seed=0))
    again = cotangents_of(bind_models(model_file, X, W, cotangents=3, seed=0))
    other = cotangents_of(bind_models(model_file, X, W, cotangents=3, seed=1))
    assert len(first) == 3
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
    assert not np.allclose(first[0], first[1])
    expected = np.random.default_rng(0).standard_normal((4, 2))
    np.testing.assert_array_equal(first[0], expected)


def test_cotangents_take_the_float_dtype_of_X(X: FloatArray, W: FloatArray) -> None:
    """float32 X gives float32 cotangents and gradients; the cotangent is read-only."""
    model_file = load_model_file(MODELS / "dense_tanh_vector.py")
    X32, W32 = X.astype(np.float32), W.astype(np.float32)
    (model,) = bind_models(model_file, X32, W32, cotangents=1)
    assert isinstance(model, ContractedModel)
    assert model.cotangent.dtype == np.float32
    assert not model.cotangent.flags.writeable
    assert [g.dtype for g in model.gradient(X32, W32)] == [np.float32, np.float32]


def test_user_code_cannot_modify_the_callers_arrays(
    tmp_path: Path, X: FloatArray, W: FloatArray
) -> None:
    """forward and backward get copies: in-place edits of X, W or grad_output do not leak."""
    (model,) = bind_models(
        load_model_file(
            write_model(
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
            )
        ),
        X,
        W,
        cotangents=1,
    )
    assert isinstance(model, ContractedModel)
    X0, W0, v0 = X.copy(), W.copy(), model.cotangent.copy()
    model.value(X, W)
    model.gradient(X, W)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(model.cotangent, v0)


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
    path = write_model(
        tmp_path,
        """
        import gradcheck_helper_xyz

        def forward(X, W):
            return gradcheck_helper_xyz.total(X @ W)

        def backward(X, W):
            return X, W
        """,
    )
    try:
        (model,) = bind_models(load_model_file(path), X, W)
        assert model.value(X, W) == pytest.approx(float((X @ W).sum()))
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
    (model,) = bind_source(tmp_path, source, X, W)
    with pytest.raises(UserCodeError) as info:
        model.gradient(X, W)
    assert str(info.value) == "model.py:5: backward raised ValueError: boom"


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
    """Anything but a 2-tuple/list is refused, saying what came back."""
    source = f"""
        import numpy as np

        def forward(X, W):
            return float((X @ W).sum())

        def backward(X, W):
            return {returned}
        """
    (model,) = bind_source(tmp_path, source, X, W)
    with pytest.raises(UserCodeError) as info:
        model.gradient(X, W)
    assert str(info.value) == (
        f"model.py: backward must return (dX, dW), a pair of arrays; got {described}"
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
    (model,) = bind_source(tmp_path, source, X, W)
    with pytest.raises(UserCodeError, match=r"^model\.py: backward returned a dW that is str$"):
        model.gradient(X, W)


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
    (model,) = bind_source(tmp_path, source, X, W)
    with pytest.raises(UserCodeError) as info:
        model.gradient(X, W)
    assert str(info.value) == (
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
    (model,) = bind_source(tmp_path, source, X, W)
    with pytest.raises(UserCodeError) as info:
        model.gradient(X, W)
    assert str(info.value) == "model.py: backward returned a non-finite dX[0, 1] = nan"


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
    """Away from the given X, W a NaN from forward reaches the numerics as a NaN value."""
    source = """
        import numpy as np

        def forward(X, W):
            if X[0, 0] > 100:
                return np.log(-1.0)  # nan, and numpy would warn if errors were not ignored
            return float((X @ W).sum())

        def backward(X, W):
            return np.ones_like(X) @ W, X
        """
    (model,) = bind_source(tmp_path, source, X, W)
    moved = X.copy()
    moved[0, 0] = 1000.0
    value = model.value(moved, W)
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
        model.value(moved, W)
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
    with pytest.raises(UserCodeError, match=r"forward returns a scalar, so backward is called as"):
        bind_source(tmp_path, source, X, W)


def test_cotangents_must_be_positive(X: FloatArray, W: FloatArray) -> None:
    """cotangents=0 is a caller's error, not a user-code one."""
    model_file = load_model_file(MODELS / "dense_tanh_vector.py")
    with pytest.raises(ValueError, match="cotangents must be at least 1; got 0"):
        bind_models(model_file, X, W, cotangents=0)
