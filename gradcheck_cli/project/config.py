"""A project's gradient checks for CI: the `[tool.gradcheck]` table of a pyproject.toml, read
into the `CheckRequest`s `gradcheck check` runs.

    [tool.gradcheck]            # defaults for every check
    points = 3
    seed = 0

    [[tool.gradcheck.checks]]   # every layer of a file
    model = "src/layers.py"
    skip = ["dropout"]

    [[tool.gradcheck.checks]]   # one layer, its own inputs, parameters and settings
    name = "conv"
    model = "src/conv.py:conv"
    inputs = { x = "data/x.npy", w = "data/w.npz:w" }   # or one archive: inputs = "conv.npz"
    params = { conv_param = { stride = 1, pad = 1 } }
    rtol = 1e-6

A check's keys are `name`, `model` (required), `inputs`, `params`, `only`, `skip` and any of
`OPTION_KEYS`, the settings of `gradcheck run` by their option's name (`max_calls` or
`max-calls`); the table itself holds `checks` and defaults for the settings. A key the table
does not know is exit 2 naming it, the file and the line; so is a value of the wrong type.
Paths (model, inputs) are relative to the config file's directory.

The config is parsed with the standard library's tomllib (tomli on Python 3.10). No click.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_cli.errors import InputError
from gradcheck_cli.project.runner import CheckRequest
from gradcheck_cli.settings import (
    CONFIG,
    DETAILS,
    DTYPES,
    METHODS,
    MODES,
    CheckSettings,
    parse_entries,
    parse_names,
)
from gradcheck_cli.subject.files import split_model_spec
from gradcheck_cli.subject.options import InputOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "pyproject.toml"
TABLE = "tool.gradcheck"


@dataclass(frozen=True)
class Option:
    """A setting a config may give: its TOML type and how it is checked."""

    kind: str
    """int, float, str or names (a string "a,b" or a list of strings)."""
    minimum: float | None = None
    choices: tuple[str, ...] = ()


OPTION_KEYS: dict[str, Option] = {
    "method": Option("str", choices=METHODS),
    "delta": Option("float", minimum=0.0),  # and not 0
    "rtol": Option("float", minimum=0.0),
    "atol": Option("float", minimum=0.0),
    "wrt": Option("names"),
    "entries": Option("str"),
    "details": Option("str", choices=DETAILS),
    "top": Option("int", minimum=1),
    "mode": Option("str", choices=MODES),
    "order": Option("int", minimum=1),
    "tangents": Option("int", minimum=1),
    "directions": Option("int", minimum=1),
    "seed": Option("int", minimum=0),
    "cotangents": Option("int", minimum=1),
    "reference": Option("str", choices=("torch",)),
    "jobs": Option("int", minimum=1),
    "max_calls": Option("int", minimum=0),
    "dtype": Option("str", choices=DTYPES),
    "nondet_tol": Option("float", minimum=0.0),
    "points": Option("int", minimum=1),
}
"""The settings a config gives, for all checks (the table) or one (a check)."""

CHECK_KEYS = ("name", "model", "inputs", "params", "only", "skip")
"""What only a check has: what it checks, with what, which layers."""

DEFAULTS = {"max_calls": 1_000_000, "jobs": None}
"""Where `gradcheck check` starts from `gradcheck run`'s defaults rather than CheckSettings'."""


@dataclass(frozen=True)
class Config:
    """A config file's checks."""

    path: Path
    requests: tuple[CheckRequest, ...]

    def protected_paths(self) -> dict[Path, str]:
        """Every file the checks read (and the config itself): no output may go there."""
        paths: dict[Path, str] = {self.path: "--config"}
        for request in self.requests:
            for path, option in request.options.protected_paths().items():
                paths[path] = f"{request.where} {option.removeprefix('--')}"
        return paths


