"""A class bound to its parameters: the instance, and the model file of its methods.

`instantiate` makes the instance (`--param`s that __init__ names go to it, those the forward
or backward method names go to the call: a name both take goes to both), with numpy's global
random generator seeded (np.random.seed(0), its state put back after), so that a constructor's
random weights are the same in every worker process that builds the instance again.

What the class's kind (`classes`) makes of it:

- derivative, vjp, pair: the instance's methods, as the derivative, plain and layer
  conventions take module functions.
- layer (`forward(x)`, `backward(dout)`) and loss (`loss(X, y) -> (loss, grads)`): the
  instance's array attributes (`self.W`, `self.b`) and dicts of arrays (`self.params`) are
  inputs when backward reports their gradients: returned (in a tuple after the gradients of
  forward's arguments, in the order the attributes were set; or in a dict by name), or stored
  as attributes: `dW`, `d_W`, `grad_W`, `W_grad`, or a dict `grads`, `dparams`, `gradients`
  by `W` or `dW`. Which ones do is found by calling forward and backward once at the inputs.
  Before every forward call the attributes are set to the check's arrays; before every
  backward call the gradient attributes are zeroed (a backward that adds into `self.dW`
  starts from zero, as after zero_grad), and backward always follows a forward call on the
  same instance, whose cache it reads.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_cli.errors import InputError, UserCodeError
from gradcheck_cli.subject.arguments import Supplied, resolve_arguments
from gradcheck_cli.subject.calling import Caller, call_user_function
from gradcheck_cli.subject.classes import ClassPlan
from gradcheck_cli.subject.conventions import ModelFile
from gradcheck_cli.subject.groups import head_of, is_dict_of_arrays, member_name
from gradcheck_cli.subject.messages import describe, user_code_error
from gradcheck_cli.subject.pairs import reads_as_a_gradient

GRADIENT_DICTS = ("grads", "dparams", "gradients", "grad", "param_grads", "d_params")


def gradient_attributes(name: str) -> tuple[str, ...]:
    """The attribute names that may hold the gradient of the attribute `name`."""
    return (f"d{name}", f"d_{name}", f"grad_{name}", f"{name}_grad", f"grad{name}")


@dataclass(frozen=True)
class Instantiated:
    """A class's model file over its instance, the parameters left for the calls, and the
    instance's attributes that are inputs (as `resolve_arguments` takes a fallback)."""

    model_file: ModelFile
    params: dict[str, object]
    attributes: dict[str, Supplied]


def instantiate(
    model_file: ModelFile,
    supplied: Mapping[str, Supplied],
    params: Mapping[str, object],
    *,
    dtype: str,
    fallback: Mapping[str, Supplied] | None,
) -> Instantiated:
    """The instance of `model_file`'s class and its model file (see the module docstring)."""
    plan = model_file.of_class
    assert plan is not None
    constructor, anything = plan.constructor_parameters()
    forward_names = [p.name for p in plan.method_parameters(plan.forward)]
    backward_names = (
        [p.name for p in plan.method_parameters(plan.backward)]
        if plan.backward and plan.kind == "layer"
        else []
    )
    call = {k: v for k, v in params.items() if k in forward_names or k in backward_names}
    build = {k: v for k, v in params.items() if k in constructor or (anything and k not in call)}
    unknown = [k for k in params if k not in call and k not in build]
    if unknown:
        raise InputError(
            f"--param {unknown[0]}: neither {plan.name}() nor its {plan.forward} takes a "
            f"parameter of that name; {plan.name}() takes {', '.join(constructor) or 'none'}, "
            f"{plan.forward} takes {', '.join(forward_names) or 'none'}"
        )
    instance = _construct(plan, build)
    arguments = ", ".join(f"{k}={v!r}" for k, v in build.items())
    formula = f"{plan.name}({arguments}).{plan.forward}(...) from {plan.path.name}"
    base = dataclasses.replace(model_file, of_class=None, backward=None, formula=formula)
    forward = getattr(instance, plan.forward)
    if plan.kind in ("derivative", "vjp", "pair"):
        assert plan.backward is not None
        convention = {"derivative": "derivative", "vjp": "plain", "pair": "layer"}[plan.kind]
        concrete = dataclasses.replace(
            base,
            forward=forward,
            backward=getattr(instance, plan.backward),
            convention=convention,
        )
        return Instantiated(concrete, call, {})
    method_file = dataclasses.replace(base, forward=forward, convention="plain")
    method_supplied = {k: v for k, v in supplied.items() if head_of(k) in forward_names}
    forward_params = {k: v for k, v in call.items() if k in forward_names}
    inputs, _, passed = resolve_arguments(
        method_file, method_supplied, forward_params, dtype=dtype, fallback=fallback
    )
    layer = _Layer(plan, instance, list(inputs), forward_names, call)
    found = layer.probe(method_file, inputs, passed)
    attributes: dict[str, Supplied] = {}
    for name in found:
        value = layer.candidates[name]
        if isinstance(value, Mapping):
            for key, array in value.items():
                source = f"{plan.name}().{name}[{key!r}]"
                attributes[member_name(name, key)] = Supplied(np.asarray(array), source)
        else:
            attributes[name] = Supplied(np.asarray(value), f"{plan.name}().{name}")
    layer.inputs = tuple(found)
    concrete = dataclasses.replace(
        base,
        forward=layer.forward_function(),
        backward=layer.backward_function() if plan.kind == "layer" else None,
        convention="layer" if plan.kind == "layer" else "loss",
    )
    return Instantiated(concrete, call, attributes)


