"""Binding a model file to its inputs and parameters: the scalar models a check runs.

A scalar forward gives one model, forward itself (`FileModel`). Array outputs give models
<forward(inputs), v>, each with its own seeded standard normal cotangent v per output; their
gradient is the user's VJP for v (`ContractedModel`). `bind` also probes the user's code
(`probes`) and says how a worker process binds the same model again (`ModelRecipe`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.numerics.bfloat16 import BFLOAT16, in_dtype
from gradcheck_cli.numerics.bfloat16 import EPS as BFLOAT16_EPS
from gradcheck_cli.numerics.models import Array, ContractedModel, Gradients, Inputs, Model
from gradcheck_cli.numerics.schemes import Precision
from gradcheck_cli.report import ModelInfo, OutputShape, SideEffect
from gradcheck_cli.subject.arguments import Supplied, resolve_arguments
from gradcheck_cli.subject.calling import Caller, fingerprints
from gradcheck_cli.subject.conventions import CallCounter, ModelFile, in_precision
from gradcheck_cli.subject.files import load_model_file
from gradcheck_cli.subject.framework_effects import framework_side_effects
from gradcheck_cli.subject.functions import ModelFunctions
from gradcheck_cli.subject.instances import instantiate
from gradcheck_cli.subject.messages import first_index, format_index, given_inputs
from gradcheck_cli.subject.probes import check_deterministic, forward_precision
from gradcheck_cli.subject.side_effects import side_effect_checks

if TYPE_CHECKING:
    from gradcheck_cli.numerics.workers import Parallel


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker process binds the same model again (--jobs): picklable when the model
    file's path is known, or when the API's functions pickle (module-level functions)."""

    path: str | None
    entry: str | None
    model_file: ModelFile | None
    """The functions themselves, for the API (None for a file, which the worker imports)."""
    params: dict[str, object]
    dtype: str
    cotangents: int
    seed: int
    copying: bool = False
    """The model's code writes into its arguments: every call gets copies."""
    device: str | None = None
    """--device: a PyTorch or JAX model's tensors go where the parent's do."""
    cotangent_dtype: str | None = None
    """The precision the cotangents are drawn through (a float64 reference of a float16 run)."""

    def __call__(self, inputs: Mapping[str, Array]) -> tuple[list[Model], CallCounter]:
        model_file = self.model_file
        if model_file is None:
            assert self.path is not None
            model_file = load_model_file(Path(self.path), self.entry, device=self.device)
        bound = bind(
            model_file,
            {name: Supplied(np.asarray(array), "worker") for name, array in inputs.items()},
            self.params,
            dtype=self.dtype,
            cotangents=self.cotangents,
            seed=self.seed,
            probes=False,
            copy_inputs=False,
            copying=self.copying,
            cotangent_dtype=self.cotangent_dtype,
        )
        return bound.models, model_file.counter


@dataclass(frozen=True)
class Bound:
    """A model file bound to its inputs: what a check needs.

    The command line checks it as it is (a `Subject`): `BuiltinSubject` has the same shape for
    a built-in model, with None where a model file has functions of its own.
    """

    model_file: ModelFile
    inputs: dict[str, Array]
    sources: dict[str, str]
    params: dict[str, object]
    models: list[Model]
    output_shape: OutputShape
    """None for a scalar forward; the output's shape; the shapes of several outputs."""
    precision: Precision
    recipe: ModelRecipe
    functions: ModelFunctions
    """The user's functions over named inputs (for hvp and jvp checks)."""
    side_effects: tuple[SideEffect, ...] = ()
    """What the side-effect checks found (`side_effects`); empty when they did not run."""
    unbound: ModelFile | None = None
    """The model file as loaded, before a class was instantiated (to bind it again)."""

    @property
    def info(self) -> ModelInfo:
        """How a report names the model: the file's name, formula and path; "api" as the
        source of functions handed over in Python, which no path names."""
        model_file = self.model_file
        source = str(model_file.path) if model_file.from_file else "api"
        return ModelInfo(model_file.name, model_file.formula, source)

    @property
    def builtin(self) -> None:
        """No built-in model: a model file's models are its own."""
        return None

    @property
    def gradient_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape backward gives an input's gradient in, where it differs from the input's
        by axes of length 1 (dgamma (1, D) for gamma (D,)): accepted, and reported."""
        return dict(self.functions.reshaped)

    def parallel(self, jobs: int | None) -> Parallel:
        """Worker processes for the model file's forward calls; jobs None: one per core."""
        from gradcheck_cli.numerics.workers import Parallel, default_jobs

        count = default_jobs() if jobs is None else jobs
        return Parallel(self.recipe, self.model_file.label, count, self.model_file.counter)