def find_config(start: Path) -> Path:
    """The nearest pyproject.toml with a [tool.gradcheck] table, from `start` upward."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_FILE
        if candidate.is_file() and _has_table(candidate):
            return candidate
    raise InputError(
        f"no {CONFIG_FILE} with a [{TABLE}] table in {start} or above; give one with --config "
        "FILE (see the README's section on gradcheck check)"
    )


def _has_table(path: Path) -> bool:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # found: read_config says what is wrong with it
    return isinstance(data.get("tool"), Mapping) and "gradcheck" in data["tool"]


def read_config(path: Path) -> Config:
    """The checks of `path`'s [tool.gradcheck] table; InputError (exit 2) naming the file, the
    line and the key for anything it cannot use."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--config {path}: cannot read it ({error})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not valid TOML: {error}") from None
    tool = data.get("tool")
    table = tool.get("gradcheck") if isinstance(tool, dict) else None
    if table is None:
        raise InputError(f"{path}: no [{TABLE}] table")
    reader = _Reader(path, text)
    if not isinstance(table, dict):
        raise InputError(f"{reader.where(None, 'gradcheck')}{TABLE} must be a table")
    for key in table:
        if key != "checks" and _key(key) not in OPTION_KEYS:
            reader.unknown(None, key, ["checks", *OPTION_KEYS])
    defaults = {_key(k): reader.option(None, k, v) for k, v in table.items() if k != "checks"}
    checks = table.get("checks")
    if not isinstance(checks, list) or not checks or not all(isinstance(c, dict) for c in checks):
        raise InputError(
            f"{reader.where(None, 'checks')}[{TABLE}] needs its checks: one "
            f"[[{TABLE}.checks]] table each, with at least a model"
        )
    requests = tuple(reader.check(n, check, defaults) for n, check in enumerate(checks, 1))
    names = [r.name for r in requests if r.name is not None]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"{path}: two checks are named {twice[0]!r}; each needs its own name")
    return Config(path.resolve(), requests)


def _key(key: str) -> str:
    return key.replace("-", "_")


