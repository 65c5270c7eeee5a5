"""The Python API: check your own forward/backward from code or from a pytest test.

    from gradcheck_cli import assert_gradients_close, assert_layer_gradients, check_layer

    def test_my_layer_gradient():
        assert_gradients_close(forward, backward, inputs={"x": x, "w": w, "b": b})
        assert_layer_gradients(affine_forward, affine_backward, {"x": x, "w": w, "b": b})
        check_layer(affine_forward, affine_backward, {"x": x, "w": w, "b": b}).assert_ok()

Every function returns a `GradientReport`: the `RunReport` that `gradcheck run --format json`
prints (`report.to_document()` is that JSON document), whose `str()` is the terminal table,
`repr()` one line, and `assert_ok()` raises AssertionError with the table unless it passed.

Every public function hides its own frames from pytest (`__tracebackhide__`), and bad input
raises `InputError` from the public function itself, without the chain of internal frames it
came through: a test's failure shows the test's line and one message.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from gradcheck_cli import session
from gradcheck_cli.errors import InputError
from gradcheck_cli.project_report import ProjectReport
from gradcheck_cli.report import RunReport
from gradcheck_cli.settings import API, DTYPES, CheckSettings, EntrySelection
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.binding import bind
from gradcheck_cli.subject.conventions import ModelFile
from gradcheck_cli.subject.handed import (
    InputsArgument,
    model_from_framework_function,
    model_from_functions,
    supplied_in_python,
)
from gradcheck_cli.subject.low_precision import (
    callable_reference,
    check_dtype,
    reference_loader,
)
from gradcheck_cli.subject.options import Subject

EntriesArgument = str | Mapping[str, Sequence[Sequence[int]]] | None

P = ParamSpec("P")
R = TypeVar("R")


class GradientReport(RunReport):
    """The report of an API check: a `RunReport` that prints as the terminal table."""

    def __str__(self) -> str:
        """The table a person would read (`gradcheck run`'s, without colour)."""
        __tracebackhide__ = True
        return table_text(self)

    def assert_ok(self) -> GradientReport:
        """Raise AssertionError, whose message is the table, unless every entry passed."""
        __tracebackhide__ = True
        if not self.passed:
            raise AssertionError(failure_message(self))
        return self


def _public(function: Callable[P, R]) -> Callable[P, R]:
    """A public function: bad input raises from here, with no chain of internal frames (the
    user's test shows its own line and the message), and pytest hides this frame too."""

    @functools.wraps(function)
    def public(*args: P.args, **kwargs: P.kwargs) -> R:
        __tracebackhide__ = True
        try:
            return function(*args, **kwargs)
        except InputError as error:
            raise error.with_traceback(None) from None

    return public


@_public
def check_gradients(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    X: ArrayLike | None = None,
    W: ArrayLike | None = None,
    *,
    inputs: InputsArgument | None = None,
    params: Mapping[str, object] | None = None,
    wrt: str | Sequence[str] | None = None,
    method: str = "central",
    delta: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    dtype: Literal["float64", "float32", "float16", "bfloat16"] = "float64",
    entries: EntriesArgument = None,
    details: Literal["auto", "all", "worst"] = "auto",
    top: int = 10,
    cotangents: int = 2,
    seed: int = 0,
    name: str | None = None,
    formula: str | None = None,
    mode: Literal["full", "fast"] = "full",
    directions: int = 4,
    nondet_tol: float = 0.0,
    complex_safe: bool = False,
    jobs: int | None = 1,
    side_effects: bool = True,
    reference_forward: Callable[..., Any] | None = None,
) -> GradientReport:
    """Check backward against finite differences of forward, as `gradcheck run` does.

    The inputs are `inputs={"x": x, "w": w, "b": b}` by forward's parameter names (arrays of
    any shape; integer and boolean arrays are constants; a dict of arrays, each an input named
    `parameters.W1`), or the positional pair `X, W` for forward's first two parameters.
    `params` are passed through unchanged (not inputs); a layer's backward may take some by
    name too.
    forward returns a number (then backward takes the same arguments and returns the
    gradients: a tuple in forward's order, or a dict by name) or an array (then backward takes
    grad_output last and returns the vector-Jacobian product). `wrt` names the inputs to check
    (default: every floating input backward gives a gradient for); `entries` is "all",
    "random:K" or {name: [index, ...]}; `mode="fast"` checks random directions first;
    `complex_safe=True` allows method="complex-step" for functions that accept complex input;
    `jobs` runs the forward calls on that many worker processes (None: one per core) when
    the check would take more than about two seconds and forward and backward pickle (functions
    defined at module level; not in a script's __main__). `side_effects=False` skips the
    checks of what forward and backward write into (dout, the cache, the inputs), of backward's
    re-entrancy and of memory np.empty left unwritten; each side effect found fails the report.
    `dtype="float32"` or `"float16"` runs forward and backward in that precision and judges the
    gradient against a float64 forward at the same quantised inputs: forward's own, when it
    computes in float64 there (numpy code that follows its inputs' dtype; the same code's
    float64 gradient is then checked first), or `reference_forward`, a function taking the same
    inputs by name and returning forward's output(s) in float64.
    The other settings mean what the CLI options of the same name mean. Bad input raises
    `gradcheck_cli.errors.InputError`.
    """
    __tracebackhide__ = True
    model_file = model_from_functions(
        forward, backward, name=name, formula=formula, complex_safe=complex_safe
    )
    supplied = supplied_in_python(forward, X, W, inputs)
    asked = CheckSettings(
        method=method,
        delta=delta,
        rtol=rtol,
        atol=atol,
        wrt=_wrt_names(wrt),
        entries=_entry_selection(entries),
        details=details,
        top=top,
        mode=mode,
        directions=directions,
        seed=seed,
        jobs=jobs,
    )
    return _run(
        model_file,
        supplied,
        asked,
        params,
        dtype,
        cotangents,
        nondet_tol,
        side_effects,
        reference_forward,
    )


@_public
def check_layer(
    layer_forward: Callable[..., Any],
    layer_backward: Callable[..., Any],
    inputs: InputsArgument,
    *,
    params: Mapping[str, object] | None = None,
    name: str | None = None,
    **settings: Any,
) -> GradientReport:
    """Check a layer written in the CS231n convention: `layer_forward(x, w, b, ...)` returns
    `(out, cache)` (or several outputs, then the cache) and `layer_backward(dout, cache)`
    returns the gradients of the inputs in forward's order. The vector-Jacobian product is
    checked with seeded random `dout` (a scalar output, a loss, gets dout = 1.0). Settings as
    for check_gradients; `check_layer(...).assert_ok()` asserts."""
    __tracebackhide__ = True
    model_file = model_from_functions(
        layer_forward,
        layer_backward,
        name=name or getattr(layer_forward, "__name__", "layer").removesuffix("_forward"),
        convention="layer",
        complex_safe=bool(settings.pop("complex_safe", False)),
    )
    return _check_with(
        model_file, supplied_in_python(layer_forward, None, None, inputs), params, settings
    )


@_public
def check_function(
    function: Callable[..., Any],
    inputs: Mapping[str, object],
    *,
    device: str | None = None,
    **settings: Any,
) -> GradientReport:
    """Check the hand-written backward of a PyTorch or JAX function, as `gradcheck run --model
    FILE.py:NAME` does: a `torch.autograd.Function` subclass (called through .apply), a
    function built on one or on a custom operator with `register_autograd`, a `jax.custom_vjp`
    or `custom_jvp` function, or any function of either framework. `inputs` are its arguments
    by parameter name, as its file's example_inputs() would give them: floating tensors (or
    arrays) are checked, integer and boolean ones are constants, other values parameters.
    `device` places the tensors (a torch device such as "cuda"; the CPU by default). Settings
    as for check_gradients (`dtype="bfloat16"` included); `.assert_ok()` asserts."""
    __tracebackhide__ = True
    model_file, supplied, params = model_from_framework_function(function, inputs, device=device)
    return _check_with(model_file, supplied, params, settings)


@_public
def assert_gradients_close(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    X: ArrayLike | None = None,
    W: ArrayLike | None = None,
    **settings: Any,
) -> GradientReport:
    """Like check_gradients, but raise AssertionError when the gradient is not shown right;
    its message is the report's table (the worst entries, why they fail, the diagnosis)."""
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    return check_gradients(forward, backward, X, W, **settings).assert_ok()


@_public
def assert_layer_gradients(
    layer_forward: Callable[..., Any],
    layer_backward: Callable[..., Any],
    inputs: Mapping[str, ArrayLike],
    **settings: Any,
) -> GradientReport:
    """check_layer, raising AssertionError (its message the table) unless the layer's
    gradients are shown right: the one-line test of a CS231n-style layer."""
    __tracebackhide__ = True
    return check_layer(layer_forward, layer_backward, inputs, **settings).assert_ok()


@_public
def check_file(
    path: str | os.PathLike[str],
    *,
    only: str | Sequence[str] | None = None,
    skip: str | Sequence[str] = (),
    points: int = 1,
    seed: int = 0,
    params: Mapping[str, object] | None = None,
    method: str = "central",
    rtol: float | None = None,
    atol: float | None = None,
    dtype: Literal["float64", "float32"] = "float64",
    mode: Literal["full", "fast"] = "full",
    cotangents: int = 2,
    nondet_tol: float = 0.0,
    jobs: int | None = 1,
) -> ProjectReport:
    """Check every layer of a model file, as `gradcheck run --model FILE.py` does (or the one
    `FILE.py:NAME` names), each with its own example inputs, at `points` input points (the
    given ones and points - 1 drawn with `seed`). `only` and `skip` select layers by name;
    `params` go to every layer that takes them. Returns a `ProjectReport`: `.verdict`,
    `.layers` (each with its points' `RunReport`s), `.to_document()` (the JSON of --format
    json) and `.assert_ok()`. A layer that cannot be checked is that layer's error, not an
    exception; bad settings raise `InputError`."""
    __tracebackhide__ = True
    from gradcheck_cli.project import runner
    from gradcheck_cli.subject.options import InputOptions

    options = InputOptions(
        model_spec=os.fspath(path),
        param_specs=tuple((params or {}).items()),
        dtype=dtype,
        nondet_tol=nondet_tol,
        cotangents=cotangents,
        seed=seed,
    )
    if not options.is_model_file():
        raise InputError(f"check_file takes a model file's path (FILE.py[:NAME]); got {path!r}")
    asked = CheckSettings(method=method, rtol=rtol, atol=atol, mode=mode, seed=seed, jobs=jobs)
    request = runner.CheckRequest(
        options,
        asked,
        points=points,
        only=None if only is None else _names(only),
        skip=_names(skip),
        where="check_file",
    )
    return runner.run_checks([request], source=os.fspath(path), naming=API, command="run")


def _names(names: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        return tuple(n.strip() for n in names.split(",") if n.strip())
    return tuple(names)


def failure_message(report: RunReport) -> str:
    """The table a person would read, without colour, for an assertion message."""
    __tracebackhide__ = True
    return "gradients not shown right:\n" + table_text(report)


def table_text(report: RunReport) -> str:
    """The report's terminal table as text, without colour, 100 columns wide."""
    __tracebackhide__ = True
    import io

    from rich.console import Console

    from gradcheck_cli.render.table import render_run

    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None, highlight=False)
    render_run(report, console)
    return buffer.getvalue().rstrip()


@_public
def check_hvp(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    hvp: Callable[..., Any],
    inputs: InputsArgument,
    *,
    tangents: int = 2,
    seed: int = 0,
    wrt: str | Sequence[str] | None = None,
    params: Mapping[str, object] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    dtype: Literal["float64", "float32"] = "float64",
    top: int = 10,
    details: Literal["auto", "all", "worst"] = "auto",
    name: str | None = None,
    formula: str | None = None,
    nondet_tol: float = 0.0,
    side_effects: bool = True,
) -> GradientReport:
    """Check a Hessian-vector product, as `gradcheck run --order 2` does.

    forward returns a number; backward takes the same arguments and returns the gradient (as
    for check_gradients); `hvp(<inputs>, tangents)` returns H v in backward's structure, where
    `tangents` is a dict by input name holding an array for every floating input (zeros for
    those not in `wrt`). The gradient is checked first, entry by entry: unless it passes, the
    report returned is that check's (a wrong gradient makes the hvp check meaningless).
    Otherwise H v is checked against central differences of backward along `tangents` seeded
    random tangents (seed `seed`) over the inputs of `wrt`, element by element; the report's
    entries carry the tangent's number and `gradient_check` sums up the first check.
    """
    __tracebackhide__ = True
    model_file = model_from_functions(forward, backward, name=name, formula=formula, hvp=hvp)
    asked = CheckSettings(
        rtol=rtol,
        atol=atol,
        wrt=_wrt_names(wrt),
        details=details,
        top=top,
        order=2,
        tangents=tangents,
        seed=seed,
    )
    supplied = supplied_in_python(forward, None, None, inputs)
    return _run(model_file, supplied, asked, params, dtype, 2, nondet_tol, side_effects)


@_public
def check_jvp(
    forward: Callable[..., Any],
    jvp: Callable[..., Any],
    inputs: InputsArgument,
    *,
    tangents: int = 2,
    seed: int = 0,
    wrt: str | Sequence[str] | None = None,
    params: Mapping[str, object] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    dtype: Literal["float64", "float32"] = "float64",
    top: int = 10,
    details: Literal["auto", "all", "worst"] = "auto",
    name: str | None = None,
    formula: str | None = None,
    nondet_tol: float = 0.0,
    side_effects: bool = True,
) -> GradientReport:
    """Check a forward-mode derivative, as `gradcheck run --mode jvp` does.

    `jvp(<inputs>, tangents)` returns J v, the directional derivative of forward's output
    along the tangent (a dict by input name, an array for every floating input: zeros for
    those not in `wrt`), shaped like forward's output. It is checked against central
    differences of forward along `tangents` seeded random tangents over the inputs of `wrt`
    (default: every floating input), one entry per element of the output: `f` for a scalar
    forward, `out` for an array.
    """
    __tracebackhide__ = True
    model_file = model_from_functions(forward, _no_backward, name=name, formula=formula, jvp=jvp)
    asked = CheckSettings(
        rtol=rtol,
        atol=atol,
        wrt=_wrt_names(wrt),
        details=details,
        top=top,
        mode="jvp",
        tangents=tangents,
        seed=seed,
    )
    supplied = supplied_in_python(forward, None, None, inputs)
    return _run(model_file, supplied, asked, params, dtype, 2, nondet_tol, side_effects)


def _no_backward(*args: object, **kwargs: object) -> dict[str, object]:
    """check_jvp needs no gradient: the stand-in backward gives none (every input stays a
    candidate for the tangent, none is checked entry by entry)."""
    return {}


_no_backward.gradcheck_stand_in = True  # type: ignore[attr-defined]
"""No side effects of it to check: the user wrote none."""


def _check_with(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    params: Mapping[str, object] | None,
    settings: Mapping[str, Any],
) -> GradientReport:
    """check_layer's settings, as check_gradients takes them."""
    known = set(inspect.signature(check_gradients).parameters) - {
        "forward",
        "backward",
        "X",
        "W",
        "inputs",
        "params",
        "name",
        "formula",
        "complex_safe",
    }
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(
            f"unknown setting {unknown[0]}; the settings are {', '.join(sorted(known))}"
        )
    given = dict(settings)
    dtype = given.pop("dtype", "float64")
    cotangents = given.pop("cotangents", 2)
    nondet_tol = given.pop("nondet_tol", 0.0)
    side_effects = given.pop("side_effects", True)
    reference_forward = given.pop("reference_forward", None)
    given["wrt"] = _wrt_names(given.get("wrt"))
    given["entries"] = _entry_selection(given.get("entries"))
    asked = CheckSettings(**given)
    return _run(
        model_file,
        supplied,
        asked,
        params,
        dtype,
        cotangents,
        nondet_tol,
        side_effects,
        reference_forward,
    )


def _run(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    asked: CheckSettings,
    params: Mapping[str, object] | None,
    dtype: str,
    cotangents: int,
    nondet_tol: float,
    side_effects: bool = True,
    reference_forward: Callable[..., Any] | None = None,
) -> GradientReport:
    """The session's run, on the functions bound to the given inputs."""
    __tracebackhide__ = True
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    check_dtype(dtype, option="dtype=", what=model_file if model_file.adapted else model_file.name)
    if reference_forward is not None:
        if not callable(reference_forward):
            raise InputError(f"reference_forward must be a function; got {reference_forward!r}")
        if dtype == "float64":
            raise InputError(
                "reference_forward is for a gradient computed in low precision: give "
                "dtype='float32' or 'float16'"
            )
        if asked.mode != "full" or asked.order != 1:
            raise InputError("reference_forward checks entry by entry: it needs mode='full'")
    if isinstance(cotangents, bool) or not isinstance(cotangents, int) or cotangents < 1:
        raise InputError(f"cotangents must be an integer >= 1; got {cotangents!r}")
    if not (isinstance(nondet_tol, (int, float)) and np.isfinite(nondet_tol) and nondet_tol >= 0):
        raise InputError(f"nondet_tol must be a finite number >= 0; got {nondet_tol!r}")
    if not isinstance(side_effects, bool):
        raise InputError(f"side_effects must be True or False; got {side_effects!r}")

    def load() -> Subject:
        return bind(
            model_file,
            supplied,
            params,
            dtype=dtype,
            cotangents=cotangents,
            seed=asked.seed,
            nondet_tol=nondet_tol,
            side_effects=side_effects,
        )

    named = None if reference_forward is None else callable_reference(reference_forward)
    reference = reference_loader(
        dtype,
        params=dict(params or {}),
        named=None if named is None else lambda _: named,
        cotangents=cotangents,
        seed=asked.seed,
        nondet_tol=nondet_tol,
    )
    _, report = session.run(load, asked, naming=API, reference=reference)
    fields = {field.name: getattr(report, field.name) for field in dataclasses.fields(report)}
    return GradientReport(**fields)


def _wrt_names(wrt: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if wrt is None:
        return None
    if isinstance(wrt, str):
        if wrt == "both":
            return ("X", "W")
        return tuple(n.strip() for n in wrt.split(","))
    return tuple(wrt)


def _entry_selection(entries: EntriesArgument) -> EntrySelection:
    """entries="all", "random:K" or {name: [index, ...]} as the settings hold it."""
    if entries is None or entries == "all":
        return EntrySelection()
    if isinstance(entries, str):
        count = entries.removeprefix("random:")
        if not entries.startswith("random:") or not count.isdigit() or int(count) < 1:
            raise InputError(f"entries must be 'all', 'random:K' or a dict; got {entries!r}")
        return EntrySelection("random", count=int(count))
    listed = []
    for key, indices in entries.items():
        if not isinstance(key, str):
            raise InputError(f"entries keys must be input names; got {key!r}")
        for index in indices:
            listed.append((key, tuple(int(i) for i in index)))
    return EntrySelection("listed", listed=tuple(listed))