class _WroteIntoInputs(Exception):
    """The user's code wrote into the check's inputs through our read-only views (np.add.at,
    numba and C code ignore the flag): the binding starts over with copies for every call."""


def bind(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    params: Mapping[str, object] | None = None,
    *,
    dtype: str = "float64",
    cotangents: int = 2,
    seed: int = 0,
    nondet_tol: float = 0.0,
    fallback: Mapping[str, Supplied] | None = None,
    probes: bool = True,
    copy_inputs: bool = True,
    copying: bool = False,
    side_effects: bool = False,
    cotangent_dtype: str | None = None,
) -> Bound:
    """The scalar models to check for this file at its inputs.

    Calls forward once at the inputs. A scalar output gives one model, forward itself. Array
    outputs give `cotangents` models <forward(inputs), v>, each with its own standard normal v
    per output, drawn from np.random.default_rng(seed); their gradient is the user's VJP for v.
    With `probes`, then checks that forward and backward are deterministic (`nondet_tol`), and
    finds the precision forward computes in (a worker skips both: the parent did them); with
    `side_effects` too, checks what the code writes into and whether backward is re-entrant
    (`side_effects.side_effect_checks`, which then stand for the determinism of backward). The
    inputs are the check's own copies (`copy_inputs`): it moves their entries in place. The
    cotangents are drawn in float64 and rounded through `cotangent_dtype` when given (a float64
    reference gets the very cotangents a float16 run of the same seed got).

    User code that writes into its arguments gets copies for every call (`copying`); when it
    turns out to do so while binding, the binding is made a second time, with fresh inputs
    and copies from the start.
    """
    if cotangents < 1:
        raise ValueError(f"cotangents must be at least 1; got {cotangents}")
    unbound = model_file
    if dtype == BFLOAT16 and model_file.adapted is not None:
        # numpy has no bfloat16: the framework's own tensors are, at the adapter's edge.
        model_file = in_precision(model_file, dtype)
    given = dict(params or {})
    call_params = given
    if model_file.of_class is not None:
        # A class: instantiated now that the parameters are known; its attributes that are
        # inputs come after the arrays given and example_inputs(), like the seed's X and W.
        instance = instantiate(model_file, supplied, given, dtype=dtype, fallback=fallback)
        model_file, call_params = instance.model_file, instance.params
        fallback = {**(fallback or {}), **instance.attributes}
    attempt = functools.partial(
        _bind_once,
        model_file,
        supplied,
        call_params,
        given,
        dtype=dtype,
        cotangents=cotangents,
        seed=seed,
        nondet_tol=nondet_tol,
        fallback=fallback,
        probes=probes,
        copy_inputs=copy_inputs,
        side_effects=side_effects,
        cotangent_dtype=cotangent_dtype,
    )
    try:
        bound = attempt(copying=copying)
    except _WroteIntoInputs:
        # Outside the except block: an error of the second attempt is not chained to the first.
        bound = None
    if bound is None:
        bound = attempt(copying=True)
    return dataclasses.replace(bound, unbound=unbound)


