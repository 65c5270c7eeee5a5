"""The command line: options -> load -> check -> render, and the only place that knows exit codes.

Exit codes: 0 every check passed; 1 a gradient check failed; 2 bad usage or bad input (one line
on stderr, no traceback); 3 an internal error (a bug in gradcheck); 130 interrupted.

Start-up stays cheap: only click is imported here at module level; numpy is imported when a
command runs and rich only when a table is drawn, so `--help`, `--version` and JSON runs pay
for neither.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gradcheck_cli import __version__

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from gradcheck_cli.models import Array, Model
    from gradcheck_cli.report import AnyReport, ModelInfo, RunReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SWEEP_RANGE = {"float64": (1e-1, 1e-10), "float32": (1.0, 1e-4)}
"""The Taylor test's default deltas: the range where the O(delta^2) remainder stands clear of
round-off for an f of order 1."""
# The same as differences.METHOD_NAMES (a test keeps them equal): importing it would load numpy
# for --help.
METHODS = ("forward", "backward", "central", "five-point", "complex-step")
F = TypeVar("F", bound=Callable[..., Any])


class IndexPair(click.ParamType):
    """I,J: a matrix entry, zero-based."""

    name = "I,J"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = str(value).replace(" ", "").split(",")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            self.fail(
                f"expected two non-negative integers I,J such as 0,0; got {value!r}", param, ctx
            )
        return int(parts[0]), int(parts[1])


class EntriesSpec(click.ParamType):
    """all | "I,J;I,J;..." | random:K"""

    name = "SPEC"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip()
        if text == "all":
            return ("all", None)
        if text.startswith("random:"):
            count = text.removeprefix("random:")
            if not count.isdigit() or int(count) == 0:
                self.fail(f"expected random:K with K a positive integer; got {value!r}", param, ctx)
            return ("random", int(count))
        pairs = []
        for item in filter(None, text.split(";")):
            pairs.append(IndexPair().convert(item, param, ctx))
        if not pairs:
            self.fail(f"expected all, random:K or I,J;I,J;...; got {value!r}", param, ctx)
        return ("list", tuple(pairs))


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


class Interrupted(Exception):
    """Ctrl-C, carried past click (which would print a blank line of its own)."""


class GradcheckGroup(click.Group):
    """Turns every failure into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            raise Interrupted from stop

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **kw: Any
    ) -> Any:
        standalone = kw.pop("standalone_mode", True)
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        try:
            result = super().main(argv, prog_name, standalone_mode=False, **kw)
            code = result if isinstance(result, int) else EXIT_OK
        except click.exceptions.Exit as done:
            code = done.exit_code
        except click.exceptions.NoArgsIsHelpError as shown:
            # Bare `gradcheck`: the help, in full, as a first step rather than an error.
            click.echo(shown.ctx.get_help())
            code = EXIT_OK
        except (Interrupted, KeyboardInterrupt, click.exceptions.Abort):
            click.echo("gradcheck: interrupted", err=True)
            code = EXIT_INTERRUPTED
        except click.ClickException as error:
            message = " ".join(error.format_message().split())
            hint = ""
            if isinstance(error, click.UsageError) and error.ctx is not None:
                hint = f" (see '{error.ctx.command_path} --help')"
            click.echo(f"gradcheck: error: {message}{hint}", err=True)
            code = EXIT_USAGE
        except Exception as error:
            from gradcheck_cli.errors import InputError

            if debug:
                import traceback

                traceback.print_exc()
            if isinstance(error, InputError):
                click.echo(f"gradcheck: error: {' '.join(str(error).split())}", err=True)
                code = EXIT_USAGE
            else:
                click.echo(
                    f"gradcheck: internal error: {type(error).__name__}: {error} "
                    "(a bug in gradcheck; --debug shows the traceback)",
                    err=True,
                )
                code = EXIT_INTERNAL
        if standalone:
            sys.exit(code)
        return code


# --- option bundles --------------------------------------------------------------------------


