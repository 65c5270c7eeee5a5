"""PyTorch's side-effect checks at the adapter's edge (`frameworks.effects`, issue 23).

autograd, not gradcheck, hands a Function's backward its `grad_output` and its saved tensors,
so no copy can stand between them: the tensors themselves are watched. Every in-place operation
moves a tensor's version counter (`x._version`); a write that bypasses it (through `.data`, or
a numpy view) still changes its values. So each watched tensor is recorded with its version
and a copy of its values before the call, and compared after it:

- forward's inputs: fresh leaf tensors (copies of the check's arrays) handed to the call, as
  forward's parameters name them (`x`);
- what each backward of the user's in the recorded graph is given (a node of a
  `torch.autograd.Function`, a custom operator's registered backward): a pre-hook on the node
  records its `grad_outputs` (named as its backward's parameters: `grad_out`), its
  `ctx.saved_tensors[i]` and the tensors among its `ctx` attributes (`ctx.mask`); a hook after
  the node compares them. A saved tensor that is forward's input or output says so.

Uninitialised memory: every call runs with `torch.use_deterministic_algorithms(True,
warn_only=True)`, so the same kernels run either way, and what torch hands out uninitialised
filled one of two ways, so that no result depends on what a previous call left there: `filled`,
with NaN (the largest integer) by `torch.utils.deterministic.fill_uninitialized_memory`, which
reaches every allocation (torch.empty, empty_like, new_empty, resize_, a kernel's output); else
with zeros, by torch.empty, empty_like, empty_strided and Tensor.new_empty themselves (also
where the user's modules imported them by name), for the time of the call. Every global
setting and name is restored after the call.

torch is imported only by the user's file: nothing here imports it.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck_cli.frameworks.effects import (
    EVERY_KIND,
    INPUT_HELD,
    OUTPUT_HELD,
    Array,
    Backwarded,
    Dialect,
    EffectProbe,
    Forwarded,
    Write,
    per_output,
)
from gradcheck_cli.frameworks.torch_common import quiet, torch_module

NODES = 10_000
"""How many nodes of a recorded graph are searched for the user's backwards."""

DEPTH = 3
"""How deep into a ctx attribute (tuples in dicts) its tensors are looked for."""


def _deterministic() -> Any:
    """torch.utils.deterministic, where this PyTorch has it (2.1 and later)."""
    utils = getattr(torch_module(), "utils", None)
    module = getattr(utils, "deterministic", None)
    return module if hasattr(module, "fill_uninitialized_memory") else None


EMPTIES = ("empty", "empty_like", "empty_strided")
"""torch's functions that hand out uninitialised memory to Python code (and Tensor.new_empty)."""


@contextlib.contextmanager
def memory(filled: bool, namespaces: Sequence[dict[str, Any]] = ()) -> Iterator[None]:
    """Deterministic algorithms on (warnings only), uninitialised memory filled with NaN
    (`filled`) or with zeros (module docstring), PyTorch's own warnings quiet; every setting
    and name as it was afterwards. `namespaces`: the user's modules' globals."""
    torch = torch_module()
    switch = _deterministic()
    if switch is None:
        with quiet():
            yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        switch.fill_uninitialized_memory,
    )
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        switch.fill_uninitialized_memory = filled
        with quiet(), contextlib.ExitStack() as stack:
            warnings.filterwarnings("ignore", message=r".*deterministic", category=UserWarning)
            if not filled:
                stack.enter_context(_zeroed(torch, namespaces))
            yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        switch.fill_uninitialized_memory = before[2]


def user_namespaces(*functions: object) -> list[dict[str, Any]]:
    """The globals of the user's functions (a staticmethod's too), where `from torch import
    empty` puts a name of torch.empty."""
    found = (getattr(getattr(f, "__func__", f), "__globals__", None) for f in functions)
    return [n for n in found if isinstance(n, dict)]


