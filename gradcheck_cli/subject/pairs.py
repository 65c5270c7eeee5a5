"""Which functions of a model file belong together: a layer's forward and backward, a function
and its derivative. Found from the names the file defines, never guessed from a single one.

- A layer is a forward and a backward sharing a stem, the marker (`forward`/`backward`, also
  `fwd`/`bwd`, `fprop`/`bprop`) anywhere among the name's `_`-separated words:
  `affine_forward`/`affine_backward` (layer `affine`), `conv_forward_naive`/`conv_backward_naive`
  (layer `conv_naive`), `forward_propagation_n`/`backward_propagation_n` (`propagation_n`).
- `NAME(...) -> (out, cache)` with `NAME_backward(dout, cache)` is a layer too (deeplearning.ai's
  `sigmoid`/`sigmoid_backward`), when there is no `NAME_forward`.
- A backward whose stem has no forward of its own pairs with the forward of its stem's longest
  leading part: `batchnorm_backward_alt` (layer `batchnorm_alt`) with `batchnorm_forward`.
- A derivative: `NAME` with `NAME_grad`, `NAME_gradient`, `NAME_derivative`, `NAME_deriv` or
  `NAME_prime` (`sigmoid`/`sigmoid_prime`).
- A loss of a layer's output (`loss_for`): the function a backward differentiates when it
  takes arguments forward does not (`compute_cost(AL, Y)` for `L_model_backward(AL, Y, caches)`).

A layer's name is its backward's stem. `find_layer` resolves what the user wrote after the
colon: a layer's name (the exact pair wins: `batchnorm` is batchnorm_forward with
batchnorm_backward, not with batchnorm_backward_alt), its forward's or its backward's name, or
the start of exactly one layer's name (`conv` for `conv_naive`); several layers fitting is an
`AmbiguousName` listing them.

Pure standard library: nothing here knows about numpy, click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FORWARD_MARKERS = ("forward", "fwd", "fprop")
BACKWARD_MARKERS = ("backward", "bwd", "bprop", "backprop")
DERIVATIVE_SUFFIXES = ("grad", "gradient", "derivative", "deriv", "prime")
_GRADIENT_WORDS = ("grad", "delta", "diff", "err", "upstream", "adjoint", "cotangent")


@dataclass(frozen=True)
class Pair:
    """A layer: its name (the backward's stem) and the names of its two functions."""

    name: str
    forward: str
    backward: str

    def describe(self) -> str:
        """`conv_naive (conv_forward_naive/conv_backward_naive)`."""
        return f"{self.name} ({self.forward}/{self.backward})"


class AmbiguousName(Exception):
    """The name fits several layers: `candidates` lists them."""

    def __init__(self, entry: str, candidates: list[Pair]) -> None:
        super().__init__(entry)
        self.entry = entry
        self.candidates = candidates


def stem(name: str, markers: tuple[str, ...]) -> str | None:
    """`conv_forward_naive` -> `conv_naive` for the forward markers; None without a marker.
    A name that is a marker alone (`forward`) has the empty stem: the plain convention's."""
    words = name.split("_")
    found = [i for i, word in enumerate(words) if word.lower() in markers]
    if len(found) != 1:
        return None
    del words[found[0]]
    return "_".join(w for w in words if w)


def layer_pairs(namespace: Mapping[str, object]) -> list[Pair]:
    """Every layer of `namespace` (a module's or a class's attributes), in its order."""
    callables = {n: v for n, v in namespace.items() if callable(v) and not n.startswith("__")}
    forwards: dict[str, str] = {}
    for name in callables:
        forward_stem = stem(name, FORWARD_MARKERS)
        if forward_stem and stem(name, BACKWARD_MARKERS) is None:
            forwards.setdefault(forward_stem, name)
    pairs: list[Pair] = []
    for name in callables:
        backward_stem = stem(name, BACKWARD_MARKERS)
        if not backward_stem or stem(name, FORWARD_MARKERS) is not None:
            continue
        forward = _forward_for(backward_stem, forwards, callables)
        if forward is not None:
            pairs.append(Pair(backward_stem, forward, name))
    return pairs


def _forward_for(
    backward_stem: str, forwards: Mapping[str, str], callables: Mapping[str, object]
) -> str | None:
    """The forward of a backward's stem: NAME_forward, else NAME itself (a function returning
    (out, cache)), else the forward of the stem's longest leading part (`batchnorm` for
    `batchnorm_alt`)."""
    if backward_stem in forwards:
        return forwards[backward_stem]
    if backward_stem in callables and stem(backward_stem, FORWARD_MARKERS) is None:
        return backward_stem
    words = backward_stem.split("_")
    for end in range(len(words) - 1, 0, -1):
        leading = "_".join(words[:end])
        if leading in forwards:
            return forwards[leading]
    return None


def find_layer(namespace: Mapping[str, object], entry: str) -> Pair | None:
    """The layer `entry` names in `namespace`, or None when it names none; `AmbiguousName`
    when it names several. A function or class of that very name is the caller's to try
    before `starting_with`."""
    pairs = layer_pairs(namespace)
    exact = [p for p in pairs if p.name == entry]
    if exact:
        return exact[0]
    by_function = [p for p in pairs if entry in (p.forward, p.backward)]
    if len(by_function) == 1:
        return by_function[0]
    if by_function:
        # One forward, several backwards (batchnorm_backward and batchnorm_backward_alt):
        # the pair whose name is the forward's own stem.
        own = [p for p in by_function if p.name == stem(entry, FORWARD_MARKERS)]
        if len(own) == 1:
            return own[0]
        raise AmbiguousName(entry, by_function)
    return None


def starting_with(namespace: Mapping[str, object], entry: str) -> Pair | None:
    """The one layer whose name starts with `entry` and a `_` (`conv` for `conv_naive`); None
    for none, `AmbiguousName` for several."""
    fitting = [p for p in layer_pairs(namespace) if p.name.startswith(f"{entry}_")]
    if len(fitting) > 1:
        raise AmbiguousName(entry, fitting)
    return fitting[0] if fitting else None


def derivative_of(namespace: Mapping[str, object], name: str) -> str | None:
    """`NAME_prime` (or _grad, _gradient, _derivative, _deriv) when the namespace defines it."""
    for suffix in DERIVATIVE_SUFFIXES:
        candidate = f"{name}_{suffix}"
        if callable(namespace.get(candidate)):
            return candidate
    return None


def backward_name_for(name: str) -> str:
    """The backward a forward named `name` would pair with: `conv_backward_naive` for
    `conv_forward_naive`, `sigmoid_backward` for `sigmoid`."""
    words = name.split("_")
    for i, word in enumerate(words):
        if word.lower() in FORWARD_MARKERS:
            return "_".join([*words[:i], "backward", *words[i + 1 :]])
    return f"{name}_backward"


@dataclass(frozen=True)
class LossOfOutput:
    """A backward that differentiates a loss of forward's output: the loss's name, its
    parameter that takes forward's output, and the arguments neither forward nor the output
    give (the labels, `Y`)."""

    loss: str
    output: str
    extras: tuple[str, ...]


def loss_for(
    pair: Pair, required: Mapping[str, list[str]], every: Mapping[str, list[str]]
) -> LossOfOutput | None:
    """The loss whose gradient `pair`'s backward computes, when backward takes no gradient of
    forward's output but arguments forward does not take (deeplearning.ai's
    `L_model_backward(AL, Y, caches)` with `compute_cost(AL, Y)`;
    `backward_propagation(parameters, cache, X, Y)` with `compute_cost(A2, Y, parameters)`).

    Found by names alone. backward's parameters but the cache's that forward does not take
    (`AL`, `Y`) are its extras; none may read as a gradient (`dAL` would make it a layer's
    dout). The loss is the one other function whose required parameters are forward's, the
    extras and one more, the output (`A2`; or the first extra, `AL`, when it has none
    more), and that takes at least one extra: what a loss of the output needs beyond it;
    of several, the one whose name says cost or loss. `required` gives each function's
    parameters without a default, `every` all of them."""
    forward = set(every.get(pair.forward, []))
    backward = [n for n in required.get(pair.backward, []) if "cache" not in n.lower()]
    extras = [n for n in backward if n not in forward]
    if not extras or any(reads_as_a_gradient(n) for n in extras):
        return None
    found: list[LossOfOutput] = []
    for name, names in required.items():
        if name in (pair.forward, pair.backward) or not set(names) & set(extras):
            continue
        unknown = [n for n in names if n not in forward and n not in extras]
        if len(unknown) == 1:
            output = unknown[0]
        elif not unknown and extras[0] == backward[0] and extras[0] in names:
            output = extras[0]  # backward takes the output first: L_model_backward(AL, ...)
        else:
            continue
        others = tuple(n for n in (*extras, *names) if n != output and n not in forward)
        found.append(LossOfOutput(name, output, tuple(dict.fromkeys(others))))
    # Several fit (nn_model(X, Y, n_h) beside compute_cost(A2, Y, parameters)): the one named
    # a cost or a loss.
    named = [f for f in found if "cost" in f.loss.lower() or "loss" in f.loss.lower()]
    chosen = found if len(found) == 1 else named
    return chosen[0] if len(chosen) == 1 else None


def reads_as_a_gradient(name: str) -> bool:
    """`dout`, `dA`, `dnext_h`, `grad_output`, `delta`: names of an output's gradient."""
    lowered = name.lower()
    return lowered.startswith("d") or any(word in lowered for word in _GRADIENT_WORDS)
