"""The Python API: check your own forward/backward from code or from a pytest test.

    from gradcheck_cli import assert_gradients_close, check_layer

    def test_my_layer_gradient():
        assert_gradients_close(forward, backward, inputs={"x": x, "w": w, "b": b})
        check_layer(affine_forward, affine_backward, {"x": x, "w": w, "b": b})

Every function returns the same `RunReport` that `gradcheck run --format json` prints
(`report.to_document()` is that JSON document).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from gradcheck_cli.checks import core as checks
from gradcheck_cli.errors import InputError
from gradcheck_cli.report import ModelInfo, RunReport
from gradcheck_cli.subject.arguments import Supplied
from gradcheck_cli.subject.binding import Bound, bind
from gradcheck_cli.subject.conventions import ModelFile, model_from_functions

EntriesArgument = str | Mapping[str, Sequence[Sequence[int]]] | None


def check_gradients(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    X: ArrayLike | None = None,
    W: ArrayLike | None = None,
    *,
    inputs: Mapping[str, ArrayLike] | None = None,
    params: Mapping[str, object] | None = None,
    wrt: str | Sequence[str] | None = None,
    method: str = "central",
    delta: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    dtype: Literal["float64", "float32"] = "float64",
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
) -> RunReport:
    """Check backward against finite differences of forward, as `gradcheck run` does.

    The inputs are `inputs={"x": x, "w": w, "b": b}` by forward's parameter names (arrays of
    any shape; integer and boolean arrays are constants), or the positional pair `X, W` for
    forward's first two parameters. `params` are passed through unchanged (not inputs).
    forward returns a number (then backward takes the same arguments and returns the
    gradients: a tuple in forward's order, or a dict by name) or an array (then backward takes
    grad_output last and returns the vector-Jacobian product). `wrt` names the inputs to check
    (default: every floating input backward gives a gradient for); `entries` is "all",
    "random:K" or {name: [index, ...]}; `mode="fast"` checks random directions first;
    `complex_safe=True` allows method="complex-step" for functions that accept complex input;
    `jobs` runs the forward calls on that many worker processes (None: one per core) when
    the check would take more than about two seconds and forward and backward pickle (functions
    defined at module level; not in a script's __main__).
    The other settings mean what the CLI options of the same name mean. Bad input raises
    `gradcheck_cli.errors.InputError`.
    """
    model_file = model_from_functions(
        forward, backward, name=name, formula=formula, complex_safe=complex_safe
    )
    supplied = _supplied(forward, X, W, inputs)
    return _check(
        model_file,
        supplied,
        params=params,
        wrt=wrt,
        method=method,
        delta=delta,
        rtol=rtol,
        atol=atol,
        dtype=dtype,
        entries=entries,
        details=details,
        top=top,
        cotangents=cotangents,
        seed=seed,
        mode=mode,
        directions=directions,
        nondet_tol=nondet_tol,
        jobs=jobs,
    )


def check_layer(
    layer_forward: Callable[..., Any],
    layer_backward: Callable[..., Any],
    inputs: Mapping[str, ArrayLike],
    *,
    params: Mapping[str, object] | None = None,
    name: str | None = None,
    **settings: Any,
) -> RunReport:
    """Check a layer written in the CS231n convention: `layer_forward(x, w, b, ...)` returns
    `(out, cache)` (or several outputs, then the cache) and `layer_backward(dout, cache)`
    returns the gradients of the inputs in forward's order. The vector-Jacobian product is
    checked with seeded random `dout` (a scalar output, a loss, gets dout = 1.0). Settings as
    for check_gradients."""
    model_file = model_from_functions(
        layer_forward,
        layer_backward,
        name=name or getattr(layer_forward, "__name__", "layer").removesuffix("_forward"),
        convention="layer",
        complex_safe=bool(settings.pop("complex_safe", False)),
    )
    return _check(
        model_file, _supplied(layer_forward, None, None, inputs), params=params, **settings
    )


def assert_gradients_close(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    X: ArrayLike | None = None,
    W: ArrayLike | None = None,
    **settings: Any,
) -> RunReport:
    """Like check_gradients, but raise AssertionError when the gradient is not shown right;
    its message is the report's table (the worst entries, why they fail, the diagnosis)."""
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    report = check_gradients(forward, backward, X, W, **settings)
    if not report.passed:
        raise AssertionError(failure_message(report))
    return report


def failure_message(report: RunReport) -> str:
    """The table a person would read, without colour, for an assertion message."""
    import io

    from rich.console import Console

    from gradcheck_cli.render.table import render_run

    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None, highlight=False)
    render_run(report, console)
    return "gradients not shown right:\n" + buffer.getvalue().rstrip()


