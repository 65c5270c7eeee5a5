"""What a check is about: the model at its inputs, and how the report describes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gradcheck_cli.numerics.models import Inputs, Model
from gradcheck_cli.numerics.schemes import Precision
from gradcheck_cli.report import ModelInfo, OutputShape


@dataclass(frozen=True)
class Target:
    """The model(s) and their inputs by name. An array-valued forward is one model per random
    cotangent v, each the scalar <forward, v> whose gradient is the user's vector-Jacobian
    product for v; a scalar forward is one model."""

    models: tuple[Model, ...]
    inputs: Inputs
    about: ModelInfo | None = None
    """How the report names the model; None: by the model's own name and formula."""
    sources: Mapping[str, str] = field(default_factory=dict)
    """Where each input came from (a path, example_inputs(), ...)."""
    precision: Precision = Precision()
    output_shape: OutputShape = None
    """None for a scalar forward; else the shape(s) of forward's output."""

    @staticmethod
    def of(model: Model | Sequence[Model], inputs: Inputs) -> Target:
        """A target of a model (or one per cotangent) at `inputs`, described by its own name."""
        models = (model,) if isinstance(model, Model) else tuple(model)
        return Target(models, inputs)

    @property
    def model(self) -> Model:
        """The first model: the scalar forward itself, or <forward, v1>."""
        return self.models[0]

    @property
    def cotangents(self) -> int | None:
        """How many cotangents an array-valued forward is checked through; None for a scalar."""
        return len(self.models) if self.output_shape is not None else None