def zeroed_empties(namespaces: Sequence[dict[str, Any]]) -> contextlib.AbstractContextManager[None]:
    """While it lasts, torch.empty and its kin (and the user's names for them) hand out zeros:
    the check's own backward calls then never read what an earlier call left (the NaN of a
    filled probe call among it), whatever the code reads before it writes."""
    return _zeroed(torch_module(), namespaces)


@contextlib.contextmanager
def _zeroed(torch: Any, namespaces: Sequence[dict[str, Any]]) -> Iterator[None]:
    """torch.empty and its kin (and the user's names for them) hand out zeros while it lasts."""
    originals: dict[str, Any] = {name: getattr(torch, name) for name in EMPTIES}

    def zeroing(function: Any) -> Any:
        def zeroed(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs).zero_()

        return zeroed

    replaced: list[tuple[Any, str, object, bool]] = []
    """(where, name, what it was, whether it was the holder's own attribute)."""
    for name, function in originals.items():
        replaced.append((torch, name, function, True))
    own = "new_empty" in vars(torch.Tensor)
    replaced.append((torch.Tensor, "new_empty", torch.Tensor.new_empty, own))
    seen = [vars(torch)]
    for namespace in namespaces:
        if any(namespace is n for n in seen):
            continue
        seen.append(namespace)
        for name, value in list(namespace.items()):
            if any(value is o for o in originals.values()):
                replaced.append((namespace, name, value, True))
    try:
        for holder, name, value, _ in replaced:
            if isinstance(holder, dict):
                holder[name] = zeroing(value)
            else:
                setattr(holder, name, zeroing(value))
        yield
    finally:
        for holder, name, value, had in reversed(replaced):
            if isinstance(holder, dict):
                holder[name] = value
            elif had:
                setattr(holder, name, value)
            else:
                delattr(holder, name)


class _Watched:
    """A tensor, its version and a copy of its values before a call."""

    def __init__(self, name: str, tensor: Any, holds: str = "") -> None:
        self.name = name
        self.tensor = tensor
        self.holds = holds
        self.version = tensor._version
        self.before = tensor.detach().clone()

    def written(self, numpy: Any) -> Write | None:
        """What the call wrote, or None: its version moved, or its values changed."""
        now = self.tensor.detach()
        moved = self.tensor._version != self.version
        if not moved:
            if now.shape != self.before.shape:
                moved = True
            else:
                same = (now == self.before) | (now.isnan() & self.before.isnan())
                moved = not bool(same.all())
        if not moved:
            return None
        return Write(self.name, numpy(self.before), numpy(now), self.holds)


def _tensors_in(value: object, where: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    torch = torch_module()
    if isinstance(value, torch.Tensor):
        yield where, value
    elif depth < DEPTH and isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _tensors_in(item, f"{where}[{i}]", depth + 1)
    elif depth < DEPTH and isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors_in(item, f"{where}[{key!r}]", depth + 1)


@dataclass
class _Node:
    """One backward of the user's in a recorded graph: how it is named, and what it is given."""

    node: Any
    role: str
    douts: list[str]
    """Its backward's names for the gradients it is given (after ctx); `grads` for *grads."""
    star: bool
    watched: list[_Watched] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)
    """id of a watched entry -> dout or cache."""

    def dout_name(self, index: int) -> str:
        if self.star or not self.douts:
            return f"{self.douts[0] if self.douts else 'grad_outputs'}[{index}]"
        return self.douts[index] if index < len(self.douts) else f"grad_outputs[{index}]"


@dataclass
class _Graph:
    """One forward call recorded for backward."""

    leaves: list[Any]
    names: list[str]
    values: list[object]
    outputs: list[Any]
    nodes: list[_Node]