def check_hvp(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    hvp: Callable[..., Any],
    inputs: Mapping[str, ArrayLike],
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
) -> RunReport:
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
    model_file = model_from_functions(forward, backward, name=name, formula=formula, hvp=hvp)
    bound, checked = _bind_for_tangents(
        model_file,
        _supplied(forward, None, None, inputs),
        params=params,
        wrt=wrt,
        dtype=dtype,
        tangents=tangents,
        top=top,
        details=details,
        seed=seed,
        nondet_tol=nondet_tol,
        gradients=True,
    )
    info = ModelInfo(model_file.name, model_file.formula, "api")
    gradient = checks.run_check(
        bound.models,
        bound.inputs,
        model_info=info,
        sources=bound.sources,
        wrt=checked,
        rtol=rtol,
        atol=atol,
        details=details,
        top=top,
        precision=bound.precision,
        extra_settings={"entries": "all", "seed": seed, "mode": "full"},
    )
    if not gradient.passed:
        return dataclasses.replace(gradient, forward_calls=model_file.counter.forward)
    return _tangent_report(
        "hvp", bound, checked, info, tangents, seed, rtol, atol, top, details, gradient
    )


def check_jvp(
    forward: Callable[..., Any],
    jvp: Callable[..., Any],
    inputs: Mapping[str, ArrayLike],
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
) -> RunReport:
    """Check a forward-mode derivative, as `gradcheck run --mode jvp` does.

    `jvp(<inputs>, tangents)` returns J v, the directional derivative of forward's output
    along the tangent (a dict by input name, an array for every floating input: zeros for
    those not in `wrt`), shaped like forward's output. It is checked against central
    differences of forward along `tangents` seeded random tangents over the inputs of `wrt`
    (default: every floating input), one entry per element of the output: `f` for a scalar
    forward, `out` for an array.
    """
    model_file = model_from_functions(forward, _no_backward, name=name, formula=formula, jvp=jvp)
    bound, checked = _bind_for_tangents(
        model_file,
        _supplied(forward, None, None, inputs),
        params=params,
        wrt=wrt,
        dtype=dtype,
        tangents=tangents,
        top=top,
        details=details,
        seed=seed,
        nondet_tol=nondet_tol,
        gradients=False,
    )
    info = ModelInfo(model_file.name, model_file.formula, "api")
    return _tangent_report(
        "jvp", bound, checked, info, tangents, seed, rtol, atol, top, details, None
    )


def _no_backward(*args: object, **kwargs: object) -> dict[str, object]:
    """check_jvp needs no gradient: the stand-in backward gives none (every input stays a
    candidate for the tangent, none is checked entry by entry)."""
    return {}


