"""JAX functions (with `jax.custom_vjp` or `jax.custom_jvp` rules, or none) as the plain
convention's numpy functions.

- 64-bit types are enabled while gradcheck calls into JAX and restored after each call (JAX
  would otherwise compute float64 inputs in float32): example_inputs() runs with them too.
- forward is `jax.jit` of the function (eagerly where it cannot be traced); floating numpy
  arrays become JAX arrays on the chosen device, integer and boolean ones too (constants, never
  differentiated); anything else, and the arguments of `nondiff_argnums`, is held fixed.
- The analytic side is `jax.vjp` (for a custom_vjp function, the user's bwd rule; for a
  custom_jvp one, the transpose of the user's jvp rule); `--order 2` is the vjp of that
  gradient again; `--mode jvp` is `jax.jvp` (a custom_vjp function has no forward mode: refused).
  JAX's own complaints about a rule's output (count, structure, shapes) are said in one line
  naming the rule's file and line.
- Batched evaluation: `jax.jit(jax.vmap(...))` over moved copies of one input, the batch padded
  to a power of two so that a check compiles it a few times at most; where vmap or jit fails,
  the adapter stops trying and the points go one at a time.

jax is imported only here, and this module only once the user's file imported jax.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np

from gradcheck_cli.errors import InputError
from gradcheck_cli.frameworks.adapted import (
    Adapted,
    Adapter,
    Array,
    Param,
    Where,
    describe,
    one_line,
    signature_parameters,
)
from gradcheck_cli.frameworks.effects import Backwarded, EffectProbe, Forwarded, per_output

SMALLEST_BATCH = 16


def _jax() -> Any:
    return sys.modules["jax"]


@contextlib.contextmanager
def x64() -> Iterator[None]:
    """JAX with 64-bit types for the duration of one call, restored afterwards."""
    jax = _jax()
    state = getattr(jax, "enable_x64", None)
    if state is not None:
        with state(True):
            yield
        return
    before = bool(jax.config.read("jax_enable_x64"))
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def resolve_device(spec: str | None) -> Any:
    """The jax device for --device (cpu by default), or InputError when there is none."""
    jax = _jax()
    platform, _, number = (spec or "cpu").partition(":")
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        raise InputError(
            f"--device {spec}: no JAX {platform} device here (JAX {jax.__version__} has "
            f"{', '.join(sorted({d.platform for d in jax.devices()}))}); leave --device out to "
            "run on the CPU"
        ) from None
    index = int(number) if number.isdigit() else 0
    if index >= len(devices):
        raise InputError(
            f"--device {spec}: this machine has {len(devices)} JAX {platform} device(s)"
        )
    return devices[index]


class JaxAdapter(Adapter):
    """A JAX callable as the plain convention's numpy functions (see the module docstring)."""

    framework = "jax"

    def __init__(
        self,
        *,
        where: Where,
        label: str,
        parameters: list[inspect.Parameter],
        function: Callable[..., object],
        rule: object | None,
        rule_name: str,
        fixed: Sequence[int],
        device: Any,
        forward_mode: bool,
    ) -> None:
        super().__init__(where=where, label=label, parameters=parameters, defined_at=function)
        self.function = function
        self.rule = rule
        """The user's bwd (custom_vjp) or jvp (custom_jvp) rule, which messages name."""
        self.rule_name = rule_name
        self.fixed = set(fixed)
        self.device = device
        self.forward_mode = forward_mode
        self.compiled: dict[object, Callable[..., Any]] = {}
        self.jit = True
        self.batch = True

    def differentiable(self, position: int) -> bool:
        return position not in self.fixed

    def effect_probe(self) -> EffectProbe:
        return JaxProbe(self)

    # --- values ----------------------------------------------------------------------------------

    def split(self, values: list[object]) -> tuple[list[int], Callable[..., Any]]:
        """The positions of the arrays, and the function of those arrays alone (every other
        argument held as it is)."""
        arrays = [i for i, v in enumerate(values) if isinstance(v, np.ndarray)]

        def of_arrays(*given: object) -> Any:
            merged = list(values)
            for i, value in zip(arrays, given, strict=True):
                merged[i] = value
            return self.function(*merged)

        return arrays, of_arrays

    def put(self, array: object) -> Any:
        """A JAX array on the device: floating ones in the adapter's precision (bfloat16, from
        float64 arrays holding bfloat16 numbers: exact), else their own."""
        jax = _jax()
        value = np.asarray(array)
        if self.precision == "bfloat16" and value.dtype.kind == "f":
            return jax.device_put(jax.numpy.asarray(value, dtype=jax.numpy.bfloat16), self.device)
        return jax.device_put(value, self.device)

    def as_numpy(self, array: object) -> Array:
        """A JAX array as numpy; bfloat16 (which numpy has not) as float64, which holds it."""
        value = np.asarray(array)
        return value.astype(np.float64) if value.dtype.name == "bfloat16" else value

    def retyped(self, precision: str) -> Adapter:
        other = super().retyped(precision)
        assert isinstance(other, JaxAdapter)
        other.compiled = {}
        return other

    def floating_outputs(self, result: object) -> list[Any]:
        jax = _jax()
        parts: list[Any] = list(result) if isinstance(result, (tuple, list)) else [result]
        for part in parts:
            if not isinstance(part, jax.Array):
                shown = describe(result) if part is result else f"{describe(part)} among them"
                raise self.where.error(
                    self.defined_at,
                    f"{self.label} returned {shown}; it must return a JAX array (or a tuple of "
                    "arrays)",
                )
        floating = [p for p in parts if jax.numpy.issubdtype(p.dtype, jax.numpy.floating)]
        if not floating:
            raise self.where.error(
                self.defined_at,
                f"{self.label} returned no floating-point array: nothing to differentiate",
            )
        return floating

    def static_key(self, values: list[object], arrays: list[int]) -> tuple[object, ...]:
        return tuple((i, id(v)) for i, v in enumerate(values) if i not in arrays)

    # --- the framework's part --------------------------------------------------------------------

    def compiled_call(
        self, key: tuple[object, ...], function: Callable[..., Any], *args: Any
    ) -> Any:
        """function(*args) through jax.jit, compiled once per key (and JAX's own shapes); where
        it cannot be traced (control flow on values), eagerly from then on. A function that
        raises eagerly too raises that error, with the user's own line in it."""
        jax = _jax()
        if self.jit:
            compiled = self.compiled.get(key) or jax.jit(function)
            try:
                result = compiled(*args)
            except Exception:
                result = function(*args)  # the user's error raises here, as written
                self.jit = False
                return result
            self.compiled[key] = compiled
            return result
        return function(*args)

    def evaluate(self, values: list[object]) -> list[Array]:
        arrays, of_arrays = self.split(values)
        with x64():
            given = [self.put(values[i]) for i in arrays]
            outputs = self.compiled_call(
                ("forward", *self.static_key(values, arrays)),
                lambda *a: tuple(self.floating_outputs(of_arrays(*a))),
                *given,
            )
            return [self.as_numpy(o) for o in outputs]

    def _differentiable(
        self, values: list[object]
    ) -> tuple[list[int], Callable[..., tuple[Any, ...]], list[Any]]:
        """The positions differentiated, the function of those values, and their values."""
        positions = self.floating(values)

        def moved(*floats: object) -> tuple[Any, ...]:
            merged: list[object] = [self.put(v) if isinstance(v, np.ndarray) else v for v in values]
            for i, value in zip(positions, floats, strict=True):
                merged[i] = value
            return tuple(self.floating_outputs(self.function(*merged)))

        return positions, moved, [self.put(values[i]) for i in positions]

    def _rule_problem(self, error: Exception) -> Exception:
        """JAX's complaint about what a custom rule returned, as one line naming the rule."""
        message = one_line(str(error))
        if "Custom VJP bwd rule" not in message and "Custom JVP rule" not in message:
            return error
        names = ", ".join(self.names)
        if "tuple of length equal to the number of arguments" in message:
            said = f"must return a tuple of one cotangent per argument of {self.label} ({names})"
        elif "the shapes do not match" in message:
            said = f"returned a cotangent of another shape than its argument's ({names})"
        else:
            said = f"returned what JAX cannot use (JAX says: {message})"
        return self.where.error(self.rule, f"{self.label}'s {self.rule_name} {said}")

    def vjp(self, values: list[object], cotangents: list[Array] | None) -> dict[int, Array]:
        jax = _jax()
        arrays, of_arrays = self.split(values)
        positions = self.floating(values)
        inside = [arrays.index(i) for i in positions]

        def pulled(given: tuple[Any, ...], seeds: tuple[Any, ...] | None) -> tuple[Any, ...]:
            def moved(*floats: object) -> tuple[Any, ...]:
                merged = list(given)
                for k, value in zip(inside, floats, strict=True):
                    merged[k] = value
                return tuple(self.floating_outputs(of_arrays(*merged)))

            outputs, pullback = jax.vjp(moved, *[given[k] for k in inside])
            if seeds is None:
                if len(outputs) != 1 or outputs[0].size != 1:
                    shapes = ", ".join(str(tuple(o.shape)) for o in outputs)
                    raise self.where.error(
                        self.defined_at, f"{self.label} returned shape {shapes}; expected a scalar"
                    )
                seeds = (jax.numpy.ones_like(outputs[0]),)
            typed = tuple(
                jax.numpy.asarray(c, dtype=o.dtype) for c, o in zip(seeds, outputs, strict=True)
            )
            return tuple(pullback(typed))

        with x64():
            given = tuple(self.put(values[i]) for i in arrays)
            seeds = None if cotangents is None else tuple(self.put(c) for c in cotangents)
            key = ("vjp", seeds is None, *self.static_key(values, arrays))
            try:
                grads = self.compiled_call(key, pulled, given, seeds)
            except (TypeError, ValueError) as error:
                raise self._rule_problem(error) from error
            return {
                i: self.as_numpy(g).astype(np.asarray(values[i]).dtype)
                for i, g in zip(positions, grads, strict=True)
            }

    def hessian_vector(self, values: list[object], tangents: dict[int, Array]) -> dict[int, Array]:
        jax = _jax()
        with x64():
            positions, moved, primals = self._differentiable(values)

            def gradient(*floats: object) -> tuple[Any, ...]:
                outputs, pullback = jax.vjp(moved, *floats)
                if len(outputs) != 1 or outputs[0].size != 1:
                    raise self.where.error(
                        self.defined_at,
                        f"--order 2 checks the Hessian of a scalar; {self.label} returns an array",
                    )
                return tuple(pullback((jax.numpy.ones_like(outputs[0]),)))

            try:
                _, pullback = jax.vjp(gradient, *primals)
                second = pullback(tuple(self.put(tangents[i]) for i in positions))
            except (TypeError, ValueError) as error:
                raise self._rule_problem(error) from error
            return {i: self.as_numpy(h) for i, h in zip(positions, second, strict=True)}

    def jacobian_vector(self, values: list[object], tangents: dict[int, Array]) -> list[Array]:
        jax = _jax()
        if not self.forward_mode:
            raise self.where.error(
                self.defined_at,
                f"--mode jvp needs a forward-mode rule, and {self.label} has none: JAX cannot "
                "apply forward mode to a jax.custom_vjp function (jax.custom_jvp gives one)",
            )
        with x64():
            positions, moved, primals = self._differentiable(values)
            directions = tuple(self.put(tangents[i]) for i in positions)
            try:
                _, tangent_out = jax.jvp(moved, tuple(primals), directions)
            except (TypeError, ValueError) as error:
                raise self._rule_problem(error) from error
            return [self.as_numpy(t) for t in tangent_out]

    def batched(self, values: list[object], position: int, stacked: Array) -> list[Array] | None:
        jax = _jax()
        if not self.batch:
            return None
        arrays, of_arrays = self.split(values)
        rows = stacked.shape[0]
        padded = max(SMALLEST_BATCH, 1 << (rows - 1).bit_length())
        if padded > rows:
            filler = np.repeat(stacked[-1:], padded - rows, axis=0)
            stacked = np.concatenate([stacked, filler])
        axes = tuple(0 if i == position else None for i in arrays)
        key = ("batch", position, padded, *self.static_key(values, arrays))
        try:
            with x64():
                compiled = self.compiled.get(key)
                if compiled is None:
                    compiled = jax.jit(
                        jax.vmap(
                            lambda *a: tuple(self.floating_outputs(of_arrays(*a))), in_axes=axes
                        )
                    )
                given = [self.put(stacked if i == position else values[i]) for i in arrays]
                outputs = compiled(*given)
                self.compiled[key] = compiled
                return [self.as_numpy(o)[:rows] for o in outputs]
        except Exception:  # not batchable: control flow on values, a callback, ...
            self.batch = False
            return None

    def call_example(self, function: Callable[[], object]) -> object:
        with x64():
            return function()

    def convert_example(self, value: object) -> object:
        jax = _jax()
        if isinstance(value, jax.Array):
            return self.as_numpy(value)
        if isinstance(value, (bool, int, float, np.generic)):
            return Param(value)
        return value


