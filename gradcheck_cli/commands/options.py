"""Option types and the option bundles the commands share.

Only click is imported here: `--help` must stay cheap.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from gradcheck_cli import settings
from gradcheck_cli.settings import METHODS, EntrySelection

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class EntryRef:
    """An entry as written on the command line: `w[0,1]`, `scale[]`, or a bare `0,1` that
    applies to the input(s) of --wrt."""

    name: str | None
    index: tuple[int, ...]

    def __str__(self) -> str:
        digits = ",".join(str(i) for i in self.index)
        return digits if self.name is None else f"{self.name}[{digits}]"


def parse_entry(text: str) -> EntryRef:
    """`b[3]`, `kernel[1,0,2,2]`, `scale[]`, `parameters.W1[0,3]`, or `I,J` (any number of
    indices); ValueError else."""
    return EntryRef(*settings.parse_entry(text))


class EntryType(click.ParamType):
    """NAME[I,J,...] or I,J: an entry, zero-based."""

    name = "ENTRY"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, EntryRef):
            return value
        try:
            return parse_entry(str(value))
        except ValueError:
            self.fail(
                "expected an entry such as w[0,1], b[3], scale[] or (with --wrt) 0,1: "
                f"non-negative integers; got {value!r}",
                param,
                ctx,
            )


class EntriesSpec(click.ParamType):
    """all | random:K | "w[0,1];b[2]" (bare I,J applies to each input of --wrt)"""

    name = "SPEC"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, EntrySelection):
            return value
        try:
            return settings.parse_entries(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class PositiveFloat(click.ParamType):
    """A finite number > 0 (or >= 0 with allow_zero)."""

    name = "FLOAT"

    def __init__(self, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"expected a number; got {value!r}", param, ctx)
        ok = number >= 0 if self.allow_zero else number > 0
        if not (ok and number != float("inf")) or number != number:
            bound = ">= 0" if self.allow_zero else "> 0"
            self.fail(f"expected a finite number {bound}; got {value!r}", param, ctx)
        return number


class Assignment(click.ParamType):
    """NAME=VALUE, the value a path (--input) or JSON (--param)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.name = f"NAME={what}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, equals, rest = str(value).partition("=")
        name = name.strip()
        # --input parameters.W1=w1.npy: one array of the dict argument parameters.
        dotted = self.what != "JSON" and all(part for part in name.split(".")[1:])
        valid = name.isidentifier() or (dotted and name.split(".")[0].isidentifier())
        if not equals or not valid or not rest:
            self.fail(f"expected NAME={self.what} such as b=bias.npy; got {value!r}", param, ctx)
        if self.what == "JSON":
            try:
                return name, json.loads(rest)
            except json.JSONDecodeError as error:
                self.fail(f"{name}: not JSON ({error.msg}): {_cut(rest)!r}", param, ctx)
            except RecursionError:
                self.fail(
                    f"{name}: JSON nested too deeply (Python's parser gives up past about "
                    f"{sys.getrecursionlimit()} levels): {_cut(rest)!r}",
                    param,
                    ctx,
                )
        return name, rest


class WrtSpec(click.ParamType):
    """NAME[,NAME...], or both (X and W)."""

    name = "NAME[,NAME...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return settings.parse_names(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class NamesSpec(click.ParamType):
    """NAME[,NAME...]: layers of a whole file (--only, --skip)."""

    name = "NAME[,NAME...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        names = tuple(n.strip() for n in str(value).split(","))
        if not all(n.isidentifier() for n in names):
            self.fail(
                f"expected layer names separated by commas, e.g. affine,relu; got {value!r}",
                param,
                ctx,
            )
        return names


SHOWN_VALUE = 60
"""A value quoted in a message is cut to this many characters: the message stays one line."""


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_VALUE else text[: SHOWN_VALUE - 3] + "..."