def _bind_for_tangents(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    *,
    params: Mapping[str, object] | None,
    wrt: str | Sequence[str] | None,
    dtype: str,
    tangents: int,
    top: int,
    details: str,
    seed: int,
    nondet_tol: float,
    gradients: bool,
) -> tuple[Bound, list[str]]:
    """The bound model and the inputs the tangents move: those of `wrt`, or by default every
    floating input that backward gives a gradient for (`gradients`: an hvp, of a scalar f
    only) or every floating input."""
    _choice("dtype", dtype, ("float64", "float32"))
    _choice("details", details, ("auto", "all", "worst"))
    if isinstance(tangents, bool) or not isinstance(tangents, int) or tangents < 1:
        raise InputError(f"tangents must be an integer >= 1; got {tangents!r}")
    if top < 1:
        raise InputError(f"top must be at least 1; got {top}")
    if not (np.isfinite(nondet_tol) and nondet_tol >= 0):
        raise InputError(f"nondet_tol must be a finite number >= 0; got {nondet_tol}")
    bound = bind(model_file, supplied, params, dtype=dtype, seed=seed, nondet_tol=nondet_tol)
    if gradients and bound.output_shape is not None:
        raise InputError(
            "check_hvp checks the Hessian of a scalar f; this forward returns an array of "
            f"shape {bound.output_shape}"
        )
    if gradients:
        given = checks.validate_gradient(bound.models[0], bound.inputs)
    else:
        given = {n: a for n, a in bound.inputs.items() if checks.floating(a)}
    return bound, checks.resolve_wrt(bound.inputs, given, _wrt_names(wrt), option="wrt")


def _tangent_report(
    kind: str,
    bound: Bound,
    checked: list[str],
    info: ModelInfo,
    tangents: int,
    seed: int,
    rtol: float | None,
    atol: float | None,
    top: int,
    details: str,
    gradient: RunReport | None,
) -> RunReport:
    from gradcheck_cli.checks.tangents import tangent_check, tangent_problem

    model = bound.models[0]
    problem = tangent_problem(
        kind, model, bound.functions, bound.inputs, checked, bound.output_shape
    )
    report = tangent_check(
        kind,
        model,
        problem.function,
        problem.analytic,
        bound.inputs,
        names=problem.names,
        tangent_inputs=checked,
        count=tangents,
        seed=seed,
        rtol=rtol,
        atol=atol,
        model_info=info,
        sources=bound.sources,
        top=top,
        details=details,
        precision=bound.precision,
        output_shapes=problem.shapes,
        gradient_check=gradient,
        output_shape=bound.output_shape,
    )
    return dataclasses.replace(report, forward_calls=bound.model_file.counter.forward)


def _supplied(
    forward: Callable[..., Any],
    X: ArrayLike | None,
    W: ArrayLike | None,
    inputs: Mapping[str, ArrayLike] | None,
) -> dict[str, Supplied]:
    if inputs is not None and (X is not None or W is not None):
        raise InputError("give the inputs either as X, W or as inputs={...}, not both")
    if inputs is None:
        if X is None or W is None:
            raise InputError("give the inputs as inputs={name: array, ...} (or as X, W)")
        # The positional pair feeds forward's first two parameters, whatever their names.
        names = _positional_names(forward)[:2]
        if len(names) < 2:
            raise InputError("forward takes fewer than two parameters: give inputs={...}")
        inputs = {names[0]: X, names[1]: W}
    supplied = {}
    for key, value in inputs.items():
        if not isinstance(key, str):
            raise InputError(f"inputs keys must be parameter names; got {key!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise InputError(f"input {key} is not an array of real numbers (dtype {array.dtype})")
        if array.size == 0:
            raise InputError(f"input {key} is empty (shape {array.shape})")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise InputError(f"input {key} holds NaN or Inf values")
        supplied[key] = Supplied(array, "array")
    return supplied


def _positional_names(function: Callable[..., Any]) -> list[str]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in kinds]


