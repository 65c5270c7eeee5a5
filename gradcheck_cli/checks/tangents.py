"""Second-order and forward-mode checks: a hand-written Hessian-vector product or
Jacobian-vector product against central differences along a tangent.

Both are directional derivatives of a vector function g along a tangent v:
- hvp: g is the gradient (the backward); H v ~ (grad f(x + h v) - grad f(x - h v)) / 2h;
- jvp: g is forward's output; J v ~ (forward(x + h v) - forward(x - h v)) / 2h.
Each element of g gets a verdict, exactly as an entry of a gradient does in a first-order check:
the same error estimate (numerics/directional.py: Richardson from h/2 and 2h, round-off of the
size of g's part at that step), the same tolerance, the same reasons, so reports, tables,
diagnosis and error maps read the same. The entries are named by g's structure: the input
whose gradient component it is (hvp), or the output (jvp: `out`, or `out1`, `out2`... for
several; `f` for a scalar forward).

Seeded random tangents v ~ N(0, I) over the checked inputs; a check costs one evaluation of g,
then six and one of the hand-written derivative per tangent, whatever the size of the inputs.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks.assembly import Batch, assemble_run_report, run_settings
from gradcheck_cli.checks.judgement import Tolerance, VerdictRule, judge, scale_of, working_dtype
from gradcheck_cli.checks.selection import describe_inputs, require_finite_value
from gradcheck_cli.checks.target import Target
from gradcheck_cli.errors import InputError
from gradcheck_cli.numerics.blas import single_threaded_blas
from gradcheck_cli.numerics.directional import CENTRAL, VectorFunction, directional_estimates
from gradcheck_cli.numerics.models import Array, ElementwiseModel, Gradients, Inputs, Model
from gradcheck_cli.numerics.schemes import machine_epsilon
from gradcheck_cli.report import OutputShape, RunReport, TangentSettings
from gradcheck_cli.settings import CheckSettings

DirectionalDerivative = Callable[[Inputs, Mapping[str, Array]], Mapping[str, Array | None]]
"""The hand-written derivative of g along a tangent, by part name (an hvp or a jvp)."""

STEP_RULE = (
    "one step h per tangent v: the shortest over |v| of the moved entries' "
    "(eps * max(1, |g|))^(1/3) * max(1, |x|), rounded down to a power of two"
)


def random_tangents(
    inputs: Inputs, names: Sequence[str], count: int, seed: int
) -> list[dict[str, Array]]:
    """`count` tangents v ~ N(0, I) over the named inputs, in their dtypes, from one seed."""
    rng = np.random.default_rng(seed)
    return [
        {
            name: np.asarray(rng.standard_normal(np.shape(inputs[name])), dtype=inputs[name].dtype)
            for name in names
        }
        for _ in range(count)
    ]


def tangent_check(
    kind: str,
    target: Target,
    problem: TangentProblem,
    asked: CheckSettings,
    *,
    tangent_inputs: Sequence[str],
    gradient_check: RunReport | None = None,
) -> RunReport:
    """Check `problem.analytic(inputs, v)` (an hvp or a jvp, by part name) against central
    differences of `problem.function` along `asked.tangents` seeded random tangents over
    `tangent_inputs`.

    The entries are the elements of g's parts `problem.names`, shaped `problem.shapes`; for a
    jvp of an array forward, the report's f is <forward, v1>, as in a first-order check.
    """
    model, inputs, precision = target.model, target.inputs, target.precision
    function, analytic, names = problem.function, problem.analytic, problem.names
    count, seed = asked.tangents, asked.seed
    dtype = working_dtype(inputs)
    eps = max(machine_epsilon(dtype), precision.eps or 0.0)
    tolerance = Tolerance.resolve(dtype, asked.rtol, asked.atol)
    rule = VerdictRule(CENTRAL, None, tolerance, precision)
    shapes = dict(problem.shapes)
    batches: list[Batch] = []
    with single_threaded_blas():
        with np.errstate(all="ignore"):
            f0 = float(np.real(model.value(inputs)))
        require_finite_value(model, f0, inputs)
        with np.errstate(all="ignore"):
            base = function(inputs)
        for number, tangent in enumerate(
            random_tangents(inputs, tangent_inputs, count, seed), start=1
        ):
            given = analytic(inputs, _whole(inputs, tangent))
            estimates, _ = directional_estimates(
                function, inputs, tangent, names, eps=eps, noise=precision.uncertainty, base=base
            )
            for name in names:
                part = given.get(name)
                if part is None:
                    raise InputError(
                        f"{problem.label}: {kind} gives nothing for {name}; it returns one part "
                        f"per {'checked input' if kind == 'hvp' else 'output of forward'}"
                    )
                values = np.asarray(part, dtype=np.float64)
                if values.shape != shapes[name]:
                    raise InputError(
                        f"{problem.label}: {kind} returned {name} of shape {values.shape}; "
                        f"expected {shapes[name]}, the shape of {problem.of_what} {name}"
                    )
                if not np.all(np.isfinite(values)):
                    raise InputError(
                        f"{problem.label}: {kind} returned non-finite values for {name}"
                    )
                found = estimates[name]
                flat = np.arange(values.size, dtype=np.intp)
                verdicts = judge(
                    model,
                    inputs,
                    f"{kind}:{name}",
                    flat,
                    values.reshape(-1),
                    found,
                    tolerance,
                    scale=scale_of(found.numerical),
                    recheck=None,
                    slopes=None,
                    user_step=False,
                )
                batches.append((name, number, flat, verdicts))
    # The parts of g, shaped as they are: an hvp's parts are the inputs themselves.
    part_inputs = {
        name: inputs[name] if kind == "hvp" else np.zeros(shapes[name], dtype=dtype)
        for name in names
    }
    settings = run_settings(
        asked,
        rule,
        dtype,
        names,
        cotangents=target.cotangents,
        mode="jvp" if kind == "jvp" else "full",
        rule_text=STEP_RULE,
        tangent=TangentSettings(
            check="hvp" if kind == "hvp" else "jvp",
            order=2 if kind == "hvp" else 1,
            tangents=count,
            tangent_inputs=tuple(tangent_inputs),
        ),
    )
    report = assemble_run_report(
        model,
        part_inputs,
        batches,
        settings,
        f0=f0,
        about=target.about,
        input_infos=describe_inputs(inputs, target.sources, list(tangent_inputs), None),
        top=asked.top,
        output_shape=target.output_shape,
    )
    return dataclasses.replace(report, gradient_check=prerequisite(gradient_check))


def _whole(inputs: Inputs, tangent: Mapping[str, Array]) -> dict[str, Array]:
    """The tangent as the hand-written derivative receives it: an array for every floating
    input, zero where the input is not moved (so `tangents["A"]` works under --wrt x)."""
    zeros = {
        name: np.zeros_like(array)
        for name, array in inputs.items()
        if np.asarray(array).dtype.kind == "f" and name not in tangent
    }
    return {**zeros, **tangent}


def prerequisite(report: RunReport | None) -> dict[str, object] | None:
    """A check that came first, summed up: its verdict and counts (`gradient_check`)."""
    if report is None:
        return None
    return {
        "verdict": report.verdict,
        "entries": sum(s.entries for s in report.summary.values()),
        "failed": sum(s.failed for s in report.summary.values()),
        "inconclusive": sum(s.inconclusive for s in report.summary.values()),
    }


def flatten_outputs(outputs: Sequence[NDArray[np.floating]]) -> dict[str, Array]:
    """forward's outputs by name: `f` for a scalar, `out` for one array, `out1`, `out2`... for
    several (the layer convention)."""
    if len(outputs) == 1:
        return {"f" if np.ndim(outputs[0]) == 0 else "out": outputs[0]}
    return {f"out{k}": o for k, o in enumerate(outputs, start=1)}


class FileFunctions(Protocol):
    """What a model file (or the API's functions) offers a tangent check: forward's outputs,
    and the hand-written hvp and jvp over named inputs (user_model's bound functions)."""

    @property
    def label(self) -> str:
        """How messages name the model's file: `model.py`, `layers.py:affine`."""
        ...

    def outputs(self, inputs: Inputs) -> list[NDArray[Any]]: ...

    def hvp(self, inputs: Inputs, tangents: Mapping[str, Array]) -> Gradients: ...

    def jvp(self, inputs: Inputs, tangents: Mapping[str, Array]) -> list[NDArray[Any]]: ...


@dataclasses.dataclass(frozen=True)
class TangentProblem:
    """What a tangent check compares: g, its hand-written directional derivative, the names of
    g's parts (the entries' `wrt`) and their shapes."""

    function: VectorFunction
    analytic: DirectionalDerivative
    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    label: str
    """Who wrote the derivative, as messages name it: the model file (`model.py`)."""
    of_what: str
    """What g's parts are shaped like: "the input" (an hvp) or "forward's output" (a jvp)."""


def tangent_problem(
    kind: str,
    model: Model,
    functions: FileFunctions | None,
    inputs: Inputs,
    checked: Sequence[str],
    output_shape: OutputShape = None,
) -> TangentProblem:
    """For an hvp or jvp check of `model` (a built-in model, or a model file's first model with
    its `functions`): g (the gradient, or forward's outputs, by name), its analytic directional
    derivative, and g's parts. Raises InputError when the check does not apply."""
    builtin = model if isinstance(model, ElementwiseModel) else None
    if kind == "hvp":
        if output_shape is not None:
            raise InputError(
                "--order 2 (check_hvp) checks the Hessian of a scalar f; this forward returns "
                f"{'arrays' if output_shape and isinstance(output_shape[0], tuple) else 'an array'}"
            )

        def gradient(at: Inputs) -> dict[str, Array]:
            return {n: g for n, g in model.gradient(at).items() if g is not None}

        hvp: DirectionalDerivative
        if builtin is not None:
            hvp = builtin.hessian_vector_product
        elif functions is not None:
            hvp = functions.hvp
        else:
            raise InputError(f"{model.name} has no hvp to check")
        shapes = {n: tuple(np.shape(inputs[n])) for n in checked}
        label = functions.label if builtin is None and functions is not None else model.name
        return TangentProblem(gradient, hvp, list(checked), shapes, label, "the input")
    if kind != "jvp":
        raise ValueError(f"a tangent check is hvp or jvp; got {kind!r}")
    if builtin is not None:
        model_of_builtin = builtin

        def value(at: Inputs) -> dict[str, Array]:
            return {"f": np.asarray(model_of_builtin.value(at))}

        def directional(at: Inputs, tangents: Mapping[str, Array]) -> dict[str, Array | None]:
            return {"f": np.asarray(model_of_builtin.jacobian_vector_product(at, tangents))}

        return TangentProblem(value, directional, ["f"], {"f": ()}, model.name, "f")
    if functions is None:
        raise InputError(f"{model.name} has no jvp to check")
    file_functions = functions

    def outputs(at: Inputs) -> dict[str, Array]:
        return flatten_outputs(file_functions.outputs(at))

    shapes = {n: tuple(np.shape(a)) for n, a in outputs(inputs).items()}
    label = file_functions.label

    def user_jvp(at: Inputs, tangents: Mapping[str, Array]) -> dict[str, Array | None]:
        parts = file_functions.jvp(at, tangents)
        if len(parts) != len(shapes):
            if len(shapes) == 1:  # a list of numbers for forward's one output: one array
                parts = [np.asarray(parts)]
            else:
                raise InputError(
                    f"{label}: jvp returned {len(parts)} parts; forward has {len(shapes)} "
                    f"outputs ({', '.join(shapes)}): return one J v per output, in order"
                )
        return dict(flatten_outputs(parts))

    return TangentProblem(outputs, user_jvp, list(shapes), shapes, label, "forward's output")