class JaxProbe(EffectProbe):
    """The side-effect checks' view of a JAX function (frameworks.effects): JAX arrays cannot
    be written into, and jnp.empty is zeros, so re-entrancy alone applies: the user's bwd rule
    called twice on the residuals of one jax.vjp (a custom_jvp's rule: jax.vjp again, which
    runs it), eagerly (under jax.jit the rule's Python runs once, when traced)."""

    kinds = frozenset({"not-reentrant"})

    def __init__(self, adapter: JaxAdapter) -> None:
        self.adapter = adapter
        self.forward_role = adapter.label
        rule = adapter.rule if adapter.rule_name != "rule" else None
        self.role = None if rule is None else str(getattr(rule, "__name__", adapter.rule_name))
        try:
            names = list(inspect.signature(rule).parameters) if callable(rule) else []
        except (TypeError, ValueError):
            names = []
        self.given = (names[1:2], names[:1]) if adapter.rule_name == "bwd rule" else ([], names)

    def forward(self, named: Mapping[str, object], *, filled: bool) -> Forwarded:
        jax = _jax()
        values = self.adapter.values(named)
        with x64():
            positions, moved, primals = self.adapter._differentiable(values)
            outputs, pullback = jax.vjp(moved, *primals)
            found = [self.adapter.as_numpy(o) for o in outputs]
        douts, cache = self.given
        graph = (values, positions, pullback, outputs)
        return Forwarded(found, [], graph, self.role, tuple(douts), tuple(cache))

    def backward(
        self, graph: object, cotangents: Sequence[Array] | None, *, filled: bool
    ) -> Backwarded:
        jax = _jax()
        values, positions, pullback, outputs = cast(tuple[list[object], list[int], Any, Any], graph)
        with x64():
            if self.adapter.rule_name == "jvp rule":  # the rule runs in jax.vjp itself
                _, moved, primals = self.adapter._differentiable(values)
                _, pullback = jax.vjp(moved, *primals)
            if cotangents is None:
                seeds = (jax.numpy.ones_like(outputs[0]),)
            else:
                seeds = tuple(
                    jax.numpy.asarray(c, dtype=o.dtype)
                    for c, o in zip(per_output(cotangents, outputs), outputs, strict=True)
                )
            try:
                grads = pullback(seeds)
            except (TypeError, ValueError) as error:
                raise self.adapter._rule_problem(error) from error
            return Backwarded(
                {
                    self.adapter.names[i]: self.adapter.as_numpy(g)
                    for i, g in zip(positions, grads, strict=True)
                }
            )