def _check(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    *,
    params: Mapping[str, object] | None = None,
    wrt: str | Sequence[str] | None = None,
    method: str = "central",
    delta: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    dtype: str = "float64",
    entries: EntriesArgument = None,
    details: str = "auto",
    top: int = 10,
    cotangents: int = 2,
    seed: int = 0,
    mode: str = "full",
    directions: int = 4,
    nondet_tol: float = 0.0,
    jobs: int | None = 1,
) -> RunReport:
    _choice("dtype", dtype, ("float64", "float32"))
    _choice("details", details, ("auto", "all", "worst"))
    _choice("mode", mode, ("full", "fast"))
    if cotangents < 1 or top < 1 or directions < 1:
        raise InputError(
            "cotangents, top and directions must be at least 1; got "
            f"{cotangents}, {top} and {directions}"
        )
    if not (np.isfinite(nondet_tol) and nondet_tol >= 0):
        raise InputError(f"nondet_tol must be a finite number >= 0; got {nondet_tol}")
    if mode == "fast" and delta is not None:
        raise InputError("mode='fast' picks its own step per direction; drop delta")
    bound = bind(
        model_file,
        supplied,
        params,
        dtype=dtype,
        cotangents=cotangents,
        seed=seed,
        nondet_tol=nondet_tol,
    )
    gradients = checks.validate_gradient(bound.models[0], bound.inputs)
    names = _wrt_names(wrt)
    chosen_entries, checked = _entries(entries, bound.inputs, gradients, names, seed)
    info = ModelInfo(model_file.name, model_file.formula, "api")
    from gradcheck_cli.numerics.workers import Parallel, default_jobs

    count = default_jobs() if jobs is None else jobs
    parallel = Parallel(bound.recipe, model_file.label, count, model_file.counter)
    settings = {
        "entries": entries if isinstance(entries, str) else ("all" if entries is None else "list"),
        "seed": seed,
    }
    common: dict[str, Any] = {
        "model_info": info,
        "sources": bound.sources,
        "wrt": checked,
        "entries": chosen_entries,
        "method": method,
        "rtol": rtol,
        "atol": atol,
        "top": top,
        "precision": bound.precision,
        "output_shape": bound.output_shape,
    }
    report = checks.check_in_mode(
        mode,
        bound.models,
        bound.inputs,
        directions=directions,
        seed=seed,
        delta=delta,
        details=details,
        parallel=parallel,
        extra_settings=settings,
        **common,
    )
    return dataclasses.replace(report, forward_calls=model_file.counter.forward)


def _wrt_names(wrt: str | Sequence[str] | None) -> list[str] | None:
    if wrt is None:
        return None
    if isinstance(wrt, str):
        if wrt == "both":
            return ["X", "W"]
        return [n.strip() for n in wrt.split(",")]
    return list(wrt)


def _entries(
    entries: EntriesArgument,
    inputs: Mapping[str, Any],
    gradients: Mapping[str, Any],
    wrt: list[str] | None,
    seed: int,
) -> tuple[dict[str, np.ndarray[Any, Any]] | None, list[str]]:
    """(flat indices per input or None, the checked inputs) for the `entries` argument."""
    if entries is None or entries == "all":
        return None, checks.resolve_wrt(inputs, gradients, wrt, option="wrt")
    if isinstance(entries, str):
        count = entries.removeprefix("random:")
        if not entries.startswith("random:") or not count.isdigit() or int(count) < 1:
            raise InputError(f"entries must be 'all', 'random:K' or a dict; got {entries!r}")
        checked = checks.resolve_wrt(inputs, gradients, wrt, option="wrt")
        rng = np.random.default_rng(seed)
        chosen = {}
        for name in checked:
            size = int(np.size(inputs[name]))
            chosen[name] = np.sort(rng.choice(size, size=min(int(count), size), replace=False))
        return chosen, checked
    selection = {}
    for key, indices in entries.items():
        if key not in inputs:
            raise InputError(
                f"entries key {key!r} is not an input; the inputs are {', '.join(inputs)}"
            )
        shape = np.shape(inputs[key])
        flat = []
        for index in indices:
            index = tuple(int(i) for i in index)
            if len(index) != len(shape) or not all(
                0 <= i < n for i, n in zip(index, shape, strict=True)
            ):
                limits = ", ".join(f"0..{n - 1}" for n in shape)
                raise InputError(
                    f"entry {key}{list(index)} is out of range for shape {shape}: each index "
                    f"must be in {limits or 'an empty index (a 0-D input)'}"
                )
            flat.append(int(np.ravel_multi_index(index, shape)) if shape else 0)
        selection[key] = np.asarray(sorted(set(flat)), dtype=np.intp)
    checked = checks.resolve_wrt(
        inputs, gradients, wrt if wrt is not None else list(selection), option="wrt"
    )
    return selection, checked


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