def input_options(command: F) -> F:
    """--x, --w, --model, --dtype: what to check."""
    for option in reversed(
        [
            click.option(
                "--x",
                "x_path",
                metavar="PATH",
                help="X (n, k): .csv, .npy, or .npz[:key]. Default: the seed's 3x3 X.",
            ),
            click.option(
                "--w",
                "w_path",
                metavar="PATH",
                help="W (k, m): .csv, .npy, or .npz[:key]. Default: the seed's 3x2 W.",
            ),
            click.option(
                "--model",
                "model_spec",
                default="sigmoid-sum",
                show_default=True,
                metavar="NAME|FILE.py",
                help="A built-in model (see 'gradcheck models') or a Python file defining "
                "forward(X, W) and backward(X, W).",
            ),
            click.option(
                "--dtype",
                type=click.Choice(["float64", "float32"]),
                default="float64",
                show_default=True,
                help="Precision of the whole check; steps and tolerances follow.",
            ),
        ]
    ):
        command = option(command)
    return command


def output_options(command: F) -> F:
    """--format, --output, --debug: how to report."""
    for option in reversed(
        [
            click.option(
                "--format",
                "output_format",
                type=click.Choice(["table", "json"]),
                default="table",
                show_default=True,
                help="table for people; json (stdout holds the JSON document alone) for scripts.",
            ),
            click.option(
                "--output",
                "output_path",
                type=click.Path(dir_okay=False, path_type=Path),
                metavar="FILE",
                help="Also write the JSON report to FILE (complete or untouched).",
            ),
            click.option("--debug", is_flag=True, help="Show a traceback for errors."),
        ]
    ):
        command = option(command)
    return command


def tolerance_options(command: F) -> F:
    for option in reversed(
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
        ]
    ):
        command = option(command)
    return command


# --- the wiring --------------------------------------------------------------------------------


@dataclass
class Subject:
    """What a command checks: the model(s), the matrices and where they came from."""

    models: list[Model]
    info: ModelInfo
    X: Array
    W: Array
    sources: dict[str, str]