def _apply(command: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        command = option(command)
    return command


INPUT_KEYS = (
    "model_spec",
    "input_specs",
    "inputs_archive",
    "x_path",
    "w_path",
    "param_specs",
    "dtype",
    "nondet_tol",
    "device",
)


def input_options(command: F) -> F:
    """What to check: the model, its inputs and parameters, the precision. The command receives
    them together as one dict, `inputs` (the fields of subject.InputOptions)."""

    @functools.wraps(command)
    def collected(*args: Any, **kwargs: Any) -> Any:
        inputs = {key: kwargs.pop(key) for key in INPUT_KEYS}
        return command(*args, inputs=inputs, **kwargs)

    return _apply(
        collected,  # type: ignore[return-value]
        [
            click.option(
                "--model",
                "model_spec",
                default="sigmoid-sum",
                show_default=True,
                metavar="NAME|FILE.py[:LAYER]",
                help="A built-in model (see 'gradcheck models'), a Python file defining "
                "forward(...) and backward(...), or FILE.py:NAME for NAME_forward and "
                "NAME_backward (the layer convention). A model file is code: gradcheck runs it, "
                "as 'python FILE.py' would.",
            ),
            click.option(
                "--input",
                "input_specs",
                type=Assignment("PATH"),
                multiple=True,
                help="An input by name: NAME=PATH (.csv, .npy or .npz:KEY). Repeatable.",
            ),
            click.option(
                "--inputs",
                "inputs_archive",
                metavar="FILE.npz",
                help="Every array of an .npz archive, each an input by its key.",
            ),
            click.option(
                "--x",
                "x_path",
                metavar="PATH",
                help="The input named X (or x): .csv, .npy, or .npz[:key]. Default: the seed's "
                "3x3 X.",
            ),
            click.option(
                "--w",
                "w_path",
                metavar="PATH",
                help="The input named W (or w). Default: the seed's 3x2 W.",
            ),
            click.option(
                "--param",
                "param_specs",
                type=Assignment("JSON"),
                multiple=True,
                help="A parameter that is not an input, as JSON: NAME=JSON, e.g. "
                'conv_param=\'{"stride": 1, "pad": 1}\'. Repeatable.',
            ),
            click.option(
                "--dtype",
                type=click.Choice(["float64", "float32", "float16", "bfloat16"]),
                default="float64",
                show_default=True,
                help="Precision of the floating inputs and of the model's code. run: a "
                "gradient computed in float32 or float16 is judged against a float64 forward "
                "at the same quantised inputs (bfloat16: PyTorch and JAX models); perturb and "
                "sweep: float64 or float32, the whole experiment in it.",
            ),
            click.option(
                "--nondet-tol",
                type=PositiveFloat(allow_zero=True),
                default=0.0,
                show_default=True,
                help="How far two evaluations of forward (and backward) at the same inputs may "
                "differ; 0 = bitwise equal. Beyond it gradcheck stops (exit 2).",
            ),
            click.option(
                "--device",
                metavar="DEVICE",
                help="Where a PyTorch or JAX model's tensors live: cpu (the default), cuda, "
                "cuda:1, mps, gpu... Exit 2 when this machine has no such device.",
            ),
        ],
    )


EXPERIMENT_DTYPES = ("float64", "float32")
"""perturb and sweep run the whole experiment in the inputs' precision: these two."""


def refuse_low_precision(dtype: str, command: str) -> None:
    """float16 and bfloat16 are checked against a float64 forward, entry by entry: a run."""
    if dtype not in EXPERIMENT_DTYPES:
        raise click.BadParameter(
            f"{command} runs in float64 or float32; {dtype} is for gradcheck run, which judges "
            "a gradient computed in it against a float64 forward",
            param_hint="--dtype",
        )


def output_options(command: F) -> F:
    """--format, --output, --debug: how to report."""
    return _apply(
        command,
        [
            click.option(
                "--format",
                "output_format",
                type=click.Choice(["table", "json", "github"]),
                default="table",
                show_default=True,
                help="table for people; json (stdout holds the JSON document alone) for "
                "scripts; github for GitHub Actions annotations.",
            ),
            click.option(
                "--output",
                "output_path",
                type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
                metavar="FILE",
                help="Also write the JSON report to FILE (complete or untouched; - for stdout).",
            ),
            click.option("--debug", is_flag=True, help="Show a traceback for errors."),
        ],
    )


def tolerance_options(command: F) -> F:
    return _apply(
        command,
        [
            click.option(
                "--method",
                type=click.Choice(METHODS),
                default="central",
                show_default=True,
                help="Finite-difference scheme.",
            ),
            click.option(
                "--rtol",
                type=PositiveFloat(allow_zero=True),
                help="Fixed relative tolerance (default: from each entry's error estimate).",
            ),
            click.option(
                "--atol",
                type=PositiveFloat(allow_zero=True),
                help="Fixed absolute tolerance (default: from each entry's error estimate).",
            ),
        ],
    )


def binding_options(command: F) -> F:
    """--seed and --cotangents: how a vector-valued model is contracted."""
    return _apply(
        command,
        [
            click.option(
                "--seed",
                type=click.IntRange(min=0),
                default=0,
                show_default=True,
                help="Seed for random choices: random:K entries, fast mode's directions, a "
                "vector model's cotangents, sweep's random direction.",
            ),
            click.option(
                "--cotangents",
                type=click.IntRange(min=1),
                default=2,
                show_default=True,
                help="Random cotangents for a model whose forward returns an array.",
            ),
        ],
    )
