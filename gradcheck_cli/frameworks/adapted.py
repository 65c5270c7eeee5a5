"""What an adapter gives `subject/`: a framework's function as the plain convention's functions
over named numpy arrays, and what both adapters share (arguments by name, outputs as one numpy
array, messages that name the file and line).

The faces, all over numpy arrays, with the user's parameters as keyword-only arguments (so that
the trailing arguments the plain convention adds, `grad_output` and `tangents`, can never be
taken for a parameter the user's function gives a default):

- `forward(**inputs)`: the function's output; several floating outputs are one flat array;
- `backward(grad_output=None, /, **inputs)`: the gradient of every floating input, by name,
  through the framework's reverse mode (so through the user's backward): of the scalar output,
  or the vector-Jacobian product for `grad_output`;
- `hvp(tangents, /, **inputs)` and `jvp(tangents, /, **inputs)`: double backward and forward
  mode (the user's jvp rule where there is one);
- `differences_at_shifts(arguments, wrt, flat_indices, shifts, projections)`: forward at many
  moved copies of one input in one call (vmap), as differences from the unmoved point of each
  projection (a cotangent), or None (numerics.models.BatchedModel);
- `example_inputs()`: the file's examples, tensors as numpy arrays, other values parameters.

Pure numpy and stdlib: nothing here imports a framework.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import UserCodeError
from gradcheck_cli.frameworks.effects import EffectProbe

Array = NDArray[Any]
Named = Mapping[str, object]

EMPTY = inspect.Parameter.empty
_MESSAGE_LIMIT = 300


class AdapterError(UserCodeError):
    """What an adapter says the user's framework code did wrong: already one line naming the
    file (and line), passed through as it is by whatever calls the adapted functions."""


@dataclass(frozen=True)
class Param:
    """A value example_inputs() gave that is not a tensor or array (a Python number, a numpy
    scalar): a framework function's parameter, passed through unchanged and never perturbed.
    (A numpy model's plain numbers are 0-D inputs; a framework's `scale: float` is not.)"""

    value: object

    def __repr__(self) -> str:
        return repr(self.value)


def unboxed(value: object) -> object:
    return value.value if isinstance(value, Param) else value


def one_line(text: str) -> str:
    """`text` on one line, cut to a few hundred characters."""
    joined = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    if len(joined) > _MESSAGE_LIMIT:
        joined = joined[: _MESSAGE_LIMIT - 3] + "..."
    return joined


def describe(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def line_of(function: object) -> int | None:
    """The line a function (or class) is defined on, where Python can tell."""
    target = inspect.unwrap(function) if callable(function) else function
    target = getattr(target, "__func__", target)
    try:
        return inspect.getsourcelines(target)[1]  # type: ignore[arg-type]
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        return code.co_firstlineno if code is not None else None


@dataclass(frozen=True)
class Where:
    """The user's file, for messages: `model.py:12: ...`."""

    path: Path

    def at(self, function: object | None) -> str:
        line = line_of(function) if function is not None else None
        return self.path.name if line is None else f"{self.path.name}:{line}"

    def error(self, function: object | None, message: str) -> AdapterError:
        return AdapterError(f"{self.at(function)}: {message}")


@dataclass(frozen=True)
class Adapted:
    """A framework's function adapted to the plain convention (see the module docstring), with
    what a report and a worker process need to know about it."""

    framework: str
    """torch or jax."""
    entry: str | None
    """The NAME of --model FILE.py:NAME; None for the file's `forward`. A worker loads the same."""
    device: str | None
    """--device as given (None: the CPU); a worker places its tensors there too."""
    name: str
    formula: str
    forward: Callable[..., object]
    backward: Callable[..., object]
    hvp: Callable[..., object]
    jvp: Callable[..., object]
    example_inputs: Callable[[], object] | None
    differences_at_shifts: Callable[
        [Named, str, NDArray[np.intp], Array, Sequence[Sequence[Array]] | None],
        tuple[list[tuple[Array, Array]], int] | None,
    ]
    in_precision: Callable[[str], Adapted]
    """The same function with its floating tensors made in that dtype at the edge (bfloat16,
    which numpy has not: the arrays stay float64, holding bfloat16 numbers)."""
    precision: str | None = None
    """The dtype the adapter makes floating tensors in; None: the arrays' own."""
    effects: EffectProbe | None = None
    """How the framework's side-effect checks call the function (`effects`)."""


