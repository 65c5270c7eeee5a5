"""Further input points (`--points K`): where else a layer is checked besides its given inputs.

A gradient checked at one point can be right there and wrong elsewhere: a backward whose
`x < 0` branch is wrong passes at all-positive examples, a clipped or masked path is never
exercised. Point 1 is the inputs as given; points 2..K have the same names, shapes and dtypes:

- from the file's `sample_inputs(rng)` (or `NAME_sample_inputs(rng)`) when it defines one: a
  dict like example_inputs()'s, each array shaped like the given one (an input it leaves out
  keeps its given value; parameters stay as given);
- otherwise drawn: each floating input entry by entry, its magnitude like the given array's
  (the mean of |x|, spread by its standard deviation, at least half the mean), its sign + or -
  with even odds, so that both signs of every input are exercised whatever signs the examples
  had. An all-zero input is drawn standard normal. Integer and boolean inputs (labels, masks)
  are kept, as are parameters and a class's own attributes.

Each point's generator is seeded by (`--seed`, the layer's name, the point's number): a point
is the same whichever other layers run, and `--points 5 --seed 3` draws again what it drew.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.subject.calling import call_user_function
from gradcheck_cli.subject.conventions import ModelFile, signature_of
from gradcheck_cli.subject.groups import head_of, member_name
from gradcheck_cli.subject.messages import describe

Arrays = dict[str, NDArray[Any]]


def point_rng(seed: int, layer: str, point: int) -> np.random.Generator:
    """The generator of one layer's point: the same for the same seed, layer and point."""
    return np.random.default_rng([seed, zlib.crc32(layer.encode("utf-8")), point])


def replayable_inputs(inputs: Mapping[str, NDArray[Any]], model_file: ModelFile | None) -> Arrays:
    """The inputs a point gives by name: those of forward's parameters (a class's own array
    attributes are not given from outside: they keep their values)."""
    if model_file is None:  # a built-in model: X and W
        return dict(inputs)
    names = set(signature_of(model_file).parameters)
    return {name: array for name, array in inputs.items() if head_of(name) in names}


def draw_point(
    given: Mapping[str, NDArray[Any]],
    rng: np.random.Generator,
    model_file: ModelFile | None,
) -> tuple[Arrays, str]:
    """Point k's inputs and their origin (`sample_inputs` or `drawn`), from the `given` ones
    (point 1's, those `replayable_inputs` names)."""
    sampler = model_file.sample_inputs if model_file is not None else None
    if sampler is not None and model_file is not None:
        return _sampled(given, rng, model_file), "sample_inputs"
    drawn: Arrays = {}
    for name, array in given.items():
        drawn[name] = _drawn(array, rng) if array.dtype.kind == "f" else array
    return drawn, "drawn"


def _drawn(array: NDArray[Any], rng: np.random.Generator) -> NDArray[Any]:
    magnitude = np.abs(np.asarray(array, dtype=np.float64))
    mean = float(magnitude.mean()) if magnitude.size else 0.0
    if mean == 0.0 or not np.isfinite(mean):
        values = rng.standard_normal(array.shape)
    else:
        spread = max(float(magnitude.std()), mean / 2)
        sizes = np.abs(mean + spread * rng.standard_normal(array.shape))
        signs = np.where(rng.random(array.shape) < 0.5, -1.0, 1.0)
        values = signs * sizes
    return np.ascontiguousarray(values, dtype=array.dtype)


def _sampled(
    given: Mapping[str, NDArray[Any]], rng: np.random.Generator, model_file: ModelFile
) -> Arrays:
    """The user's `sample_inputs(rng)` as a point: checked against the given inputs."""
    sampler = model_file.sample_inputs
    assert sampler is not None
    role = getattr(sampler, "__name__", "sample_inputs")
    label = model_file.label
    result = call_user_function(model_file, role, sampler, (rng,), {})
    if not isinstance(result, Mapping) or not all(isinstance(k, str) for k in result):
        raise UserCodeError(
            f"{label}: {role}(rng) must return a dict of arrays by input name, as "
            f"example_inputs() does; got {describe(result)}"
        )
    parameters = set(signature_of(model_file).parameters)
    point: Arrays = dict(given)
    for key, value in result.items():
        members = (
            {member_name(key, k): v for k, v in value.items()}
            if isinstance(value, Mapping)
            else {key: value}
        )
        for name, array in members.items():
            if name not in given:
                if head_of(name) in parameters:
                    continue  # a parameter (conv_param): kept as given
                raise UserCodeError(
                    f"{label}: {role}(rng) returned {name!r}, which is not an input of the "
                    f"layer; its inputs are {', '.join(given)}"
                )
            point[name] = _like(given[name], array, name, f"{label}: {role}(rng)")
    return point


def _like(given: NDArray[Any], value: object, name: str, where: str) -> NDArray[Any]:
    """`value` as an array of `given`'s shape and dtype, or a UserCodeError saying how not."""
    try:
        array = np.asarray(value)
    except Exception as error:
        raise UserCodeError(f"{where} gave {name} as {describe(value)}: {error}") from None
    if array.shape != given.shape:
        raise UserCodeError(
            f"{where} gave {name} of shape {array.shape}; the given {name} has shape "
            f"{given.shape}, and every point has the given inputs' shapes"
        )
    kinds = {"f": "floating", "i": "integer", "u": "integer", "b": "boolean"}
    if kinds.get(array.dtype.kind) != kinds.get(given.dtype.kind):
        raise UserCodeError(
            f"{where} gave {name} as {array.dtype} values; the given {name} is {given.dtype}"
        )
    return np.ascontiguousarray(array, dtype=given.dtype)
