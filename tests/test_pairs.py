"""Which functions of a file belong together (`subject.pairs`), and what `--model FILE.py:NAME`
loads for each way course code names them: found from the names, never guessed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.subject.files import load_model_file
from gradcheck_cli.subject.pairs import (
    AmbiguousName,
    Pair,
    backward_name_for,
    derivative_of,
    find_layer,
    layer_pairs,
    starting_with,
    stem,
)


def function() -> None:
    """A stand-in: pairs look at names and callability only."""


def namespace(*names: str) -> dict[str, object]:
    return {name: function for name in names}


@pytest.mark.parametrize(
    ("name", "forward", "backward"),
    [
        ("affine_forward", "affine", None),
        ("conv_forward_naive", "conv_naive", None),
        ("max_pool_backward_fast", None, "max_pool_fast"),
        ("batchnorm_backward_alt", None, "batchnorm_alt"),
        ("forward_propagation_n", "propagation_n", None),
        ("L_model_forward", "L_model", None),
        ("forward", "", None),
        ("softmax_loss", None, None),
        ("forwardforward", None, None),
    ],
)
def test_a_stem_is_the_name_without_its_marker_word(
    name: str, forward: str | None, backward: str | None
) -> None:
    """The marker is a whole `_`-separated word anywhere in the name; the rest is the stem."""
    assert stem(name, ("forward", "fwd", "fprop")) == forward
    assert stem(name, ("backward", "bwd", "bprop", "backprop")) == backward


def test_layers_are_found_by_stem_whatever_the_markers_place() -> None:
    """Every way the corpus names a layer gives one pair, named by its backward's stem."""
    found = layer_pairs(
        namespace(
            "affine_forward",
            "affine_backward",
            "conv_forward_naive",
            "conv_backward_naive",
            "batchnorm_forward",
            "batchnorm_backward",
            "batchnorm_backward_alt",
            "sigmoid",
            "sigmoid_backward",
            "forward_propagation_n",
            "backward_propagation_n",
            "softmax_loss",
            "halfway_forward",
        )
    )
    assert found == [
        Pair("affine", "affine_forward", "affine_backward"),
        Pair("conv_naive", "conv_forward_naive", "conv_backward_naive"),
        Pair("batchnorm", "batchnorm_forward", "batchnorm_backward"),
        Pair("batchnorm_alt", "batchnorm_forward", "batchnorm_backward_alt"),
        Pair("sigmoid", "sigmoid", "sigmoid_backward"),
        Pair("propagation_n", "forward_propagation_n", "backward_propagation_n"),
    ]


def test_a_marked_forward_wins_over_a_bare_name() -> None:
    """relu_forward and relu both exist: relu_backward pairs with relu_forward."""
    pairs = layer_pairs(namespace("relu", "relu_forward", "relu_backward"))
    assert pairs == [Pair("relu", "relu_forward", "relu_backward")]


def test_the_exact_pair_wins_and_the_other_backward_has_its_own_name() -> None:
    """`batchnorm` is batchnorm_forward with batchnorm_backward; `batchnorm_alt`, and the
    name of its backward, the other; the forward's name is the exact pair too."""
    space = namespace("batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt")
    exact = Pair("batchnorm", "batchnorm_forward", "batchnorm_backward")
    alt = Pair("batchnorm_alt", "batchnorm_forward", "batchnorm_backward_alt")
    assert find_layer(space, "batchnorm") == exact
    assert find_layer(space, "batchnorm_forward") == exact
    assert find_layer(space, "batchnorm_alt") == alt
    assert find_layer(space, "batchnorm_backward_alt") == alt


def test_a_forward_with_only_other_backwards_is_ambiguous() -> None:
    """Two backwards for one forward, neither its own: the forward's name fits both."""
    space = namespace("norm_forward", "norm_backward_a", "norm_backward_b")
    with pytest.raises(AmbiguousName) as info:
        find_layer(space, "norm_forward")
    assert [p.name for p in info.value.candidates] == ["norm_a", "norm_b"]