def _bind_once(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    params: Mapping[str, object],
    given: Mapping[str, object],
    *,
    dtype: str,
    cotangents: int,
    seed: int,
    nondet_tol: float,
    fallback: Mapping[str, Supplied] | None,
    probes: bool,
    copy_inputs: bool,
    copying: bool,
    side_effects: bool,
    cotangent_dtype: str | None,
) -> Bound:
    """`bind`, once; raises `_WroteIntoInputs` (only when not `copying`) as soon as the user's
    code is seen to have written into the inputs. `params` are the call's, `given` all the
    parameters given (a class's constructor takes some: a worker instantiates it again)."""
    inputs, sources, passed = resolve_arguments(
        model_file, supplied, params, dtype=dtype, fallback=fallback, copy=copy_inputs
    )
    caller = Caller(model_file, list(inputs), passed)
    caller.copying = copying
    functions = ModelFunctions(model_file, caller, list(inputs))
    before = fingerprints(inputs)

    def start_over_if_inputs_written() -> None:
        if not copying and fingerprints(inputs) != before:
            raise _WroteIntoInputs

    outputs = functions.forward(inputs)
    start_over_if_inputs_written()
    label = model_file.label
    where_given = given_inputs(inputs)
    for output in outputs.arrays:
        if np.iscomplexobj(output) and not any(np.iscomplexobj(a) for a in inputs.values()):
            raise UserCodeError(f"{label}: forward returned complex values for real inputs")
        bad = ~np.isfinite(output)
        if bad.any():
            call = f"forward({', '.join(inputs)})"
            if output.ndim == 0:
                where = f"{call} = {output.item()}"
            else:
                index = first_index(bad)
                where = f"{call}[{format_index(index)}] = {output[index].item()}"
            raise UserCodeError(
                f"{label}: {where} at the given {where_given}; it must be finite there"
            )

    scalar = len(outputs.arrays) == 1 and outputs.arrays[0].ndim == 0
    if model_file.convention == "plain":
        n_args = len(caller.arguments(inputs)[0]) + (0 if scalar else 1)
        _check_backward_arity(
            model_file, list(inputs), n_args=n_args, scalar=scalar, shape=outputs.arrays[0].shape
        )
    shapes = tuple(o.shape for o in outputs.arrays)
    rng = np.random.default_rng(seed)
    models: list[Model] = []
    if scalar:
        models.append(
            FileModel(model_file.name, model_file.formula, functions, model_file.complex_safe)
        )
        output_shape: OutputShape = None
    else:
        drawn: list[list[Array]] = []
        for _ in range(cotangents):
            # Drawn in float64 and cast, so a seed gives the same directions whatever the dtype.
            vectors = []
            for shape in shapes:
                normal = np.asarray(rng.standard_normal(shape))
                if cotangent_dtype is not None:
                    normal = in_dtype(normal, cotangent_dtype)
                v = in_dtype(normal, dtype)
                v.flags.writeable = False
                vectors.append(v)
            drawn.append(vectors)
        shared = None
        if model_file.adapted is not None:  # one step for every cotangent: batches serve all
            with np.errstate(all="ignore"):
                shared = min(
                    abs(float(np.real(sum(np.sum(o * v) for o, v in pairs))))
                    for pairs in (zip(outputs.arrays, vs, strict=True) for vs in drawn)
                )
        for number, vectors in enumerate(drawn, start=1):
            contracted = _contracted(
                functions, shapes, vectors, number=number, of=cotangents, seed=seed, every=drawn
            )
            models.append(dataclasses.replace(contracted, step_scale=shared))
        output_shape = shapes[0] if len(shapes) == 1 else shapes
    eps = None
    found: tuple[SideEffect, ...] = ()
    if probes:
        try:
            check_deterministic(
                functions, inputs, outputs, models, nondet_tol, backward=not side_effects
            )
            if side_effects:
                given_v = cotangent_vectors(models[0])
                probe = model_file.adapted.effects if model_file.adapted is not None else None
                if probe is not None:  # a framework's: watched at the adapter's edge
                    named = {**functions.caller.params, **inputs}
                    found = framework_side_effects(model_file, probe, named, given_v, nondet_tol)
                else:
                    found = side_effect_checks(functions, inputs, outputs, given_v, nondet_tol)
        except UserCodeError:
            start_over_if_inputs_written()  # the inputs it wrote into made the calls differ
            raise
        start_over_if_inputs_written()
        eps = forward_precision(functions, inputs, outputs)
        if dtype == BFLOAT16:  # held as float64, computed in bfloat16 by the framework
            eps = max(eps or 0.0, BFLOAT16_EPS)
    from_file = model_file.from_file
    adapted = model_file.adapted
    recipe = ModelRecipe(
        path=str(model_file.path) if from_file else None,
        entry=model_file.entry if from_file else None,
        device=adapted.device if adapted is not None else None,
        model_file=None if from_file else model_file,
        params=dict(given),
        dtype=dtype,
        cotangents=cotangents,
        seed=seed,
        copying=caller.copying,
        cotangent_dtype=cotangent_dtype,
    )
    precision = Precision(eps=eps, noise=nondet_tol)
    return Bound(
        model_file,
        inputs,
        sources,
        passed,
        models,
        output_shape,
        precision,
        recipe,
        functions,
        found,
    )


def _check_backward_arity(
    model_file: ModelFile,
    names: Sequence[str],
    *,
    n_args: int,
    scalar: bool,
    shape: tuple[int, ...],
) -> None:
    """Say up front that backward takes the wrong arguments, rather than a TypeError per call."""
    assert model_file.backward is not None
    try:
        signature = inspect.signature(model_file.backward)
    except (TypeError, ValueError):  # some builtins have none: let the call tell
        return
    try:
        signature.bind(*range(n_args))
    except TypeError:
        listed = ", ".join(names)
        called = f"backward({listed})" if scalar else f"backward({listed}, grad_output)"
        because = (
            "forward returns a scalar" if scalar else f"forward returns an array of shape {shape}"
        )
        raise UserCodeError(
            f"{model_file.label}: {because}, so backward is called as {called}; "
            f"but its signature is backward{signature}"
        ) from None


