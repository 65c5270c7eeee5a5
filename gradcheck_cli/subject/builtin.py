"""The built-in models' subject: a model such as sigmoid-sum on a 2-D X and W, the seed's
unless the command line gives others.

The built-in models compute f(X @ W): X's columns must equal W's rows, and both are matrices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import Array, ElementwiseModel, Model
from gradcheck_cli.numerics.schemes import Precision
from gradcheck_cli.report import ModelInfo, OutputShape
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.seed import SEED_SOURCE, seed_matrices


@dataclass(frozen=True)
class BuiltinSubject:
    """A built-in model at its X and W.

    The same shape as a model file's `binding.Bound`, so that a command reads either alike;
    None where a model file has functions of its own.
    """

    builtin: ElementwiseModel
    info: ModelInfo
    inputs: dict[str, Array]
    sources: dict[str, str]
    precision: Precision = field(default_factory=Precision)
    output_shape: OutputShape = None
    model_file: None = None
    params: dict[str, object] = field(default_factory=dict)
    recipe: None = None
    functions: None = None
    side_effects: tuple[()] = ()
    """A built-in model is none of the user's code: no side effects to check."""

    @property
    def models(self) -> list[Model]:
        """The one model checked: the built-in model itself."""
        return [self.builtin]

    @property
    def gradient_shapes(self) -> dict[str, tuple[int, ...]]:
        """None differs: a built-in model's gradients are shaped like X and W."""
        return {}

    def parallel(self, jobs: int | None) -> None:
        """No worker processes: a built-in model's paths are closed-form, not forward calls."""
        return None


def builtin_subject(
    model: ElementwiseModel, supplied: Mapping[str, Supplied], dtype: str
) -> BuiltinSubject:
    """`model` at the supplied X and W (the seed's where none is supplied), in `dtype`."""
    seed_X, seed_W = seed_matrices()
    seeds = {"X": seed_X, "W": seed_W}
    inputs: dict[str, Array] = {}
    sources: dict[str, str] = {}
    for name in ("X", "W"):
        if name in supplied:
            array, source = supplied[name].array, supplied[name].source
        else:
            array, source = seeds[name].astype(np.dtype(dtype)), SEED_SOURCE
        if array.ndim != 2:
            raise InputError(
                f"{name} {array.shape} from {source} is not a 2-D matrix (the built-in models "
                "take a 2-D X and W)"
            )
        if array.size == 0:
            raise InputError(f"{name} from {source} is empty")
        inputs[name] = np.asarray(array, dtype=np.dtype(dtype))
        sources[name] = source
    X, W = inputs["X"], inputs["W"]
    if X.shape[1] != W.shape[0]:
        raise InputError(
            f"X {X.shape} from {sources['X']} and W {W.shape} from {sources['W']} "
            f"do not fit: X's {X.shape[1]} columns must equal W's {W.shape[0]} rows"
        )
    info = ModelInfo(model.name, model.formula, "builtin", model.gradient_formula)
    return BuiltinSubject(model, info, inputs, sources)