def _construct(plan: ClassPlan, build: Mapping[str, object]) -> object:
    try:
        signature = inspect.signature(plan.cls)
        required = [
            p.name
            for p in signature.parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in build
        ]
    except (TypeError, ValueError):
        required = []
    if required:
        raise InputError(
            f"{plan.label}: {plan.name}() needs {', '.join(required)}: give "
            f"{'it' if len(required) == 1 else 'each'} with --param {required[0]}=JSON"
        )
    # The legacy global generator is what constructors draw from (np.random.randn): seeded, so
    # that every process that builds the instance gets the same random weights.
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002
    try:
        return plan.cls(**build)
    except (Exception, SystemExit) as error:
        raise user_code_error(plan.path, f"{plan.name}()", error) from error
    finally:
        np.random.set_state(state)  # noqa: NPY002


class _Layer:
    """A layer object's forward and backward over its inputs and its array attributes."""

    def __init__(
        self,
        plan: ClassPlan,
        instance: object,
        method_inputs: Sequence[str],
        forward_names: Sequence[str],
        call: Mapping[str, object],
    ) -> None:
        self.plan = plan
        self.instance = instance
        self.method_inputs = list(method_inputs)
        self.forward_names = list(forward_names)
        self.backward_params = {k: v for k, v in call.items() if k not in forward_names}
        self.candidates = _candidates(instance, set(forward_names))
        self.inputs: tuple[str, ...] = ()
        self.outputs = 1

    def probe(
        self, method_file: ModelFile, inputs: Mapping[str, Any], passed: Mapping[str, object]
    ) -> list[str]:
        """Forward and backward once at `inputs`: the attributes backward gives a gradient for."""
        caller = Caller(method_file, list(inputs), passed)
        caller.copying = True  # the probe's calls get copies: nothing of ours is written
        args, kwargs = caller.arguments(inputs)
        result = caller.call("forward", method_file.forward, args, kwargs)
        if self.plan.kind == "loss":
            if not isinstance(result, (tuple, list)) or len(result) < 2:
                raise UserCodeError(
                    f"{self.plan.label}: {self.plan.forward} must return (loss, gradients); got "
                    f"{describe(result)}"
                )
            gradients = self._collect(result[1], self.instance)
            return [c for c in self.candidates if c in gradients]
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        self.outputs = len(outputs)
        rng = np.random.default_rng(0)
        douts = [rng.standard_normal(np.shape(np.asarray(o))) for o in outputs]
        backward = getattr(self.instance, self.plan.backward or "")
        returned = call_user_function(
            method_file, "backward", backward, douts, dict(self.backward_params)
        )
        gradients = self._collect(returned, self.instance)
        return [c for c in self.candidates if c in gradients]

    def _collect(self, returned: object, instance: object) -> dict[str, object]:
        """The attributes' gradients: returned by backward, or stored on the instance."""
        found: dict[str, object] = {}
        candidates = self.candidates
        if isinstance(returned, Mapping):
            for name, value in candidates.items():
                key = next((k for k in (name, *gradient_attributes(name)) if k in returned), None)
                if key is not None:
                    found[name] = returned[key]
                elif isinstance(value, Mapping):
                    members = _by_key(returned, value)
                    if members:
                        found[name] = members
        elif isinstance(returned, (tuple, list)) and len(returned) > len(self.method_inputs):
            arrays = [n for n, v in candidates.items() if isinstance(v, np.ndarray)]
            for part in returned[len(self.method_inputs) :]:
                shape = np.shape(part) if part is not None else None
                match = next((n for n in arrays if _fits(shape, candidates[n])), None)
                if match is not None:
                    found[match] = part
                    arrays.remove(match)
        for name, value in candidates.items():
            if name in found:
                continue
            if isinstance(value, Mapping):
                for holder in GRADIENT_DICTS:
                    grads = getattr(instance, holder, None)
                    if isinstance(grads, Mapping) and _by_key(grads, value):
                        found[name] = _by_key(grads, value)
                        break
                continue
            for attribute in gradient_attributes(name):
                stored = getattr(instance, attribute, None)
                if isinstance(stored, np.ndarray):
                    found[name] = stored
                    break
            else:
                for holder in GRADIENT_DICTS:
                    grads = getattr(instance, holder, None)
                    if isinstance(grads, Mapping):
                        key = next((k for k in (name, f"d{name}") if k in grads), None)
                        if key is not None:
                            found[name] = grads[key]
                            break
        return found

    def _zero_gradients(self, instance: object) -> None:
        """Zero what backward may add into: gradient attributes and dicts of the inputs."""
        for name in self.inputs:
            for attribute in gradient_attributes(name):
                stored = getattr(instance, attribute, None)
                if isinstance(stored, np.ndarray):
                    setattr(instance, attribute, np.zeros_like(stored))
        for holder in GRADIENT_DICTS:
            grads = getattr(instance, holder, None)
            if isinstance(grads, dict):
                setattr(
                    instance,
                    holder,
                    {
                        k: np.zeros_like(v) if isinstance(v, np.ndarray) else v
                        for k, v in grads.items()
                    },
                )

    def _set_attributes(self, values: Mapping[str, object]) -> None:
        for name in self.inputs:
            value = values[name]
            target = getattr(self.instance, name, None)
            if isinstance(value, Mapping) and isinstance(target, dict):
                target.update(value)
            else:
                setattr(self.instance, name, value)

    def forward_function(self) -> Callable[..., object]:
        """forward(<forward's parameters>, *, <attribute inputs>): sets the attributes, calls
        the method; returns (outputs..., the instance) for a layer, (loss, grads) for a loss."""
        method = getattr(self.instance, self.plan.forward)
        inputs = self.inputs
        loss = self.plan.kind == "loss"
        instance = self.instance

        def forward(*args: object, **kwargs: object) -> object:
            self._set_attributes({n: kwargs.pop(n) for n in inputs})
            result = method(*args, **kwargs)
            if loss:
                return result
            if isinstance(result, tuple):
                return (*result, instance)
            return result, instance

        parameters = self.plan.method_parameters(self.plan.forward)
        attributes = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in inputs]
        kept = [p for p in parameters if p.kind != p.KEYWORD_ONLY]
        keyword = [p for p in parameters if p.kind == p.KEYWORD_ONLY]
        forward.__signature__ = inspect.Signature([*kept, *keyword, *attributes])  # type: ignore[attr-defined]
        forward.__name__ = self.plan.forward
        return forward

    def backward_function(self) -> Callable[..., object]:
        """backward(dout..., cache): the instance's backward, called on the instance forward
        returned, its result and the attributes' gradients as one dict by input name."""
        method_name = self.plan.backward or ""
        params = dict(self.backward_params)
        outputs = self.outputs

        def backward(*args: object) -> object:
            *douts, instance = args
            self._zero_gradients(instance)
            returned = getattr(instance, method_name)(*douts, **params)
            gradients: dict[str, object] = {}
            floating = self.method_inputs
            if isinstance(returned, Mapping):
                gradients.update(
                    {n: returned[k] for n in floating for k in (n, f"d{n}") if k in returned}
                )
            elif isinstance(returned, (tuple, list)):
                gradients.update(zip(floating, returned, strict=False))
            elif returned is not None and len(floating) == 1:
                gradients[floating[0]] = returned
            attributes = self._collect(returned, instance)
            gradients.update({n: attributes.get(n) for n in self.inputs})
            return gradients

        names = ["dout"] if outputs == 1 else [f"dout{i + 1}" for i in range(outputs)]
        # The method's own names for its douts (`dvalues`), as messages say them, where they
        # read as gradients and cannot be taken for forward's values or the cache.
        own = [
            p.name
            for p in self.plan.method_parameters(method_name)
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in params
        ][:outputs]
        taken = set(self.forward_names) | set(self.inputs)
        fits = all(reads_as_a_gradient(n) and n not in taken and "cache" not in n for n in own)
        if len(own) == outputs and fits:
            names = own
        backward.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in [*names, "cache"]]
        )
        backward.__name__ = method_name
        # What forward saved lives on the instance, which the side-effect checks call `self`.
        backward.gradcheck_cache_name = "self"  # type: ignore[attr-defined]
        return backward