@dataclass(frozen=True)
class FileModel:
    """A scalar model file: f = forward(inputs), with the gradient from its backward."""

    name: str
    formula: str
    functions: ModelFunctions
    complex_analytic: bool = False
    """Only a file that declares complex_safe = True: nobody else knows whether the user's code
    is holomorphic."""

    def value(self, inputs: Inputs) -> float | complex:
        """f at `inputs`. The numerics call it with numpy's floating-point errors silenced
        (a shifted point may overflow), so it does not silence them again: it is the hot path.
        No finiteness check: a NaN at a perturbed input is for the numerics to report."""
        functions = self.functions
        if functions.model_file.convention == "plain":
            functions.model_file.counter.forward += 1
            result = functions.caller.call_forward(inputs, quiet=True)
            if type(result) is float:  # the common case: float(np.sum(...))
                return result
            out = functions.numeric_output(result, "forward")
        else:
            out = functions.forward(inputs, quiet=True).arrays[0]
        if out.shape != ():
            raise UserCodeError(
                f"{self.functions.label}: forward returned shape {out.shape} here but a scalar "
                f"at the given {given_inputs(inputs)}; its output shape must not depend on the "
                "values of its inputs"
            )
        return complex(out) if np.iscomplexobj(out) else float(out)

    def gradient(self, inputs: Inputs) -> Gradients:
        return self.functions.backward(inputs, ())

    @property
    def batches(self) -> bool:
        """A PyTorch or JAX function evaluates batches (numerics.models.BatchedModel)."""
        return self.functions.model_file.adapted is not None

    def differences_at_shifts(
        self, inputs: Inputs, wrt: str, flat_indices: NDArray[np.intp], shifts: Array
    ) -> tuple[Array, Array] | None:
        """f at every shift of every entry, batched where forward batches (a PyTorch or JAX
        function: numerics.models.BatchedModel); None for a numpy model file."""
        found = _differences_at_shifts(self.functions, inputs, wrt, flat_indices, shifts, None)
        return None if found is None else found[0]


def _differences_at_shifts(
    functions: ModelFunctions,
    inputs: Inputs,
    wrt: str,
    flat_indices: NDArray[np.intp],
    shifts: Array,
    projections: Sequence[Sequence[Array]] | None,
) -> list[tuple[Array, Array]] | None:
    """Batched differences of forward (contracted with each cotangent of `projections`, or the
    scalar forward for None), where the adapted framework function batches (frameworks/)."""
    adapted = functions.model_file.adapted
    if adapted is None or functions.caller.copying:
        return None
    arguments = {**functions.caller.params, **inputs}
    found = adapted.differences_at_shifts(arguments, wrt, flat_indices, shifts, projections)
    if found is None:
        return None
    differences, evaluated = found
    functions.model_file.counter.forward += evaluated
    return differences


def _contracted(
    functions: ModelFunctions,
    shapes: tuple[tuple[int, ...], ...],
    vectors: Sequence[Array],
    *,
    number: int,
    of: int,
    seed: int,
    every: Sequence[Sequence[Array]] = (),
) -> ContractedModel:
    """The model <forward(inputs), v> for the cotangent `vectors` (one per output); `every`:
    the vectors of all cotangents, `vectors` the number-th (batches serve them together)."""
    label = functions.label

    def contracted(inputs: Inputs) -> Array:
        outputs = functions.forward(inputs, quiet=True).arrays
        for out, shape in zip(outputs, shapes, strict=True):
            if out.shape != shape:
                names = " and ".join(inputs) if len(inputs) <= 4 else "its inputs"
                raise UserCodeError(
                    f"{label}: forward returned shape {out.shape} here but shape {shape} at the "
                    f"given {given_inputs(inputs)}; its output shape must not depend on the "
                    f"values of {names}"
                )
        # One contraction over every output: <out_1, v_1> + <out_2, v_2> + ...
        return np.asarray(sum(np.sum(o * v) for o, v in zip(outputs, vectors, strict=True)))

    def vjp(inputs: Inputs) -> Gradients:
        return functions.backward(inputs, vectors)

    def contracted_at_shifts(
        inputs: Inputs, wrt: str, flat_indices: NDArray[np.intp], shifts: Array
    ) -> tuple[Array, Array] | None:
        # Every cotangent's contraction from one batch: the others find theirs remembered.
        found = _differences_at_shifts(functions, inputs, wrt, flat_indices, shifts, every)
        return None if found is None else found[number - 1]

    model_file = functions.model_file
    return ContractedModel(
        name=f"{model_file.name}/v{number}",
        formula=f"<{model_file.formula}, v>, v ~ N(0, 1), seed {seed}, cotangent {number} of {of}",
        contracted=contracted,
        vjp=vjp,
        number=number,
        complex_analytic=model_file.complex_safe,
        vectors=tuple(vectors),
        contracted_at_shifts=contracted_at_shifts if model_file.adapted is not None else None,
    )


def cotangent_vectors(model: Model) -> tuple[Array, ...]:
    """The cotangent of a contracted model (one array per output); () for a scalar model."""
    return model.vectors if isinstance(model, ContractedModel) else ()
