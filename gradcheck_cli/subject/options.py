"""What a command checks: from the command line's input options to a `Subject`.

From `--model`, `--x`, `--w`, `--input`, `--inputs`, `--param`, `--dtype`, ... to the model(s)
to check, the inputs by name, their sources, how precisely f is known. Raises `InputError`
(exit 2) for anything that cannot be used. No click.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.models import builtin_model
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.arrays.loading import (
    LoadedArray,
    cast_to_dtype,
    file_of_spec,
    is_whole_archive,
    load_archive,
    load_array,
)
from gradcheck_cli.subject.binding import Bound, bind
from gradcheck_cli.subject.builtin import BuiltinSubject, builtin_subject
from gradcheck_cli.subject.conventions import ModelFile, signature_of
from gradcheck_cli.subject.files import load_function, load_model_file, split_model_spec
from gradcheck_cli.subject.groups import member_name
from gradcheck_cli.subject.low_precision import (
    Named,
    check_dtype,
    reference_names,
)
from gradcheck_cli.subject.low_precision import reference_loader as reference_loader_for
from gradcheck_cli.subject.seed import SEED_SOURCE, seed_matrices

Subject: TypeAlias = Bound | BuiltinSubject
LoadReference: TypeAlias = Callable[[Subject], tuple[Subject, str] | None]
"""The model(s), the inputs by name, and what the report says about them: a model file bound
to its inputs, or a built-in model on X and W. Both offer `models`, `info`, `inputs`, `sources`,
`precision`, `output_shape`, `model_file`, `params`, `recipe`, `functions`, `builtin` and
`parallel(jobs)`; a built-in model has None for a model file's own."""


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
    device: str | None = None
    """Where a PyTorch or JAX model's tensors live (--device); None: the CPU."""
    side_effects: bool = False
    """Check what the model's code writes into and whether its backward is re-entrant."""
    reference_model: str | None = None
    """--reference-model FILE.py[:NAME]: the float64 forward a low-precision run is judged
    against (default: the model's own, when it computes in float64)."""

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
        if self.reference_model:
            paths[Path(split_model_spec(self.reference_model)[0])] = "--reference-model"
        return paths


def load_subject(options: InputOptions) -> Subject:
    """Load the model and its inputs named by the command line."""
    if options.is_model_file():
        return _model_file_subject(options)
    if options.device not in (None, "cpu"):
        raise InputError(
            f"--device {options.device}: the built-in models are numpy; --device places the "
            "tensors of a PyTorch or JAX model file"
        )
    check_dtype(options.dtype, option="--dtype", what=f"the built-in model {options.model_spec}")
    return _builtin_subject(options)


def reference_loader(options: InputOptions) -> LoadReference:
    """How the command line's subject in a low precision gets its float64 forward: the one
    --reference-model names, or the model's own (see `low_precision.float64_reference`)."""
    named = None
    spec = options.reference_model
    if spec is not None:
        path, entry = split_model_spec(spec)

        def named(subject: Bound) -> Named:
            names = [entry] if entry else reference_names(subject)
            name, function = load_function(Path(path), names, option="--reference-model")
            return f"{Path(path).name}:{name}", Path(path), function

    return reference_loader_for(
        options.dtype,
        params=dict(options.param_specs),
        named=named,
        cotangents=options.cotangents,
        seed=options.seed,
        nondet_tol=options.nondet_tol,
    )


def _builtin_subject(options: InputOptions) -> BuiltinSubject:
    try:
        model = builtin_model(options.model_spec)
    except InputError as error:
        raise InputError(f"--model {error}") from None
    if options.param_specs:
        raise InputError(
            f"--param {options.param_specs[0][0]}: the built-in model {model.name} takes no "
            "parameters"
        )
    supplied = _arrays_from_command_line(options, {"X": "X", "W": "W"})
    unknown = [n for n in supplied if n not in ("X", "W")]
    if unknown:
        raise InputError(
            f"--input {unknown[0]}: the built-in model {model.name} has the inputs X and W only"
        )
    return builtin_subject(model, supplied, options.dtype)


def _model_file_subject(options: InputOptions) -> Bound:
    path_text, entry = split_model_spec(options.model_spec)
    model_file = load_model_file(Path(path_text), entry, device=options.device)
    return model_file_subject(model_file, options)


def model_file_subject(
    model_file: ModelFile,
    options: InputOptions,
    *,
    supplied: Mapping[str, Supplied] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Bound:
    """`model_file` bound to the inputs and parameters the command line gives, or to
    `supplied` arrays and `params` instead (a layer of a whole file takes the ones it names;
    a further input point, its own arrays)."""
    check_dtype(options.dtype, option="--dtype", what=model_file)
    if supplied is None:
        supplied = command_line_arrays(options, model_file)
    seed_X, seed_W = seed_matrices()
    # Files written for the two-matrix tool run on the seed's X and W, as before.
    fallback = {
        "X": Supplied(seed_X, SEED_SOURCE),
        "W": Supplied(seed_W, SEED_SOURCE),
    }
    return bind(
        model_file,
        supplied,
        dict(options.param_specs) if params is None else dict(params),
        dtype=options.dtype,
        cotangents=options.cotangents,
        seed=options.seed,
        nondet_tol=options.nondet_tol,
        fallback=fallback,
        # The arrays were just loaded: they are the check's own, no copy needed.
        copy_inputs=False,
        side_effects=options.side_effects,
    )


def command_line_arrays(options: InputOptions, model_file: ModelFile | None) -> dict[str, Supplied]:
    """The arrays the command line gives, by input name; --x and --w name `model_file`'s input
    X (or x) and W (or w), and are refused without a model file to name them in."""
    letters = {}
    names = list(signature_of(model_file).parameters) if model_file is not None else []
    for letter in ("X", "W"):
        for candidate in (letter, letter.lower()):
            if candidate in names:
                letters[letter] = candidate
                break
    return _arrays_from_command_line(options, letters)


def _arrays_from_command_line(
    options: InputOptions, names_of_x_and_w: Mapping[str, str]
) -> dict[str, Supplied]:
    """Arrays given on the command line, by input name. --x/--w name the inputs X/x and W/w."""
    supplied: dict[str, tuple[LoadedArray, str, bool]] = {}
    archive_option = f"--inputs {options.inputs_archive}"
    if options.inputs_archive:
        for key, loaded in load_archive(options.inputs_archive).items():
            supplied[key] = (loaded, "--inputs", False)
    for name, spec in options.input_specs:
        if name in supplied and supplied[name][1] != "--inputs":
            raise InputError(f"--input {name}: given twice")
        option = f"--input {name}"
        if is_whole_archive(spec, option=option):
            # The archive's arrays are a dict argument's, by key: parameters.W1, ...
            for key, loaded in load_archive(spec, option=option).items():
                supplied[member_name(name, key)] = (loaded, option, False)
            continue
        # Only a CSV's one row or column may feed a 1-D input: .npy/.npz keep their shape.
        csv = file_of_spec(spec).suffix.lower() == ".csv"
        supplied[name] = (load_array(spec, option=option), option, csv)
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
        given_by = archive_option if option == "--inputs" else None
        result[name] = Supplied(
            array, loaded.source, flatten_single_line=flatten, given_by=given_by
        )
        del loaded
    return result