def _candidates(instance: object, exclude: set[str]) -> dict[str, object]:
    """The instance's floating arrays and dicts of arrays, but gradients of other ones."""
    try:
        attributes = dict(vars(instance))
    except TypeError:  # __slots__
        return {}
    found: dict[str, object] = {}
    for name, value in attributes.items():
        if name in exclude or name.startswith("__"):
            continue
        if _floating_array(value) or _floating_dict(value):
            found[name] = value
    gradients = {g for name in found for g in gradient_attributes(name)} | set(GRADIENT_DICTS)
    return {n: v for n, v in found.items() if n not in gradients}


def _floating_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size > 0


def _floating_dict(value: object) -> bool:
    if not is_dict_of_arrays(value):
        return False
    assert isinstance(value, Mapping)
    return any(np.asarray(v).dtype.kind == "f" for v in value.values())


def _by_key(grads: Mapping[Any, object], members: Mapping[Any, object]) -> dict[str, object]:
    found: dict[str, object] = {}
    for key in members:
        match = next((k for k in (key, f"d{key}") if k in grads), None)
        if match is not None:
            found[str(key)] = grads[match]
    return found


def _fits(shape: tuple[int, ...] | None, value: object) -> bool:
    if shape is None:
        return False
    own = np.shape(np.asarray(value))
    return tuple(s for s in shape if s != 1) == tuple(s for s in own if s != 1)