def adapt_jax(
    value: object,
    *,
    where: Where,
    entry: str | None,
    example_inputs: Callable[[], object] | None,
    device_spec: str | None,
) -> Adapted:
    """The adapter for a JAX function of a model file (see the module docstring)."""
    jax = _jax()
    device = resolve_device(device_spec)
    label = str(getattr(value, "__name__", None) or type(value).__name__)
    rule: object | None = None
    rule_name = "rule"
    forward_mode = True
    kind = "a JAX function"
    if isinstance(value, jax.custom_vjp):
        rule, rule_name, forward_mode = getattr(value, "bwd", None), "bwd rule", False
        kind = "a jax.custom_vjp function"
    elif isinstance(value, jax.custom_jvp):
        rule, rule_name = getattr(value, "jvp", None), "jvp rule"
        kind = "a jax.custom_jvp function"
    target = getattr(value, "fun", value)
    parameters = signature_parameters(where, value, label)
    adapter = JaxAdapter(
        where=where,
        label=label,
        parameters=parameters,
        function=value,  # type: ignore[arg-type]
        rule=rule if rule is not None else target,
        rule_name=rule_name,
        fixed=tuple(getattr(value, "nondiff_argnums", ()) or ()),
        device=device,
        forward_mode=forward_mode,
    )
    adapter.defined_at = target
    arguments = ", ".join(adapter.names)
    formula = (
        f"{label}({arguments}) from {where.path.name} ({kind}; JAX {jax.__version__}, "
        f"{device.platform}, 64-bit)"
    )
    return adapter.adapted(
        entry=entry,
        device=device_spec,
        name=entry or label,
        formula=formula,
        example_inputs=example_inputs,
    )