@dataclass
class OutputLayout:
    """How a function's outputs become one array: the floating outputs' shapes, in order (one
    output keeps its shape; several are flattened and joined)."""

    shapes: list[tuple[int, ...]]

    @property
    def shape(self) -> tuple[int, ...]:
        if len(self.shapes) == 1:
            return self.shapes[0]
        return (sum(math.prod(s) for s in self.shapes),)

    def join(self, parts: Sequence[Array], lead: tuple[int, ...] = ()) -> Array:
        """One array from the outputs (each with `lead` batch dimensions in front)."""
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p.reshape(*lead, -1) for p in parts], axis=len(lead))

    def split_rows(self, joined: Array) -> list[Array]:
        """Each output of a batch of joined outputs, with the row count in front."""
        if len(self.shapes) == 1:
            return [joined]
        rows = joined.shape[0]
        parts, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            parts.append(joined[:, start : start + size].reshape(rows, *shape))
            start += size
        return parts

    def split(self, joined: Array) -> list[Array]:
        """The cotangent of each output from one of the joined shape."""
        if len(self.shapes) == 1:
            return [np.asarray(joined).reshape(self.shapes[0])]
        flat = np.asarray(joined).reshape(-1)
        parts, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            parts.append(flat[start : start + size].reshape(shape))
            start += size
        return parts


class Remembered:
    """Differences already evaluated, for one set of argument values and projections: a check
    asks for the same points once per cotangent, and a batch answers them all at once. A change
    of any argument (or of the projections) forgets everything."""

    def __init__(self) -> None:
        self.key = b""
        self.store: dict[tuple[int, int, bytes], list[tuple[Array, float]]] = {}

    def at(
        self, values: Sequence[object], projections: Sequence[Sequence[Array]] | None
    ) -> dict[tuple[int, int, bytes], list[tuple[Array, float]]]:
        digest = hashlib.blake2b(digest_size=16)
        for value in values:
            if isinstance(value, np.ndarray):
                digest.update(str((value.dtype.str, value.shape)).encode())
                digest.update(np.ascontiguousarray(value).data)
            else:
                digest.update(repr(id(value)).encode())
        for vectors in projections or ():
            for v in vectors:
                digest.update(np.ascontiguousarray(v).data)
        key = digest.digest()
        if key != self.key:
            self.key, self.store = key, {}
        return self.store


