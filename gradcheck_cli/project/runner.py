"""Several checks in one run: every layer of a file, a config's checks, a layer at several input
points. Each check of a layer at a point is `session.run`, as for one layer; this module only
says which layers and points there are, runs them one after another and gathers a
`ProjectReport`.

- `run_command` is `gradcheck run`: a model file without `:NAME` that is not one model (no
  `forward` and `backward`) is a whole file, every layer `inventory.file_layers` finds; a single
  model at one point is exactly the single-layer run it always was (a `RunReport`); at several
  points (`--points`) it is a project of one layer.
- `run_checks` is `gradcheck check`: a config's checks (`config.py`), each a model (a whole file
  or one layer) with its own inputs and settings.

A layer that cannot be checked (its file does not name it well, its inputs cannot be found, its
code raises, at the given point or a drawn one) is that layer's error, counted in the report,
and the others run on. What is wrong with the run itself (bad settings, an `--only` name no
layer has, an `--input` no layer takes) is exit 2 before any check; a bug in gradcheck is never
caught here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gradcheck_cli import session
from gradcheck_cli.errors import InputError
from gradcheck_cli.project.points import draw_point, point_rng, replayable_inputs
from gradcheck_cli.project_report import LayerResult, PointResult, ProjectReport
from gradcheck_cli.report import RunReport
from gradcheck_cli.settings import CheckSettings, Naming
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.builtin import BuiltinSubject, builtin_subject
from gradcheck_cli.subject.conventions import CallCounter, ModelFile, model_file_from_module
from gradcheck_cli.subject.files import import_model_file, split_model_spec
from gradcheck_cli.subject.groups import head_of
from gradcheck_cli.subject.inventory import accepted_names, file_layers, is_plain_model
from gradcheck_cli.subject.messages import one_line
from gradcheck_cli.subject.options import (
    InputOptions,
    Subject,
    command_line_arrays,
    load_subject,
    model_file_subject,
    reference_loader,
)

MOST_POINTS = 1000
"""--points beyond this is a typo, not a plan: each point is a whole check."""


class Progress(Protocol):
    """What a face shows while a project runs: each step (a layer at a point), and within it the
    entries checked (session's progress callback)."""

    def __call__(self, done: float, total: int) -> None: ...

    def step(self, number: int, steps: int, label: str) -> None: ...


@dataclass(frozen=True)
class CheckRequest:
    """One check as the command line or a config asks for it: a model (a whole file, one layer,
    a built-in model), its inputs, how to check it, at how many points, which layers."""

    options: InputOptions
    asked: CheckSettings
    points: int = 1
    only: tuple[str, ...] | None = None
    """The layers of a whole file to check (None: all)."""
    skip: tuple[str, ...] = ()
    name: str | None = None
    """A config check's own name."""
    where: str = "--model"
    """How messages name the check's model: the option, or the config's check."""


@dataclass(frozen=True)
class _Planned:
    """A layer to check: its model file (None for a built-in model) and what it is given."""

    name: str
    model: str
    request: CheckRequest
    model_file: ModelFile | None = None
    supplied: Mapping[str, Supplied] | None = None
    """None: the command line's arrays, as a single layer takes them."""
    params: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """What `gradcheck run` will check, decided before any check: one model at one point
    (`single`, its loader), or layers (a whole file, or one model at several points)."""

    request: CheckRequest
    source: str
    single: Callable[[], Subject] | None = None
    layers: tuple[_Planned, ...] = ()

    @property
    def several(self) -> bool:
        """A project (several layers or points), not a single-layer run."""
        return self.single is None


def plan_run(request: CheckRequest, *, naming: Naming) -> RunPlan:
    """Validate the settings, import the model file (once) and decide: a model file without
    `:NAME` that is not one model is a whole file; one model at one point is the single-layer
    run it always was; at several points, a project of one layer."""
    validate(request, naming)
    options = request.options
    if not options.is_model_file():
        _refuse_selection(request, "a built-in model")
        if request.points == 1:
            return RunPlan(request, options.model_spec, single=lambda: load_subject(options))
        planned = _Planned(options.model_spec, options.model_spec, request)
        return RunPlan(request, options.model_spec, layers=(planned,))
    path_text, entry = split_model_spec(options.model_spec)
    path, module = import_model_file(Path(path_text))
    if entry is None and not is_plain_model(module):
        return RunPlan(request, str(path), layers=tuple(_whole_file(request, path, module)))
    model_file = model_file_from_module(module, path, entry, device=options.device)
    _refuse_selection(request, f"{options.model_spec}, one model")
    if request.points == 1:
        return RunPlan(request, str(path), single=lambda: model_file_subject(model_file, options))
    planned = _Planned(model_file.name, options.model_spec, request, model_file)
    return RunPlan(request, str(path), layers=(planned,))


def run_plan(
    plan: RunPlan, *, naming: Naming, progress: Progress | None = None
) -> tuple[Subject, RunReport] | ProjectReport:
    """Check what `plan` says: the single model's subject and report, or the project's."""
    if plan.single is not None:
        return session.run(
            plan.single,
            plan.request.asked,
            naming=naming,
            progress=progress,
            reference=reference_loader(plan.request.options),
        )
    return _run("run", plan.source, plan.layers, naming, progress)


def run_command(
    request: CheckRequest, *, naming: Naming, progress: Progress | None = None
) -> tuple[Subject, RunReport] | ProjectReport:
    """`gradcheck run` from its request: `plan_run`, then `run_plan`."""
    return run_plan(plan_run(request, naming=naming), naming=naming, progress=progress)


def run_checks(
    requests: Sequence[CheckRequest],
    *,
    source: str,
    naming: Naming,
    progress: Progress | None = None,
    command: str = "check",
) -> ProjectReport:
    """`gradcheck check`: every check of a config, each a whole file or one model (and the
    API's `check_file`, one such check, as `command` run)."""
    for request in requests:
        validate(request, naming)
    planned: list[_Planned] = []
    for request in requests:
        planned += _plan(request)
    return _run(command, source, planned, naming, progress)


def validate(request: CheckRequest, naming: Naming) -> None:
    """The settings and the number of points, before any work."""
    request.asked.validate(naming)
    points = request.points
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= MOST_POINTS:
        raise InputError(
            f"{naming.setting('points')} must be an integer from 1 to {MOST_POINTS}; got {points!r}"
        )


def _plan(request: CheckRequest) -> list[_Planned]:
    """A config's check as layers: a whole file's, or the one it names (an error of its own
    when the model cannot be loaded: the other checks still run)."""
    options = request.options
    shown = request.name or options.model_spec
    if not options.is_model_file():
        _refuse_selection(request, "a built-in model")
        return [_Planned(shown, options.model_spec, request)]
    path_text, entry = split_model_spec(options.model_spec)
    try:
        path, module = import_model_file(Path(path_text))
        whole = entry is None and not is_plain_model(module)
        model_file = (
            None if whole else model_file_from_module(module, path, entry, device=options.device)
        )
    except InputError as error:
        return [_Planned(shown, options.model_spec, request, error=one_line(str(error)))]
    if model_file is None:
        # What the check asks of the file's layers (--only, --input) is the config's mistake.
        return _whole_file(request, path, module)
    _refuse_selection(request, f"{options.model_spec}, one model")
    return [_Planned(request.name or model_file.name, options.model_spec, request, model_file)]


def _refuse_selection(request: CheckRequest, what: str) -> None:
    if request.only is not None or request.skip:
        option = "--only" if request.only is not None else "--skip"
        raise InputError(
            f"{_named(request, option)} selects layers of a whole file (--model FILE.py); "
            f"{request.where} names {what}"
        )


def _named(request: CheckRequest, option: str) -> str:
    if request.where == "--model":
        return option
    return f"{request.where}: {option.removeprefix('--')}"


def _whole_file(request: CheckRequest, path: Path, module: Any) -> list[_Planned]:
    """Every layer of the file (or those --only/--skip select), each with the command line's
    inputs and parameters that it takes."""
    options = request.options
    for option, given in (("--x", options.x_path), ("--w", options.w_path)):
        if given:
            raise InputError(
                f"{_named(request, option)}: a whole file's layers name their inputs "
                f"themselves: give --input NAME=PATH (each layer takes the names it has)"
            )
    asked = request.asked
    if asked.wrt is not None or asked.entries.kind == "listed":
        option = "--wrt" if asked.wrt is not None else "--entries"
        raise InputError(
            f"{_named(request, option)} names inputs of one layer: check it alone with "
            f"--model {path.name}:NAME"
        )
    names = file_layers(module, path)
    if not names:
        model_file_from_module(
            module, path, None, device=options.device
        )  # the plain convention's own message
    selected = _select(request, names, path)
    supplied_all = command_line_arrays(dataclasses.replace(options, param_specs=()), None)
    params_all = dict(options.param_specs)
    path_text, _ = split_model_spec(options.model_spec)
    used: set[str] = set()
    planned: list[_Planned] = []
    for name in selected:
        model = f"{path_text}:{name}"
        try:
            model_file = model_file_from_module(module, path, name, device=options.device)
            inputs, takes = accepted_names(model_file)
        except InputError as error:
            planned.append(_Planned(name, model, request, error=one_line(str(error))))
            continue
        supplied = {k: v for k, v in supplied_all.items() if head_of(k) in inputs}
        params = {k: v for k, v in params_all.items() if takes is None or k in takes}
        used |= set(supplied) | set(params)
        planned.append(_Planned(name, model, request, model_file, supplied, params))
    unused = [n for n in [*supplied_all, *params_all] if n not in used]
    if unused and any(p.error is None for p in planned):
        option = "--param" if unused[0] in params_all else "--input"
        raise InputError(
            f"{_named(request, option)} {unused[0]}: no layer of {path.name} takes it; the "
            f"layers checked are {', '.join(selected)}"
        )
    return planned


def _select(request: CheckRequest, names: list[str], path: Path) -> list[str]:
    """The layers --only and --skip leave, in the file's order; a name the file does not have
    is exit 2 listing the ones it has."""
    for option, given in (("--only", request.only or ()), ("--skip", request.skip)):
        unknown = [n for n in given if n not in names]
        if unknown:
            raise InputError(
                f"{_named(request, option)} {unknown[0]}: {path.name} has no layer of that "
                f"name; its layers are {', '.join(names)}"
            )
    chosen = [n for n in names if request.only is None or n in request.only]
    chosen = [n for n in chosen if n not in request.skip]
    if not chosen:
        raise InputError(
            f"{_named(request, '--skip')} leaves no layer of {path.name} to check; its layers "
            f"are {', '.join(names)}"
        )
    return chosen


def _run(
    command: str,
    source: str,
    planned: Sequence[_Planned],
    naming: Naming,
    progress: Progress | None,
) -> ProjectReport:
    steps = sum(layer.request.points for layer in planned)
    done = 0
    layers = []
    for layer in planned:
        layers.append(_check_layer(layer, naming, progress, done, steps))
        done += layer.request.points
    points = max((layer.request.points for layer in planned), default=1)
    return ProjectReport(command, source, points, tuple(layers))


def _check_layer(
    layer: _Planned, naming: Naming, progress: Progress | None, done: int, steps: int
) -> LayerResult:
    """The layer at its given inputs, then at each further point."""
    result = LayerResult(layer.name, _replay_spec(layer.model), check=layer.request.name)
    if layer.error is not None:
        return dataclasses.replace(result, error=layer.error)
    request = layer.request
    count = request.points

    def step(point: int) -> None:
        if progress is not None:
            label = layer.name if count == 1 else f"{layer.name} · point {point}/{count}"
            progress.step(done + point, steps, label)

    step(1)
    try:
        first, report = session.run(
            _loader(layer, layer.supplied),
            request.asked,
            naming=naming,
            progress=progress,
            reference=reference_loader(request.options),
        )
    except InputError as error:
        return dataclasses.replace(result, error=one_line(str(error)))
    given = replayable_inputs(first.inputs, layer.model_file)
    points = [PointResult(1, "given", report, arrays=given)]
    for point in range(2, count + 1):
        step(point)
        rng = point_rng(request.asked.seed, layer.name, point)
        origin = "sample_inputs" if _samples(layer) else "drawn"
        arrays: dict[str, Any] = {}
        try:
            arrays, origin = draw_point(given, rng, layer.model_file)
            supplied = {
                name: Supplied(array, _source(first, name, origin, point, given[name] is array))
                for name, array in arrays.items()
            }
            _, report = session.run(
                _loader(layer, supplied, first),
                request.asked,
                naming=naming,
                progress=progress,
                reference=reference_loader(request.options),
            )
        except InputError as error:
            message = f"at point {point} ({origin}): {one_line(str(error))}"
            points.append(PointResult(point, origin, None, message, arrays))
            continue
        points.append(PointResult(point, origin, report, arrays=arrays))
    return dataclasses.replace(result, points=tuple(points))


def _samples(layer: _Planned) -> bool:
    return layer.model_file is not None and layer.model_file.sample_inputs is not None


def _source(first: Subject, name: str, origin: str, point: int, kept: bool) -> str:
    """A point's input's source: as given for an input kept (a label), else the point."""
    return first.sources.get(name, "given") if kept else f"point {point} ({origin})"


def _loader(
    layer: _Planned,
    supplied: Mapping[str, Supplied] | None,
    first: Subject | None = None,
) -> Callable[[], Subject]:
    """How session.run loads the layer with `supplied` arrays: a fresh call counter each time,
    so that each point's report counts its own forward calls."""
    options = layer.request.options

    def load() -> Subject:
        if layer.model_file is None:
            if isinstance(first, BuiltinSubject) and supplied is not None:
                return builtin_subject(first.builtin, supplied, options.dtype)
            return load_subject(options)
        model_file = dataclasses.replace(layer.model_file, counter=CallCounter())
        return model_file_subject(model_file, options, supplied=supplied, params=layer.params)

    return load


def _replay_spec(model: str) -> str:
    """A layer's `--model` as the user can type it from here: relative to the working
    directory where that is shorter."""
    path_text, entry = split_model_spec(model)
    if not path_text.endswith(".py") or not os.path.isabs(path_text):
        return model
    try:
        relative = os.path.relpath(path_text)
    except ValueError:  # another drive (Windows)
        return model
    shorter = relative if len(relative) < len(path_text) else path_text
    return shorter if entry is None else f"{shorter}:{entry}"
