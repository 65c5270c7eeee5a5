"""What a command checks: the model, its named inputs and where they came from.

From the command line's values (`--model`, `--x`, `--w`, `--input`, `--inputs`, `--param`,
`--dtype`, ...) to a `Subject`: the model(s) to check, the inputs by name, their sources, how
precisely f is known. Raises `InputError` (exit 2) for anything that cannot be used. No click.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import Array, ElementwiseModel, Model, builtin_model
from gradcheck_cli.numerics.schemes import Precision
from gradcheck_cli.numerics.workers import Parallel, default_jobs
from gradcheck_cli.report import ModelInfo, OutputShape
from gradcheck_cli.subject.loading import (
    LoadedArray,
    cast_to_dtype,
    file_of_spec,
    load_archive,
    load_array,
)
from gradcheck_cli.subject.seed import SEED_SOURCE, seed_matrices
from gradcheck_cli.subject.user_model import (
    ModelFile,
    ModelRecipe,
    Supplied,
    bind,
    load_model_file,
    split_model_spec,
)


@dataclass
class Subject:
    """The model(s), the inputs by name, and what the report says about them."""

    models: list[Model]
    info: ModelInfo
    inputs: dict[str, Array]
    sources: dict[str, str]
    precision: Precision = field(default_factory=Precision)
    output_shape: OutputShape = None
    model_file: ModelFile | None = None
    params: dict[str, object] = field(default_factory=dict)
    recipe: ModelRecipe | None = None
    """How worker processes bind the same model (model files only)."""
    functions: Any = None
    """The model file's functions over named inputs (user_model._Functions)."""

    def parallel(self, jobs: int | None) -> Parallel | None:
        """Worker processes for a model file's forward calls; jobs None: one per core."""
        if self.model_file is None or self.recipe is None:
            return None
        count = default_jobs() if jobs is None else jobs
        return Parallel(self.recipe, self.model_file.label, count, self.model_file.counter)

    @property
    def builtin(self) -> ElementwiseModel | None:
        model = self.models[0]
        return model if isinstance(model, ElementwiseModel) else None


@dataclass(frozen=True)
class InputOptions:
    """The command line's say on the inputs."""

    model_spec: str = "sigmoid-sum"
    x_path: str | None = None
    w_path: str | None = None
    input_specs: Sequence[tuple[str, str]] = ()
    inputs_archive: str | None = None
    param_specs: Sequence[tuple[str, Any]] = ()
    dtype: str = "float64"
    nondet_tol: float = 0.0
    cotangents: int = 2
    seed: int = 0

    def is_model_file(self) -> bool:
        path, _ = split_model_spec(self.model_spec)
        return path.endswith(".py") or "/" in path

    def protected_paths(self) -> dict[Path, str]:
        """Every file the inputs are read from, with the option that named it: --output must
        not overwrite any of them."""
        paths: dict[Path, str] = {}
        for option, spec in (("--x", self.x_path), ("--w", self.w_path)):
            if spec:
                paths[file_of_spec(spec)] = option
        for name, spec in self.input_specs:
            paths[file_of_spec(spec)] = f"--input {name}"
        if self.inputs_archive:
            paths[file_of_spec(self.inputs_archive)] = "--inputs"
        if self.is_model_file():
            paths[Path(split_model_spec(self.model_spec)[0])] = "--model"
        return paths


def _supplied(options: InputOptions, names_of_x_and_w: Mapping[str, str]) -> dict[str, Supplied]:
    """Arrays given on the command line, by input name. --x/--w name the inputs X/x and W/w."""
    supplied: dict[str, tuple[LoadedArray, str, bool]] = {}
    if options.inputs_archive:
        for key, loaded in load_archive(options.inputs_archive).items():
            supplied[key] = (loaded, "--inputs", False)
    for name, spec in options.input_specs:
        if name in supplied and supplied[name][1] != "--inputs":
            raise InputError(f"--input {name}: given twice")
        supplied[name] = (load_array(spec, option=f"--input {name}"), f"--input {name}", True)
    shorthands = (("--x", options.x_path, "X"), ("--w", options.w_path, "W"))
    for option, path, letter in shorthands:
        if not path:
            continue
        target = names_of_x_and_w.get(letter)
        if target is None:
            raise InputError(
                f"{option}: the model has no input named {letter} or {letter.lower()}; "
                "name the input with --input NAME=PATH"
            )
        if target in supplied and supplied[target][1] != "--inputs":
            raise InputError(f"{option}: the input {target} is also given by {supplied[target][1]}")
        supplied[target] = (load_array(path, option=option), option, False)
    result: dict[str, Supplied] = {}
    for name in list(supplied):
        # Popped as it is cast: no input is held twice (a big X is most of the memory).
        loaded, option, flatten = supplied.pop(name)
        array = cast_to_dtype(loaded, options.dtype, option=option)
        result[name] = Supplied(array, loaded.source, flatten_single_line=flatten)
        del loaded
    return result


def load_subject(options: InputOptions) -> Subject:
    """Load the model and its inputs named by the command line."""
    if options.is_model_file():
        return _model_file_subject(options)
    return _builtin_subject(options)


