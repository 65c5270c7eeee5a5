"""Calling the user's code: with named arguments, as cheaply as possible, and without letting
it write into the check's own arrays.

Arrays go in as read-only views of the check's own buffers, not copies: a forward call then
costs the user's forward and nothing that grows with the inputs. A dict argument (a dict of
inputs such as `parameters`, or a parameter such as `bn_param`) is a fresh dict on every call,
its arrays read-only views: what one call puts into it, the next does not see. User code that
writes into its arguments (`x *= 2`, `dout[...] = 0`) raises at once on a read-only view; from
then on every call gets fresh copies, so the code runs as written and our arrays stay untouched.
Code that ignores the flag (np.add.at, numba, C) is caught by `fingerprints` of the inputs instead.

Whatever the user's code raises becomes a one-line `UserCodeError` naming the file and line.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from gradcheck_cli.frameworks.adapted import AdapterError
from gradcheck_cli.numerics.models import Inputs
from gradcheck_cli.subject.conventions import ModelFile, UserFunction, signature_of
from gradcheck_cli.subject.groups import assemble
from gradcheck_cli.subject.messages import user_code_error

Arguments = tuple[list[object], dict[str, object]]


class Caller:
    """Calls the user's functions with named inputs and parameters, as cheaply as possible:
    read-only views of the inputs, or copies once the user's code has written into one."""

    def __init__(
        self, model_file: ModelFile, order: Sequence[str], params: Mapping[str, object]
    ) -> None:
        self.model_file = model_file
        self.params = dict(params)
        signature = signature_of(model_file)
        keyword_only = inspect.Parameter.KEYWORD_ONLY
        self.positional = [
            p.name
            for p in signature.parameters.values()
            if p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        self.keyword = [p.name for p in signature.parameters.values() if p.kind == keyword_only]
        self.defaults = {
            p.name: p.default
            for p in signature.parameters.values()
            if p.default is not inspect.Parameter.empty
        }
        self.order = list(order)
        self.copying = False
        self.wrote: set[str] = set()
        """The roles (`forward`, `backward`) whose code raised on a read-only view: it writes
        into its arguments (the side-effect checks name which)."""
        # torch.as_tensor warns about the read-only views we pass (our doing, not the user's):
        # silenced for that message alone.
        warnings.filterwarnings(
            "ignore", message="The given NumPy array is not writable", category=UserWarning
        )
        self._cached: tuple[tuple[int, ...], list[object], dict[str, object]] | None = None

    def arguments(
        self, inputs: Inputs, extra: Sequence[object] = ()
    ) -> tuple[list[object], dict[str, object]]:
        """forward's positional and keyword arguments at `inputs`, then `extra` positionally."""
        values = self.values(inputs)
        # Trailing positional parameters nobody gave keep their defaults (not passed at all),
        # so that `extra` (grad_output) follows the last one given.
        last = max((i for i, n in enumerate(self.positional) if n in values), default=-1)
        args = [values.get(n, self.defaults.get(n)) for n in self.positional[: last + 1]]
        kwargs = {n: values[n] for n in self.keyword if n in values}
        return [*args, *extra], kwargs

    def values(self, inputs: Inputs) -> dict[str, object]:
        """Every value by the name forward's parameters give it: the parameters, the inputs, and
        a dict argument's inputs (`parameters.W1`, ...) as one dict (`parameters`)."""
        return {**self.params, **assemble(inputs)}

    def protect(self, value: object) -> object:
        """`value` as the user's code gets it: a read-only view (a fresh copy once the code has
        written into one), a dict of them."""
        return writable_copy(value) if self.copying else read_only(value)

    def call_built(
        self, role: str, function: UserFunction, build: Callable[[], Arguments]
    ) -> object:
        """function(*args, **kwargs) with arguments `build` makes afresh for the call (a
        layer's backward: fresh copies of the douts and the cache, read-only views of the
        inputs); built and called once more, with copies, when the code writes into a view."""
        args, kwargs = build()
        try:
            return call_user_function(self.model_file, role, function, args, kwargs)
        except WroteToInput:
            self.copying = True
            self.wrote.add(role)
        args, kwargs = build()
        try:
            return call_user_function(self.model_file, role, function, args, kwargs)
        except WroteToInput as written:
            error = written.__cause__ or written
            raise user_code_error(self.model_file.path, role, error) from error

    def call(
        self,
        role: str,
        function: UserFunction,
        args: Sequence[object],
        kwargs: Mapping[str, object],
        *,
        quiet: bool = False,
    ) -> object:
        """function(*args, **kwargs) with read-only views (copies once the user's code has
        written into one). `quiet`: the caller has numpy's floating-point errors silenced."""
        if not self.copying:
            try:
                views = [read_only(a) for a in args]
                keyword_views = {k: read_only(v) for k, v in kwargs.items()}
                return call_user_function(
                    self.model_file, role, function, views, keyword_views, quiet=quiet
                )
            except WroteToInput:
                self.copying = True
                self.wrote.add(role)
        copies = [writable_copy(a) for a in args]
        keyword_copies = {k: writable_copy(v) for k, v in kwargs.items()}
        try:
            return call_user_function(
                self.model_file, role, function, copies, keyword_copies, quiet=quiet
            )
        except WroteToInput as written:
            # Read-only even in copies: the user's own array, or a buffer only they hold.
            error = written.__cause__ or written
            raise user_code_error(self.model_file.path, role, error) from error

    def call_forward(self, inputs: Inputs, *, quiet: bool = False) -> object:
        """forward at `inputs`: the hot path of every finite difference. The checks move
        entries in place, so the same arrays come again and again: their read-only views are
        made once and reused (a view shows every change of its array)."""
        key = tuple(map(id, inputs.values()))
        cached = self._cached
        if cached is None or cached[0] != key or self.copying:
            args, kwargs = self.arguments(inputs)
            if self.copying:
                return self.call("forward", self.model_file.forward, args, kwargs, quiet=quiet)
            cached = self._cached = (
                key,
                [read_only(a) for a in args],
                {k: read_only(v) for k, v in kwargs.items()},
            )
        # A dict argument afresh for every call: what one call puts into it, no other sees.
        args = [dict(a) if isinstance(a, dict) else a for a in cached[1]]
        kwargs = {k: dict(v) if isinstance(v, dict) else v for k, v in cached[2].items()}
        try:
            return call_user_function(
                self.model_file, "forward", self.model_file.forward, args, kwargs, quiet=quiet
            )
        except WroteToInput:
            self.copying = True
            self.wrote.add("forward")
            self._cached = None
            args, kwargs = self.arguments(inputs)
            return self.call("forward", self.model_file.forward, args, kwargs, quiet=quiet)


class WroteToInput(Exception):
    """The user's code wrote into a read-only argument: call again with copies (or, for the
    side-effect checks, name the argument)."""


def read_only(value: object) -> object:
    """A read-only view of an array; a fresh dict of them for a dict (one level)."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, dict):
        return {k: read_only(v) if isinstance(v, np.ndarray) else v for k, v in value.items()}
    return value


def writable_copy(value: object) -> object:
    """A writable copy: arrays, and containers of them (a layer's cache of forward's views)."""
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True)
    if isinstance(value, (tuple, list, dict)):
        return copy.deepcopy(value)
    return value


def call_user_function(
    model_file: ModelFile,
    role: str,
    function: UserFunction,
    args: Sequence[object],
    kwargs: Mapping[str, object],
    *,
    quiet: bool = False,
) -> object:
    """function(*args, **kwargs), whatever it raises a one-line `UserCodeError` naming `role`
    (`forward`, `backward`) and the file's line. `quiet`: numpy's floating-point errors are
    already silenced by the caller (the hot path), else they are silenced here."""
    # errstate: every non-finite result is reported by us or by the numerics.
    try:
        if quiet:
            return function(*args, **kwargs)
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)
    except AdapterError:
        raise  # already one line that names the file and line (frameworks/)
    except ValueError as error:
        # Our read-only views, as an argument or inside one (a layer's cache holds forward's).
        if "read-only" in str(error):
            raise WroteToInput from error
        raise user_code_error(model_file.path, role, error) from error
    except (Exception, SystemExit) as error:
        raise user_code_error(model_file.path, role, error) from error


def fingerprints(arrays: Inputs) -> list[bytes]:
    """A fingerprint of every array's bytes: did the user's code write into one?"""
    return [hashlib.blake2b(np.ascontiguousarray(a).data).digest() for a in arrays.values()]