class TorchProbe(EffectProbe):
    """The side-effect checks' view of a PyTorch function (module docstring)."""

    dialect = Dialect(
        memory="the memory torch hands out uninitialised",
        filled=(
            "filled with NaN (torch.utils.deterministic.fill_uninitialized_memory) rather than "
            "with zeros"
        ),
        either="filled with NaN or with zeros",
        reader="an entry of torch.empty (or empty_like, new_empty)",
        copy=".clone()",
        array="tensor",
        whole=True,
    )

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.forward_role = str(adapter.forward_role)
        self.described: dict[object, tuple[str, tuple[str, ...], bool]] = {}
        self.namespaces = adapter.namespaces
        if _deterministic() is None:  # no way to fill what torch.empty hands out
            self.kinds = EVERY_KIND - {"uninitialised-memory"}

    def forward(self, named: Mapping[str, object], *, filled: bool) -> Forwarded:
        """Recorded for backward and watched (not `filled`), or its outputs alone (`filled`:
        nothing is recorded, the outputs are what the check compares)."""
        torch = torch_module()
        adapter = self.adapter
        values = adapter.values(named)
        if filled:
            arguments = [
                a.clone() if isinstance(a, torch.Tensor) else a for a in adapter.tensors(values)
            ]
            with memory(filled, self.namespaces), torch.no_grad():
                outputs = adapter.floating_outputs(adapter.call(*arguments))
            return Forwarded([adapter.numpy(o) for o in outputs], [], None)
        positions = adapter.floating(values)
        arguments = adapter.tensors(values, grad=positions)
        for i, argument in enumerate(arguments):  # constants: copies too, never the check's
            if isinstance(argument, torch.Tensor) and not argument.requires_grad:
                arguments[i] = argument.clone()
        watched = [
            _Watched(adapter.names[i], a)
            for i, a in enumerate(arguments)
            if isinstance(a, torch.Tensor)
        ]
        with memory(filled, self.namespaces), torch.enable_grad():
            outputs = adapter.floating_outputs(adapter.call(*arguments))
        writes = [w for w in (x.written(adapter.numpy) for x in watched) if w is not None]
        nodes = self._nodes(outputs)
        graph = _Graph(
            [arguments[i] for i in positions],
            [adapter.names[i] for i in positions],
            values,
            outputs,
            nodes,
        )
        roles = list(dict.fromkeys(n.role for n in nodes))
        douts = tuple(dict.fromkeys(d for n in nodes for d in n.douts)) or ("grad_output",)
        return Forwarded(
            [adapter.numpy(o) for o in outputs],
            writes,
            graph,
            " and ".join(roles) if roles else None,
            douts,
            ("ctx",),
        )

    def backward(
        self, graph: object, cotangents: Sequence[Array] | None, *, filled: bool
    ) -> Backwarded:
        torch = torch_module()
        adapter = self.adapter
        assert isinstance(graph, _Graph)
        if cotangents is None:
            seeds = [torch.ones_like(graph.outputs[0])]
        else:
            seeds = [
                torch.as_tensor(np.array(c, copy=True), device=adapter.device, dtype=o.dtype)
                for c, o in zip(per_output(cotangents, graph.outputs), graph.outputs, strict=True)
            ]
        pairs = [(o, s) for o, s in zip(graph.outputs, seeds, strict=True) if o.requires_grad]
        handles = []
        found = Backwarded({})
        for node in graph.nodes:
            node.watched, node.kinds = [], {}
            handles.append(node.node.register_prehook(self._before(node, graph)))
            handles.append(node.node.register_hook(self._after(node, found)))
        try:
            with memory(filled, self.namespaces):
                grads = torch.autograd.grad(
                    [o for o, _ in pairs],
                    graph.leaves,
                    [s for _, s in pairs],
                    retain_graph=True,
                    allow_unused=True,
                )
        except RuntimeError as error:  # what it returned, said as the check itself says it
            raise adapter._backward_problem(error) from error
        finally:
            for handle in handles:
                handle.remove()
        found.gradients = {
            name: adapter.numpy(g) if g is not None else np.zeros(tuple(leaf.shape))
            for name, g, leaf in zip(graph.names, grads, graph.leaves, strict=True)
        }
        return found

    # --- the user's backwards in a graph ---------------------------------------------------------

    def _nodes(self, outputs: Sequence[Any]) -> list[_Node]:
        """The nodes of the user's backwards (Functions, custom operators) the outputs reach."""
        torch = torch_module()
        custom = torch.autograd.function.BackwardCFunction
        stack = [o.grad_fn for o in reversed(outputs) if o.grad_fn is not None]
        seen: set[int] = set()
        found = []
        while stack and len(seen) < NODES:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, custom):
                found.append(self._described(node))
            stack.extend(n for n, _ in reversed(node.next_functions) if n is not None)
        if len({n.role for n in found}) > 1:  # names say whose they are
            for n in found:
                n.douts = [f"{n.role}'s {d}" for d in n.douts]
        return found

    def _described(self, node: Any) -> _Node:
        function = getattr(node, "_forward_cls", None)
        known = self.described.get(function)
        if known is None:
            known = self.described[function] = self._backward_of(function)
        role, douts, star = known
        return _Node(node, role, list(douts), star)

    def _backward_of(self, function: object) -> tuple[str, tuple[str, ...], bool]:
        """How a Function's (or custom operator's) backward is named, and its gradients."""
        backward = getattr(function, "backward", None)
        backward = getattr(backward, "gradcheck_user_backward", backward)
        role = f"{getattr(function, '__name__', 'Function')}.backward"
        if str(getattr(function, "__module__", "")).startswith("torch."):
            # A custom operator's Function, generated by torch.library: its backward is the
            # one registered with register_autograd.
            backward = self.adapter.backward_at
            role = str(getattr(backward, "__name__", None) or f"{self.adapter.label}'s backward")
        try:
            parameters = list(inspect.signature(backward).parameters.values())[1:]  # type: ignore[arg-type]
        except (TypeError, ValueError):
            parameters = []
        star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
        return role, tuple(p.name for p in parameters), star

    def _before(self, node: _Node, graph: _Graph) -> Any:
        """The pre-hook that records what `node`'s backward is given."""
        torch = torch_module()

        def held(tensor: Any) -> str:
            try:
                pointer = tensor.untyped_storage().data_ptr()
            except RuntimeError:
                return ""
            for name, leaf in zip(graph.names, graph.leaves, strict=True):
                if leaf.untyped_storage().data_ptr() == pointer:
                    return f"{INPUT_HELD}{name}"
            if any(o.untyped_storage().data_ptr() == pointer for o in graph.outputs):
                return OUTPUT_HELD
            return ""

        def watch(name: str, tensor: Any, kind: str, holds: str = "") -> None:
            watched = _Watched(name, tensor, holds)
            node.watched.append(watched)
            node.kinds[id(watched)] = kind

        def before(grad_outputs: Sequence[Any]) -> None:
            for index, grad in enumerate(grad_outputs):
                if isinstance(grad, torch.Tensor):
                    watch(node.dout_name(index), grad, "dout")
            try:
                saved = node.node.saved_tensors
            except RuntimeError:  # freed, or modified already: backward itself will say so
                saved = ()
            for index, tensor in enumerate(saved):
                if isinstance(tensor, torch.Tensor):
                    watch(f"ctx.saved_tensors[{index}]", tensor, "cache", held(tensor))
            for key, value in dict(vars(node.node)).items():
                if not key.startswith("__"):
                    for where, tensor in _tensors_in(value, f"ctx.{key}"):
                        watch(where, tensor, "cache", held(tensor))

        return before

    def _after(self, node: _Node, found: Backwarded) -> Any:
        """The hook that compares, as soon as `node`'s backward returns (before autograd adds
        what it returned into anything), what it was given with what it had been."""
        numpy = self.adapter.numpy

        def after(grad_inputs: object, grad_outputs: object) -> None:
            for watched in node.watched:
                write = watched.written(numpy)
                if write is None:
                    continue
                if node.kinds[id(watched)] == "dout":
                    found.dout_writes.append(write)
                else:
                    found.cache_writes.append(write)
            node.watched = []

        return after