def test_the_start_of_one_layers_name_names_it_and_of_two_is_ambiguous() -> None:
    """`conv` for conv_naive alone; with conv_fast too, both are listed."""
    one = namespace("conv_forward_naive", "conv_backward_naive")
    assert starting_with(one, "conv") == Pair(
        "conv_naive", "conv_forward_naive", "conv_backward_naive"
    )
    assert starting_with(one, "pool") is None
    two = namespace(
        "conv_forward_naive", "conv_backward_naive", "conv_forward_fast", "conv_backward_fast"
    )
    with pytest.raises(AmbiguousName) as info:
        starting_with(two, "conv")
    assert [p.name for p in info.value.candidates] == ["conv_naive", "conv_fast"]


def test_derivatives_and_backward_names() -> None:
    """NAME_prime (or _grad, ...) is NAME's derivative; a forward's backward keeps its words."""
    assert derivative_of(namespace("sigmoid", "sigmoid_prime"), "sigmoid") == "sigmoid_prime"
    assert derivative_of(namespace("sigmoid", "sigmoid_grad"), "sigmoid") == "sigmoid_grad"
    assert derivative_of(namespace("sigmoid"), "sigmoid") is None
    assert backward_name_for("conv_forward_naive") == "conv_backward_naive"
    assert backward_name_for("sigmoid") == "sigmoid_backward"


# --- loading --------------------------------------------------------------------------------

NAIVE = """
import numpy as np


def conv_forward_naive(x, w):
    return x * w, (x, w)


def conv_backward_naive(dout, cache):
    x, w = cache
    return dout * w, dout * x


def conv_forward_fast(x, w):
    return x * w, (x, w)


def conv_backward_fast(dout, cache):
    x, w = cache
    return dout * w, dout * x


def sigmoid(z):
    s = 1 / (1 + np.exp(-z))
    return s, s


def sigmoid_backward(da, cache):
    return da * cache * (1 - cache)
"""


@pytest.fixture
def naive(tmp_path: Path) -> Path:
    path = tmp_path / "naive.py"
    path.write_text(textwrap.dedent(NAIVE), encoding="utf-8")
    return path


def test_a_forward_name_loads_its_layer(naive: Path) -> None:
    """`:conv_forward_naive` is the layer conv_naive, labelled as the user wrote it."""
    model_file = load_model_file(naive, "conv_forward_naive")
    assert model_file.convention == "layer"
    assert model_file.name == "conv_naive"
    assert model_file.label == "naive.py:conv_forward_naive"
    assert getattr(model_file.backward, "__name__", None) == "conv_backward_naive"


def test_a_function_returning_out_and_cache_with_its_backward_is_a_layer(naive: Path) -> None:
    """`:sigmoid` is sigmoid(z) -> (s, cache) with sigmoid_backward, not a loss."""
    model_file = load_model_file(naive, "sigmoid")
    assert (model_file.convention, model_file.name) == ("layer", "sigmoid")
    assert model_file.formula == "sigmoid(...) from naive.py"


def test_an_ambiguous_name_lists_the_layers_and_how_to_name_one(naive: Path) -> None:
    """`:conv` fits conv_naive and conv_fast: exit 2 listing both and an example."""
    with pytest.raises(UserCodeError) as info:
        load_model_file(naive, "conv")
    assert str(info.value) == (
        "naive.py: conv names 2 layers: conv_naive (conv_forward_naive/conv_backward_naive), "
        "conv_fast (conv_forward_fast/conv_backward_fast); name one of them, as in --model "
        "naive.py:conv_naive"
    )


@pytest.mark.parametrize(
    ("text", "name", "index"),
    [
        ("parameters.W1[0,3]", "parameters.W1", (0, 3)),
        ("params.b2[1]", "params.b2", (1,)),
        ("w[0,1]", "w", (0, 1)),
        ("0,1", None, (0, 1)),
    ],
)
def test_an_entry_may_name_a_dict_arguments_array(
    text: str, name: str | None, index: tuple[int, ...]
) -> None:
    """`parameters.W1[0,3]` is entry (0, 3) of the input parameters.W1."""
    from gradcheck_cli.commands.options import parse_entry

    entry = parse_entry(text)
    assert (entry.name, entry.index) == (name, index)
    assert str(entry) == text


@pytest.mark.parametrize("text", ["parameters.[0]", ".W1[0]", "parameters..W1[0]", "1a[0]"])
def test_a_malformed_dotted_entry_is_refused(text: str) -> None:
    """An empty or leading-digit part is no name: the whole text comes back in the error."""
    from gradcheck_cli.commands.options import parse_entry

    with pytest.raises(ValueError, match=re.escape(text)):
        parse_entry(text)