class Adapter(ABC):
    """The plain convention's faces over numpy arrays, for one framework's function; each
    framework fills in how its values are made, called, differentiated and batched."""

    framework = ""

    def __init__(
        self,
        *,
        where: Where,
        label: str,
        parameters: Sequence[inspect.Parameter],
        defined_at: object,
    ) -> None:
        self.where = where
        self.label = label
        """How messages name the function: `SoftplusAffine`, `scaled_tanh`, `lse`."""
        self.parameters = list(parameters)
        self.names = [p.name for p in self.parameters]
        self.defined_at = defined_at
        """The user's object whose definition line messages about its outputs name."""
        self.layout: OutputLayout | None = None
        self.remembered = Remembered()
        self.precision: str | None = None
        """The dtype floating tensors are made in (bfloat16); None: the arrays' own."""
        self.made: dict[str, Any] = {}
        """What `adapted` was called with, to adapt the same function in another precision."""

    # --- what each framework provides ----------------------------------------------------------

    @abstractmethod
    def evaluate(self, values: list[object]) -> list[Array]:
        """The floating outputs, as numpy arrays, at these argument values (numpy in)."""

    @abstractmethod
    def vjp(self, values: list[object], cotangents: list[Array] | None) -> dict[int, Array]:
        """The gradient of each floating input (by position) for these cotangents (None: of the
        scalar output)."""

    @abstractmethod
    def hessian_vector(self, values: list[object], tangents: dict[int, Array]) -> dict[int, Array]:
        """H v for the floating inputs (by position), by double backward."""

    @abstractmethod
    def jacobian_vector(self, values: list[object], tangents: dict[int, Array]) -> list[Array]:
        """J v, one array per floating output, by forward mode."""

    @abstractmethod
    def batched(self, values: list[object], position: int, stacked: Array) -> list[Array] | None:
        """The floating outputs at every row of `stacked` (moved copies of argument `position`)
        in one call, each with the row count in front; None where it cannot."""

    @abstractmethod
    def convert_example(self, value: object) -> object:
        """An example value as gradcheck takes it: tensors as numpy arrays, numbers as Param."""

    def effect_probe(self) -> EffectProbe | None:
        """What the side-effect checks call (`effects`); None: the numpy checks at the faces."""
        return None

    def retyped(self, precision: str) -> Adapter:
        """A copy of this adapter that makes floating tensors in `precision`, with nothing
        remembered of this one's calls."""
        other = copy.copy(self)
        other.precision = precision
        other.layout = None
        other.remembered = Remembered()
        return other

    # --- arguments -------------------------------------------------------------------------------

    def values(self, named: Named) -> list[object]:
        """The function's arguments in its order, defaults where nothing was given."""
        values = []
        for parameter in self.parameters:
            if parameter.name in named:
                values.append(unboxed(named[parameter.name]))
            elif parameter.default is not EMPTY:
                values.append(parameter.default)
            else:
                raise AdapterError(
                    f"{self.where.path.name}: no value for {parameter.name!r}, a parameter of "
                    f"{self.label}"
                )
        return values

    def floating(self, values: Sequence[object]) -> list[int]:
        """Positions of the floating arrays: the inputs that are differentiated."""
        return [
            i
            for i, v in enumerate(values)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and self.differentiable(i)
        ]

    def differentiable(self, position: int) -> bool:
        """Whether the framework may differentiate this argument (jax's nondiff_argnums)."""
        return True

    def outputs(self, parts: Sequence[Array]) -> Array:
        """One array from the floating outputs; their shapes must stay those of the first call."""
        shapes = [tuple(p.shape) for p in parts]
        if self.layout is None:
            self.layout = OutputLayout(shapes)
        elif shapes != self.layout.shapes:
            raise self.where.error(
                self.defined_at,
                f"{self.label} returned outputs of shapes {_shapes(shapes)} here but "
                f"{_shapes(self.layout.shapes)} before; its output shapes must not depend on "
                "the values of its inputs",
            )
        return self.layout.join(parts)

    # --- the plain convention's faces ------------------------------------------------------------

    def forward(self, **named: object) -> Array:
        return self.outputs(self.evaluate(self.values(named)))

    def backward(self, grad_output: object = None, /, **named: object) -> dict[str, Array]:
        values = self.values(named)
        cotangents = None
        if grad_output is not None:
            if self.layout is None:
                self.forward(**named)
            assert self.layout is not None
            cotangents = self.layout.split(np.asarray(grad_output))
        grads = self.vjp(values, cotangents)
        return {self.names[i]: g for i, g in grads.items()}

    def hvp(self, tangents: Mapping[str, Array], /, **named: object) -> dict[str, Array]:
        values = self.values(named)
        by_position = self._tangents(values, tangents)
        return {self.names[i]: g for i, g in self.hessian_vector(values, by_position).items()}

    def jvp(self, tangents: Mapping[str, Array], /, **named: object) -> Array:
        values = self.values(named)
        return self.outputs(self.jacobian_vector(values, self._tangents(values, tangents)))

    def _tangents(self, values: list[object], tangents: Mapping[str, Array]) -> dict[int, Array]:
        moved = {}
        for i in self.floating(values):
            given = tangents.get(self.names[i])
            array = values[i]
            assert isinstance(array, np.ndarray)
            moved[i] = (
                np.zeros_like(array) if given is None else np.asarray(given, dtype=array.dtype)
            )
        return moved

    def differences_at_shifts(
        self,
        named: Named,
        wrt: str,
        flat_indices: NDArray[np.intp],
        shifts: Array,
        projections: Sequence[Sequence[Array]] | None,
    ) -> tuple[list[tuple[Array, Array]], int] | None:
        """forward at inputs[wrt] with entry flat_indices[b] moved by shifts[b, k], every b and
        k, in batches (numerics.models.BatchedModel): for each projection (a cotangent per
        output: f = <forward, v>; None: the scalar forward itself), the differences from the
        unmoved point, evaluated in the same batch, and |f| at its largest per entry; and how
        many points were evaluated. Each point is evaluated once for every projection: what
        one asks for, the others find remembered (`Remembered`). None where it cannot batch."""
        values = self.values(named)
        if wrt not in self.names or self.layout is None:
            return None
        position = self.names.index(wrt)
        base = values[position]
        if not isinstance(base, np.ndarray) or base.dtype.kind != "f":
            return None
        count = len(projections) if projections is not None else 1
        memory = self.remembered.at(values, projections)
        keys = [
            (position, int(i), row.tobytes()) for i, row in zip(flat_indices, shifts, strict=True)
        ]
        missing = [b for b, key in enumerate(keys) if key not in memory]
        evaluated = 0
        if missing:
            found = self._evaluate_points(
                values, position, flat_indices[missing], shifts[missing], projections
            )
            if found is None:
                return None
            for b, per_projection in zip(missing, found, strict=True):
                memory[keys[b]] = per_projection
            evaluated = (len(missing) * shifts.shape[1]) + 1
        results = []
        for p in range(count):
            moved = np.stack([memory[key][p][0] for key in keys])
            sizes = np.array([memory[key][p][1] for key in keys], dtype=np.float64)
            results.append((moved, sizes))
        return results, evaluated

    def _evaluate_points(
        self,
        values: list[object],
        position: int,
        flat_indices: NDArray[np.intp],
        shifts: Array,
        projections: Sequence[Sequence[Array]] | None,
    ) -> list[list[tuple[Array, float]]] | None:
        """One batch: the unmoved point, then every moved one; per entry, per projection, the
        differences from the unmoved point and the largest |f|."""
        assert self.layout is not None
        base = values[position]
        assert isinstance(base, np.ndarray)
        count, per_entry = shifts.shape
        rows = 1 + count * per_entry
        flat = base.reshape(-1)
        # x + shift rounded to the input's dtype, as one-at-a-time evaluation moves the entry.
        points = np.asarray(flat[flat_indices][:, None] + shifts).astype(base.dtype)
        stacked = np.repeat(flat[None, :], rows, axis=0)
        stacked[1 + np.arange(count * per_entry), np.repeat(flat_indices, per_entry)] = (
            points.ravel()
        )
        parts = self.batched(values, position, stacked.reshape(rows, *base.shape))
        if parts is None:
            return None
        if [tuple(p.shape) for p in parts] != [(rows, *s) for s in self.layout.shapes]:
            return None
        outputs = self.layout.join(parts, (rows,))
        if projections is None:
            if outputs.shape != (rows,):
                return None
            projected = [np.asarray(outputs, dtype=np.float64)]
        else:
            projected = []
            for vectors in projections:
                # <out, v> summed as the one-at-a-time contraction sums it, output by output:
                # several outputs are one joined array to the subject, with one joined v.
                total: Any = 0
                each = [outputs] if len(vectors) == 1 else self.layout.split_rows(outputs)
                for out, v in zip(each, vectors, strict=True):
                    total = total + np.sum((out * v).reshape(rows, -1), axis=-1)
                projected.append(np.asarray(total))
        found: list[list[tuple[Array, float]]] = [[] for _ in range(count)]
        for f in projected:
            with np.errstate(all="ignore"):
                moved = (f[1:] - f[0]).reshape(count, per_entry)
                sizes = np.fmax(
                    np.fmax.reduce(np.abs(f[1:]).reshape(count, per_entry), axis=1), abs(f[0])
                )
            for b in range(count):
                found[b].append((moved[b], float(sizes[b])))
        return found

    def example_inputs_from(self, function: Callable[[], object]) -> Callable[[], object]:
        """The file's example_inputs(), with tensors as numpy arrays and numbers as Params."""

        def example_inputs() -> object:
            result = self.call_example(function)
            if not isinstance(result, Mapping):
                return result  # subject/ says what example_inputs() must return
            return {key: self.convert_example(value) for key, value in result.items()}

        example_inputs.__name__ = getattr(function, "__name__", "example_inputs")
        return example_inputs

    def call_example(self, function: Callable[[], object]) -> object:
        """The user's example_inputs() (JAX runs it with 64-bit types enabled)."""
        return function()

    # --- the faces as functions with the user's parameter names --------------------------------

    def adapted(
        self,
        *,
        entry: str | None,
        device: str | None,
        name: str,
        formula: str,
        example_inputs: Callable[[], object] | None,
    ) -> Adapted:
        self.made = {
            "entry": entry,
            "device": device,
            "name": name,
            "formula": formula,
            "example_inputs": example_inputs,
        }
        keyword = [
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default)
            for p in self.parameters
        ]
        # backward's own signature is only read to say how it is called: every keyword has a
        # default there, so that backward(grad_output) binds for any forward.
        optional = [
            p.replace(default=p.default if p.default is not EMPTY else None) for p in keyword
        ]

        def leading(name: str, default: object = EMPTY) -> inspect.Parameter:
            return inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY, default=default)

        def forward(**named: object) -> Array:
            return self.forward(**named)

        def backward(grad_output: object = None, /, **named: object) -> dict[str, Array]:
            return self.backward(grad_output, **named)

        def hvp(tangents: Mapping[str, Array], /, **named: object) -> dict[str, Array]:
            return self.hvp(tangents, **named)

        def jvp(tangents: Mapping[str, Array], /, **named: object) -> Array:
            return self.jvp(tangents, **named)

        signatures = {
            forward: inspect.Signature(keyword),
            backward: inspect.Signature([leading("grad_output", None), *optional]),
            hvp: inspect.Signature([leading("tangents"), *keyword]),
            jvp: inspect.Signature([leading("tangents"), *keyword]),
        }
        for function, signature in signatures.items():
            function.__signature__ = signature  # type: ignore[attr-defined]
            function.__qualname__ = f"{self.label}.{function.__name__}"
        return Adapted(
            framework=self.framework,
            entry=entry,
            device=device,
            name=name,
            formula=formula,
            forward=forward,
            backward=backward,
            hvp=hvp,
            jvp=jvp,
            example_inputs=(
                None if example_inputs is None else self.example_inputs_from(example_inputs)
            ),
            differences_at_shifts=self.differences_at_shifts,
            in_precision=self.in_precision,
            precision=self.precision,
            effects=self.effect_probe(),
        )

    def in_precision(self, precision: str) -> Adapted:
        """The same function adapted with its floating tensors made in `precision`."""
        if precision == self.precision:
            return self.adapted(**self.made)
        return self.retyped(precision).adapted(**self.made)


def _shapes(shapes: Sequence[tuple[int, ...]]) -> str:
    return ", ".join(str(s) for s in shapes)


def signature_parameters(
    where: Where, function: object, label: str, *, skip: int = 0
) -> list[inspect.Parameter]:
    """The parameters a function is called with (after `skip` leading ones: a Function's ctx),
    refusing *args and **kwargs: gradcheck names every input."""
    try:
        signature = inspect.signature(function)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise where.error(function, f"cannot read the parameters of {label} ({error})") from None
    parameters = list(signature.parameters.values())[skip:]
    for parameter in parameters:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            star = "*" if parameter.kind is inspect.Parameter.VAR_POSITIONAL else "**"
            raise where.error(
                function,
                f"{label} takes {star}{parameter.name}; gradcheck names every input, so it "
                "checks functions whose parameters are all named",
            )
    return parameters