@contextlib.contextmanager
def user_prints_to_stderr() -> Iterator[None]:
    """A model file may print; its output goes to stderr so stdout stays the report alone."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def load_subject(
    x_path: str | None,
    w_path: str | None,
    model_spec: str,
    dtype: str,
    *,
    cotangents: int = 2,
    seed: int = 0,
) -> Subject:
    import numpy as np

    from gradcheck_cli.errors import InputError
    from gradcheck_cli.loading import LoadedMatrix, check_shapes, load_matrix
    from gradcheck_cli.models import builtin_model
    from gradcheck_cli.report import ModelInfo
    from gradcheck_cli.seed import SEED_SOURCE, seed_matrices

    seed_X, seed_W = seed_matrices()
    X = load_matrix(x_path, name="X") if x_path else LoadedMatrix(seed_X, SEED_SOURCE)
    W = load_matrix(w_path, name="W") if w_path else LoadedMatrix(seed_W, SEED_SOURCE)
    check_shapes(X, W)
    x_array = X.array.astype(np.dtype(dtype))
    w_array = W.array.astype(np.dtype(dtype))
    sources = {"X": X.source, "W": W.source}
    if model_spec.endswith(".py") or "/" in model_spec:
        from gradcheck_cli.user_model import bind_models, load_model_file

        model_file = load_model_file(Path(model_spec))
        models = bind_models(model_file, x_array, w_array, cotangents=cotangents, seed=seed)
        info = ModelInfo(model_file.name, model_file.formula, str(model_file.path))
        return Subject(list(models), info, x_array, w_array, sources)
    try:
        model = builtin_model(model_spec)
    except InputError as error:
        raise InputError(f"--model {error}") from None
    info = ModelInfo(model.name, model.formula, "builtin", model.gradient_formula)
    return Subject([model], info, x_array, w_array, sources)


def check_entry(index: tuple[int, int], shape: tuple[int, ...], label: str, option: str) -> None:
    from gradcheck_cli.errors import InputError

    i, j = index
    if not (i < shape[0] and j < shape[1]):
        raise InputError(
            f"{option} {i},{j} is out of range for {label} of shape {tuple(shape)}: "
            f"I must be 0..{shape[0] - 1} and J 0..{shape[1] - 1}"
        )


def resolve_entries(
    spec: tuple[str, Any], subject: Subject, wrt: Sequence[str], seed: int
) -> dict[str, NDArray[np.intp]] | None:
    import numpy as np

    kind, value = spec
    if kind == "all":
        return None
    chosen: dict[str, NDArray[np.intp]] = {}
    rng = np.random.default_rng(seed)
    for name in wrt:
        matrix = subject.X if name == "X" else subject.W
        if kind == "random":
            count = min(int(value), matrix.size)
            chosen[name] = np.sort(rng.choice(matrix.size, size=count, replace=False))
        else:
            for pair in value:
                check_entry(pair, matrix.shape, name, "--entries")
            chosen[name] = np.asarray(
                sorted({int(np.ravel_multi_index(p, matrix.shape)) for p in value}), dtype=np.intp
            )
    return chosen


def emit(
    report: AnyReport,
    output_format: str,
    output_path: Path | None,
    draw: Callable[[Any], None],
) -> int:
    """Write the JSON file (if asked), print the table or the JSON, and return the exit code."""
    from gradcheck_cli.output import to_json_text, write_atomically

    text = to_json_text(report.to_document())
    if output_path is not None:
        write_atomically(output_path, text + "\n")
    if output_format == "json":
        click.echo(text)
    else:
        from gradcheck_cli.render import stdout_console

        draw(stdout_console())
    return EXIT_OK if report.passed else EXIT_FAILED


def prepare_output(output_path: Path | None, option: str = "--output") -> None:
    """Refuse an unwritable report path before any work is done."""
    if output_path is not None:
        from gradcheck_cli.output import OutputError, check_output_path

        try:
            check_output_path(output_path)
        except OutputError as error:
            raise OutputError(f"{option} {error}") from None


class ProgressReporter:
    """A rich progress bar on stderr, shown only for checks that last more than about a second,
    only on a terminal, and never in JSON mode."""

    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.description = description
        self.started = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, done: float, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.started < 1.0:
                return
            from gradcheck_cli.render import progress_bar

            self.bar = progress_bar()
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# --- commands ----------------------------------------------------------------------------------


@click.group(cls=GradcheckGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="gradcheck")
def cli() -> None:
    """Tell, with numbers, whether a hand-written gradient is right.

    With no --x/--w every command runs on the seed example:
    f(X, W) = sum(sigmoid(X @ W)), X 3x3, W 3x2.

    \b
    Exit codes: 0 all checks passed, 1 a gradient is wrong,
                2 bad usage or bad input, 3 internal error, 130 interrupted.
    """


@cli.command()
@input_options
@tolerance_options
@click.option(
    "--wrt",
    type=click.Choice(["X", "W", "both"]),
    default="both",
    show_default=True,
    help="Which gradient to check.",
)
@click.option(
    "--delta",
    type=PositiveFloat(),
    help="Step for every entry (default: a step per entry, e.g. eps^(1/3)*max(1,|x|) for central).",
)
@click.option(
    "--entries",
    "entries_spec",
    type=EntriesSpec(),
    default="all",
    show_default=True,
    help='Entries to check: all, "I,J;I,J" (in each matrix of --wrt) or random:K (seeded).',
)
@click.option(
    "--details",
    type=click.Choice(["auto", "all", "worst"]),
    default="auto",
    show_default=True,
    help="Entries listed in the JSON: all; worst (the failed + the --top worst);"
    " auto (all up to 1000 entries, else worst).",
)
@click.option(
    "--mode",
    type=click.Choice(["full", "fast"]),
    default="full",
    show_default=True,
    help="full: every selected entry; fast: random directions, then bisection to the wrong "
    "entries (for big black-box models).",
)
@click.option(
    "--directions",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="--mode fast: random directions to test.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Rows in the table of worst entries.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed for random:K entries and for a vector model's cotangents.",
)
@click.option(
    "--cotangents",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Random cotangents for a model file whose forward returns an array.",
)
@click.option(
    "--reference",
    type=click.Choice(["torch"]),
    help="Add PyTorch autograd's gradient of the built-in model as a column.",
)
@output_options
def run(
    x_path: str | None,
    w_path: str | None,
    model_spec: str,
    dtype: str,
    method: str,
    rtol: float | None,
    atol: float | None,
    wrt: str,
    delta: float | None,
    entries_spec: tuple[str, Any],
    details: str,
    mode: str,
    directions: int,
    top: int,
    seed: int,
    cotangents: int,
    reference: str | None,
    output_format: str,
    output_path: Path | None,
    debug: bool,
) -> int:
    """Compare the analytic gradient with finite differences, entry by entry.

    \b
    Examples:
      gradcheck run
      gradcheck run --x X.csv --w W.npy --wrt X --method five-point
      gradcheck run --model fixtures/models/dense_tanh.py --format json
    """
    if mode == "fast" and delta is not None:
        raise click.UsageError("--mode fast picks its own step per direction; drop --delta")
    if mode == "fast" and reference is not None:
        raise click.UsageError("--reference needs --mode full")
    prepare_output(output_path)
    with user_prints_to_stderr():
        report = _run_report(
            x_path,
            w_path,
            model_spec,
            dtype,
            method,
            rtol,
            atol,
            wrt,
            delta,
            entries_spec,
            details,
            mode,
            directions,
            top,
            seed,
            cotangents,
            reference,
            output_format,
        )

    def draw(console: Any) -> None:
        from gradcheck_cli.render import render_run

        render_run(report, console, top=top)

    return emit(report, output_format, output_path, draw)


def _run_report(
    x_path: str | None,
    w_path: str | None,
    model_spec: str,
    dtype: str,
    method: str,
    rtol: float | None,
    atol: float | None,
    wrt: str,
    delta: float | None,
    entries_spec: tuple[str, Any],
    details: str,
    mode: str,
    directions: int,
    top: int,
    seed: int,
    cotangents: int,
    reference: str | None,
    output_format: str,
) -> RunReport:
    from gradcheck_cli.checks import run_check

    subject = load_subject(x_path, w_path, model_spec, dtype, cotangents=cotangents, seed=seed)
    matrices = ["X", "W"] if wrt == "both" else [wrt]
    selection = resolve_entries(entries_spec, subject, matrices, seed)
    reference_gradients = None
    if reference == "torch":
        from gradcheck_cli.errors import InputError
        from gradcheck_cli.models import ElementwiseModel

        model = subject.models[0]
        if not isinstance(model, ElementwiseModel):
            raise InputError("--reference torch needs a built-in model (--model NAME)")
        from gradcheck_cli.torch_reference import torch_gradients

        reference_gradients = torch_gradients(model, subject.X, subject.W)
    progress = ProgressReporter(output_format == "table", "checking entries")
    settings = {"wrt": wrt, "entries": _spec_text(entries_spec), "seed": seed}
    try:
        if mode == "fast":
            from gradcheck_cli.fast import fast_check

            report = fast_check(
                subject.models,
                subject.X,
                subject.W,
                model_info=subject.info,
                sources=subject.sources,
                wrt=matrices,  # type: ignore[arg-type]
                entries=selection,
                method=method,
                rtol=rtol,
                atol=atol,
                directions=directions,
                seed=seed,
                top=top,
                progress=progress,
                extra_settings=settings,
            )
        else:
            report = run_check(
                subject.models,
                subject.X,
                subject.W,
                model_info=subject.info,
                sources=subject.sources,
                wrt=matrices,  # type: ignore[arg-type]
                entries=selection,
                method=method,
                delta=delta,
                rtol=rtol,
                atol=atol,
                details=details,
                top=top,
                reference=reference_gradients,
                progress=progress,
                extra_settings={**settings, "mode": "full", "reference": reference},
            )
    finally:
        progress.close()
    return report


def _spec_text(spec: tuple[str, Any]) -> str:
    kind, value = spec
    if kind == "all":
        return "all"
    if kind == "random":
        return f"random:{value}"
    return ";".join(f"{i},{j}" for i, j in value)


@cli.command()
@input_options
@tolerance_options
@click.option(
    "--wrt",
    type=click.Choice(["X", "W"]),
    default="X",
    show_default=True,
    help="The matrix whose entry is perturbed.",
)
@click.option(
    "--entry",
    "entries",
    type=IndexPair(),
    multiple=True,
    help="Entry I,J to perturb (zero-based; repeatable). Default: 0,0.",
)
@click.option(
    "--delta",
    type=PositiveFloat(),
    default=1e-4,
    show_default=True,
    help="How much to add to the entry.",
)
@output_options
def perturb(
    x_path: str | None,
    w_path: str | None,
    model_spec: str,
    dtype: str,
    method: str,
    rtol: float | None,
    atol: float | None,
    wrt: str,
    entries: tuple[tuple[int, int], ...],
    delta: float,
    output_format: str,
    output_path: Path | None,
    debug: bool,
) -> int:
    """The seed's experiment: add delta to one entry and compare the change in f
    with the change the gradient predicts.

    The verdict is not a fixed tolerance: the difference of a correct gradient is
    the O(delta^2) remainder, estimated from f(x - delta) too, plus round-off.

    \b
    Examples:
      gradcheck perturb --entry 0,0 --delta 1e-4
      gradcheck perturb --wrt W --entry 2,1 --entry 0,0
    """
    from gradcheck_cli.checks import perturb_check

    prepare_output(output_path)
    with user_prints_to_stderr():
        subject = load_subject(x_path, w_path, model_spec, dtype)
        chosen = entries or ((0, 0),)
        target = subject.X if wrt == "X" else subject.W
        for pair in chosen:
            check_entry(pair, target.shape, wrt, "--entry")
        report = perturb_check(
            subject.models[0],
            subject.X,
            subject.W,
            model_info=subject.info,
            sources=subject.sources,
            wrt=wrt,  # type: ignore[arg-type]
            entries=chosen,
            delta=delta,
            method=method,
            rtol=rtol,
            atol=atol,
        )

    def draw(console: Any) -> None:
        from gradcheck_cli.render import render_perturb

        render_perturb(report, console)

    return emit(report, output_format, output_path, draw)


@cli.command()
@input_options
@click.option(
    "--wrt",
    type=click.Choice(["X", "W", "both"]),
    default="X",
    show_default=True,
    help="The matrix the direction moves (both: a random direction in X and W).",
)
@click.option("--entry", type=IndexPair(), help="Move along one entry I,J (default 0,0).")
@click.option(
    "--direction",
    type=click.Choice(["entry", "random"]),
    default="entry",
    show_default=True,
    help="entry: along --entry; random: a seeded random direction.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--largest",
    type=PositiveFloat(),
    help="The largest delta [default: 1e-1 for float64, 1 for float32].",
)
@click.option(
    "--smallest",
    type=PositiveFloat(),
    help="The smallest delta; deltas go down by decades "
    "[default: 1e-10 for float64, 1e-4 for float32, whose round-off hides smaller ones].",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Also draw the log-log plot with matplotlib (plot extra).",
)
@output_options
def sweep(
    x_path: str | None,
    w_path: str | None,
    model_spec: str,
    dtype: str,
    wrt: str,
    entry: tuple[int, int] | None,
    direction: str,
    seed: int,
    largest: float | None,
    smallest: float | None,
    plot_path: Path | None,
    output_format: str,
    output_path: Path | None,
    debug: bool,
) -> int:
    """The Taylor test: |f(x + d v) - f(x) - d <g, v>| over decades of d.

    A correct gradient leaves an O(d^2) residual (slope 2 on log-log axes);
    a wrong one an O(d) residual (slope 1, exit 1).

    \b
    Examples:
      gradcheck sweep --entry 0,0
      gradcheck sweep --direction random --wrt both --seed 3 --plot taylor.png
    """
    import numpy as np

    from gradcheck_cli.checks import sweep_check
    from gradcheck_cli.errors import InputError

    if direction == "random" and entry is not None:
        raise click.UsageError("use just one of --entry or --direction random")
    if direction == "entry" and wrt == "both":
        raise click.UsageError("--wrt both needs --direction random (an entry lies in one matrix)")
    default_largest, default_smallest = SWEEP_RANGE[dtype]
    largest = default_largest if largest is None else largest
    smallest = default_smallest if smallest is None else smallest
    if smallest >= largest:
        raise click.BadParameter(f"must be below --largest {largest:g}", param_hint="--smallest")
    prepare_output(output_path)
    if plot_path is not None:
        from gradcheck_cli.plot import check_plot_available

        check_plot_available()
        prepare_output(plot_path, "--plot")
    decades = int(np.floor(np.log10(largest) - np.log10(smallest) + 1e-9))
    if decades > 30:
        raise InputError(f"--largest/--smallest span {decades} decades; at most 30")
    deltas = [largest / 10**k for k in range(decades + 1)]
    with user_prints_to_stderr():
        subject = load_subject(x_path, w_path, model_spec, dtype)
        matrices = ["X", "W"] if wrt == "both" else [wrt]
        vectors: dict[str, Array] = {}
        info: dict[str, Any]
        if direction == "entry":
            pair = entry or (0, 0)
            target = subject.X if wrt == "X" else subject.W
            check_entry(pair, target.shape, wrt, "--entry")
            unit = np.zeros_like(target)
            unit[pair] = 1
            vectors[wrt] = unit
            info = {"kind": "entry", "wrt": wrt, "index": list(pair)}
        else:
            rng = np.random.default_rng(seed)
            for name in matrices:
                shape = (subject.X if name == "X" else subject.W).shape
                vectors[name] = rng.standard_normal(shape).astype(subject.X.dtype)
            info = {"kind": "random", "wrt": wrt, "seed": seed}
        report = sweep_check(
            subject.models[0],
            subject.X,
            subject.W,
            model_info=subject.info,
            sources=subject.sources,
            direction=vectors,
            direction_info=info,
            deltas=deltas,
        )
    if plot_path is not None:
        from gradcheck_cli.plot import write_sweep_plot

        write_sweep_plot(report, plot_path)

    def draw(console: Any) -> None:
        from gradcheck_cli.render import render_sweep

        render_sweep(report, console)

    return emit(report, output_format, output_path, draw)


@cli.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
def models(output_format: str) -> int:
    """List the built-in models with their formulas and analytic gradients.

    \b
    Name a model as ACTIVATION-REDUCTION, e.g. --model tanh-mean.
    """
    from gradcheck_cli.models import builtin_model, builtin_model_names

    rows = []
    for name in builtin_model_names():
        model = builtin_model(name)
        rows.append(
            {
                "name": name,
                "formula": model.formula,
                "activation": model.activation.formula,
                "derivative": model.activation.derivative_formula,
                "gradient": model.gradient_formula,
                "complex_step": model.complex_analytic,
            }
        )
    if output_format == "json":
        from gradcheck_cli.output import to_json_text

        click.echo(to_json_text({"models": rows}))
    else:
        from gradcheck_cli.render import render_models, stdout_console

        render_models(rows, stdout_console())
    return EXIT_OK


@cli.command()
def schema() -> int:
    """Print the JSON Schema of the reports (--format json, --output).

    \b
    Example:
      gradcheck schema > gradcheck.schema.json
    """
    from importlib.resources import files

    click.echo(files("gradcheck_cli").joinpath("schema.json").read_text(encoding="utf-8"), nl=False)
    return EXIT_OK


def main() -> None:
    cli.main(prog_name="gradcheck")