class _Reader:
    """Reads one config file's values, each error naming the file, the line and the key."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.directory = path.resolve().parent

    def where(self, check: int | None, key: str | None) -> str:
        """`pyproject.toml:12: ` (the line where `key` is set in the check's table), or the
        file alone when the line cannot be found."""
        line = self._line(check, key)
        return f"{self.path}:{line}: " if line else f"{self.path}: "

    def _line(self, check: int | None, key: str | None) -> int | None:
        """The line of `key` within the table of check `check` (1-based; None: the defaults)."""
        header = re.compile(r"^\s*\[\[\s*tool\.gradcheck\.checks\s*\]\]")
        start = None
        if check is None:
            start = next(
                (
                    i
                    for i, t in enumerate(self.lines)
                    if re.match(r"^\s*\[\s*tool\.gradcheck\s*\]", t)
                ),
                None,
            )
        else:
            found = [i for i, t in enumerate(self.lines) if header.match(t)]
            start = found[check - 1] if len(found) >= check else None
        if start is None:
            return None
        if key is None:
            return start + 1
        setting = re.compile(rf"""(^|[{{,\s])["']?{re.escape(key)}["']?\s*=""")
        for number in range(start + 1, len(self.lines)):
            text = self.lines[number]
            if number > start + 1 and re.match(r"^\s*\[", text):
                break
            if setting.search(text.split("#")[0]):
                return number + 1
        return start + 1

    def unknown(self, check: int | None, key: str, known: Sequence[str]) -> None:
        table = f"[{TABLE}]" if check is None else f"check {check} of [[{TABLE}.checks]]"
        raise InputError(
            f"{self.where(check, key)}unknown key {key!r} in {table}; the keys are "
            f"{', '.join(known)}"
        )

    def fail(self, check: int | None, key: str, message: str) -> InputError:
        return InputError(f"{self.where(check, key)}{key}: {message}")

    def option(self, check: int | None, key: str, value: object) -> object:
        """A setting's value, checked for its type and range."""
        spec = OPTION_KEYS[_key(key)]
        if spec.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(check, key, f"expected an integer; got {_shown(value)}")
        elif spec.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(check, key, f"expected a number; got {_shown(value)}")
            if not math.isfinite(value):
                raise self.fail(check, key, f"expected a finite number; got {value}")
            value = float(value)
        elif spec.kind == "names":
            value = self._names(check, key, value)
            try:
                value = parse_names(",".join(value))
            except ValueError as error:
                raise self.fail(check, key, str(error)) from None
        elif not isinstance(value, str):
            raise self.fail(check, key, f"expected a string; got {_shown(value)}")
        if spec.choices and value not in spec.choices:
            raise self.fail(
                check, key, f"expected one of {', '.join(spec.choices)}; got {_shown(value)}"
            )
        least = spec.minimum
        if (
            least is not None
            and isinstance(value, (int, float))
            and (value < least or (_key(key) == "delta" and value == 0))
        ):
            bound = "> 0" if _key(key) == "delta" else f">= {least:g}"
            raise self.fail(check, key, f"must be {bound}; got {value}")
        if _key(key) == "entries":
            try:
                return parse_entries(str(value))
            except ValueError as error:
                raise self.fail(check, key, str(error)) from None
        return value

    def _names(self, check: int | None, key: str, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            return tuple(n.strip() for n in value.split(","))
        if isinstance(value, list) and value and all(isinstance(n, str) for n in value):
            return tuple(value)
        raise self.fail(check, key, f"expected names: a list of strings; got {_shown(value)}")

    def check(
        self, number: int, table: dict[str, Any], defaults: Mapping[str, object]
    ) -> CheckRequest:
        """Check `number` (1-based) as a request: the defaults, then its own settings."""
        for key in table:
            if key not in CHECK_KEYS and _key(key) not in OPTION_KEYS:
                self.unknown(number, key, [*CHECK_KEYS, *OPTION_KEYS])
        name = table.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise self.fail(number, "name", f"expected a non-empty string; got {_shown(name)}")
        where = f"{self.path.name} check {number}" + (f" ({name})" if name else "")
        model = table.get("model")
        if not isinstance(model, str) or not model.strip():
            line = self.where(number, "model" if "model" in table else None)
            raise InputError(
                f'{line}check {number} needs a model: model = "FILE.py" (every layer), '
                '"FILE.py:NAME" (one) or a built-in model\'s name'
            )
        own = {
            _key(k): self.option(number, k, v) for k, v in table.items() if _key(k) in OPTION_KEYS
        }
        chosen = {**DEFAULTS, **defaults, **own}
        settings = {k: v for k, v in chosen.items() if k in _SETTING_FIELDS}
        asked = CheckSettings(**settings)  # type: ignore[arg-type]
        try:
            asked.validate(CONFIG)
        except InputError as error:
            raise InputError(f"{self.where(number, None)}check {number}: {error}") from None
        inputs_archive, input_specs = self._inputs(number, table.get("inputs"))
        options = InputOptions(
            model_spec=self._model(model),
            input_specs=input_specs,
            inputs_archive=inputs_archive,
            param_specs=self._params(number, table.get("params")),
            dtype=str(chosen.get("dtype", "float64")),
            nondet_tol=float(chosen.get("nondet_tol", 0.0)),  # type: ignore[arg-type]
            cotangents=int(chosen.get("cotangents", 2)),  # type: ignore[call-overload]
            seed=int(chosen.get("seed", 0)),  # type: ignore[call-overload]
        )
        only = self._names(number, "only", table["only"]) if "only" in table else None
        skip = self._names(number, "skip", table["skip"]) if "skip" in table else ()
        return CheckRequest(
            options,
            asked,
            points=int(chosen.get("points", 1)),  # type: ignore[call-overload]
            only=only,
            skip=skip,
            name=name.strip() if isinstance(name, str) else None,
            where=where,
        )

    def _model(self, model: str) -> str:
        """The model relative to the config's directory (a built-in name stays as it is)."""
        path_text, entry = split_model_spec(model.strip())
        if not (path_text.endswith(".py") or "/" in path_text):
            return model.strip()
        full = self._path(path_text)
        return full if entry is None else f"{full}:{entry}"

    def _path(self, text: str) -> str:
        return text if os.path.isabs(text) else str(self.directory / text)

    def _inputs(self, check: int, value: object) -> tuple[str | None, tuple[tuple[str, str], ...]]:
        if value is None:
            return None, ()
        if isinstance(value, str):
            return self._path(value), ()
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            for name in value:
                if not re.match(r"^(?!\d)\w+(?:\.\w+)*$", name):
                    raise self.fail(check, "inputs", f"{name!r} is not an input's name")
            return None, tuple((name, self._path(spec)) for name, spec in value.items())
        raise self.fail(
            check,
            "inputs",
            'expected a table of paths by input name ({ x = "x.npy" }) or one .npz archive\'s '
            f"path; got {_shown(value)}",
        )

    def _params(self, check: int, value: object) -> tuple[tuple[str, Any], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail(check, "params", f"expected a table by name; got {_shown(value)}")
        for name, item in value.items():
            try:
                json.dumps(item, allow_nan=False)
            except (TypeError, ValueError):
                raise self.fail(
                    check,
                    "params",
                    f"{name}: a JSON value is needed (numbers, strings, "
                    f"booleans, lists, tables); got {_shown(item)}",
                ) from None
        return tuple(value.items())


_SETTING_FIELDS = {field.name for field in dataclasses.fields(CheckSettings)}
"""The options that are CheckSettings' fields (the others are the inputs' or the run's)."""


def _shown(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