def _builtin_subject(options: InputOptions) -> Subject:
    try:
        model = builtin_model(options.model_spec)
    except InputError as error:
        raise InputError(f"--model {error}") from None
    if options.param_specs:
        raise InputError(
            f"--param {options.param_specs[0][0]}: the built-in model {model.name} takes no "
            "parameters"
        )
    supplied = _supplied(options, {"X": "X", "W": "W"})
    unknown = [n for n in supplied if n not in ("X", "W")]
    if unknown:
        raise InputError(
            f"--input {unknown[0]}: the built-in model {model.name} has the inputs X and W only"
        )
    seed_X, seed_W = seed_matrices()
    seeds = {"X": seed_X, "W": seed_W}
    inputs: dict[str, Array] = {}
    sources: dict[str, str] = {}
    for name in ("X", "W"):
        if name in supplied:
            array, source = supplied[name].array, supplied[name].source
        else:
            array, source = seeds[name].astype(np.dtype(options.dtype)), SEED_SOURCE
        if array.ndim != 2:
            raise InputError(
                f"{name} {array.shape} from {source} is not a 2-D matrix (the built-in models "
                "take a 2-D X and W)"
            )
        if array.size == 0:
            raise InputError(f"{name} from {source} is empty")
        inputs[name] = np.asarray(array, dtype=np.dtype(options.dtype))
        sources[name] = source
    X, W = inputs["X"], inputs["W"]
    if X.shape[1] != W.shape[0]:
        raise InputError(
            f"X {X.shape} from {sources['X']} and W {W.shape} from {sources['W']} "
            f"do not fit: X's {X.shape[1]} columns must equal W's {W.shape[0]} rows"
        )
    info = ModelInfo(model.name, model.formula, "builtin", model.gradient_formula)
    return Subject([model], info, inputs, sources)


def _model_file_subject(options: InputOptions) -> Subject:
    path_text, entry = split_model_spec(options.model_spec)
    model_file = load_model_file(Path(path_text), entry)
    from gradcheck_cli.subject.user_model import signature_of

    names = list(signature_of(model_file).parameters)
    letters = {}
    for letter in ("X", "W"):
        for candidate in (letter, letter.lower()):
            if candidate in names:
                letters[letter] = candidate
                break
    supplied = _supplied(options, letters)
    seed_X, seed_W = seed_matrices()
    # Files written for the two-matrix tool run on the seed's X and W, as before.
    fallback = {
        "X": Supplied(seed_X, SEED_SOURCE),
        "W": Supplied(seed_W, SEED_SOURCE),
    }
    bound = bind(
        model_file,
        supplied,
        dict(options.param_specs),
        dtype=options.dtype,
        cotangents=options.cotangents,
        seed=options.seed,
        nondet_tol=options.nondet_tol,
        fallback=fallback,
        # The arrays were just loaded: they are the check's own, no copy needed.
        copy_inputs=False,
    )
    info = ModelInfo(model_file.name, model_file.formula, str(model_file.path))
    return Subject(
        bound.models,
        info,
        bound.inputs,
        bound.sources,
        bound.precision,
        bound.output_shape,
        model_file,
        bound.params,
        bound.recipe,
        bound.functions,
    )


# --- which entries -------------------------------------------------------------------------------

Ref = tuple[str | None, tuple[int, ...]]
"""An entry as the command line names it: (input name or None for "each input of --wrt"),
index)."""


def ref_text(ref: Ref) -> str:
    name, index = ref
    digits = ",".join(str(i) for i in index)
    return digits if name is None else f"{name}[{digits}]"


def flat_index(ref: Ref, name: str, inputs: Mapping[str, Array], option: str) -> int:
    """The flat index of `ref` in input `name`, or InputError saying what is out of range."""
    shape = tuple(np.shape(inputs[name]))
    _, index = ref
    shown = ref_text(ref)
    if len(index) != len(shape):
        dimensions = "dimension" if len(shape) == 1 else "dimensions"
        written = f"{name}[{','.join('0' * len(shape))}]"
        raise InputError(
            f"{option} {shown} has {len(index)} {'index' if len(index) == 1 else 'indices'}, "
            f"but {name} has {len(shape)} {dimensions} (shape {shape}; write {written})"
        )
    bad = [k for k, (i, n) in enumerate(zip(index, shape, strict=True)) if i >= n]
    if bad:
        if len(shape) == 2:
            limits = f"I must be 0..{shape[0] - 1} and J 0..{shape[1] - 1}"
        else:
            limits = ", ".join(f"index {k + 1} must be 0..{shape[k] - 1}" for k in bad)
        raise InputError(f"{option} {shown} is out of range for {name} of shape {shape}: {limits}")
    return int(np.ravel_multi_index(index, shape)) if shape else 0


def entries_of_spec(
    spec: tuple[str, Any],
    inputs: Mapping[str, Array],
    wrt: Sequence[str],
    seed: int,
    *,
    option: str = "--entries",
) -> tuple[list[str], dict[str, Any] | None]:
    """(checked inputs, flat indices per input or None for every entry) for --entries.

    `random:K` takes K seeded entries of each checked input; a list takes named entries in
    their own input and bare `I,J` in each input of `wrt`. Named entries without --wrt choose
    the inputs that are checked.
    """
    kind, value = spec
    if kind == "all":
        return list(wrt), None
    rng = np.random.default_rng(seed)
    chosen: dict[str, Any] = {}
    if kind == "random":
        for name in wrt:
            size = int(np.size(inputs[name]))
            count = min(int(value), size)
            chosen[name] = np.sort(rng.choice(size, size=count, replace=False)).astype(np.intp)
        return list(wrt), chosen
    picked: dict[str, set[int]] = {}
    for ref in value:
        name, index = ref.name, ref.index
        targets = [name] if name is not None else list(wrt)
        for target in targets:
            if target not in inputs:
                raise InputError(
                    f"{option} {ref_text((name, index))}: no input named {target}; the inputs "
                    f"are {', '.join(inputs)}"
                )
            picked.setdefault(target, set()).add(flat_index((name, index), target, inputs, option))
    names = [n for n in wrt if n in picked] + [n for n in picked if n not in wrt]
    for name in names:
        chosen[name] = np.asarray(sorted(picked[name]), dtype=np.intp)
    return names, chosen
