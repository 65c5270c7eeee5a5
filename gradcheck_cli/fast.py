"""--mode fast: check random directions instead of every entry, then localise what is wrong.

A full check of a black-box model costs a few forward passes per entry. One directional
difference (f(x + h v) - f(x - h v)) / 2h against <g, v> costs a few forward passes in all, and
for a random v it disagrees, almost surely, as soon as any entry of g is wrong. So: test a few
random directions over every selected entry; if one fails, bisect. A block of entries is tested
with a fresh random direction restricted to it; failing blocks are halved until they are small
enough to check entry by entry. Each wrong entry costs O(log N) directional checks.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.checks import (
    ANALYTIC_RTOL_ULPS,
    SAFETY,
    Tolerance,
    Verdicts,
    assemble_run_report,
    check_matrix,
    resolve_scheme,
    select_entries,
    validate_gradient,
)
from gradcheck_cli.differences import (
    Scheme,
    combine_differences,
    default_steps,
    machine_epsilon,
    richardson_offsets,
)
from gradcheck_cli.models import Array, Model, Wrt
from gradcheck_cli.report import DirectionCheck, MatrixSummary, ModelInfo, RunReport

DEFAULT_DIRECTIONS = 4
"""Random directions over all selected entries. One already catches a wrong entry almost
surely; a few more guard against an unlucky cancellation."""

LEAF_SIZE = 8
"""Blocks this small are checked entry by entry rather than bisected further."""

LOCALISE_LIMIT = 20
"""Stop localising after this many wrong entries: a gradient wrong everywhere would otherwise
cost more than the full check. The report says the count is a lower bound."""

Block = dict[Wrt, NDArray[np.intp]]


def fast_check(
    model: Model | Sequence[Model],
    X: Array,
    W: Array,
    *,
    model_info: ModelInfo | None = None,
    sources: Mapping[str, str] | None = None,
    wrt: Sequence[Wrt] = ("X", "W"),
    entries: Mapping[str, NDArray[np.intp]] | None = None,
    method: str = "central",
    rtol: float | None = None,
    atol: float | None = None,
    directions: int = DEFAULT_DIRECTIONS,
    seed: int = 0,
    top: int = 10,
    progress: Callable[[float, int], None] | None = None,
    extra_settings: Mapping[str, object] | None = None,
) -> RunReport:
    """Directional checks, then bisection to the wrong entries when a direction fails."""
    models = [model] if isinstance(model, Model) else list(model)
    scheme = resolve_scheme(method, models[0])
    tolerance = Tolerance.resolve(X.dtype, rtol, atol)
    everything: Block = select_entries(X, W, wrt, entries)
    rng = np.random.default_rng(seed)
    f0 = float(np.real(models[0].value(X, W)))
    found: list[tuple[str, int | None, NDArray[np.intp], Verdicts]] = []
    checks: list[DirectionCheck] = []
    total_steps = len(models) * directions
    done = 0
    for number, each in enumerate(models, start=1):
        label = number if len(models) > 1 else None
        f_each = f0 if number == 1 else float(np.real(each.value(X, W)))
        gradients = dict(zip(("X", "W"), validate_gradient(each, X, W), strict=True))
        probe = _Prober(each, X, W, gradients, scheme, tolerance, f_each, rng, label)
        for _ in range(directions):
            top_check = probe.direction(everything, depth=0)
            checks.append(top_check)
            if not top_check.passed:
                localised, trail = probe.localise(everything, limit=LOCALISE_LIMIT)
                found.extend(localised)
                checks.extend(trail)
                break  # the bisection has looked at every entry already
            done += 1
            if progress is not None:
                progress(done, total_steps)

    # Individually checked entries (leaves of the bisection) become the report's checks.
    report = assemble_run_report(
        models[0],
        model_info,
        sources or {},
        X,
        W,
        scheme,
        None,
        tolerance,
        f0,
        found,
        details="all",
        top=top,
        reference=None,
        extra={
            "mode": "fast",
            "directions": directions,
            "localise_limit": LOCALISE_LIMIT,
            **(extra_settings or {}),
        },
    )
    # Entries covered by the directions, with the error figures of those checked one by one.
    nothing = MatrixSummary(0, 0, 0, 0.0, None, None, 0)
    summary: dict[str, MatrixSummary] = {
        name: dataclasses.replace(report.summary.get(name, nothing), entries=int(flat.size))
        for name, flat in everything.items()
    }
    return dataclasses.replace(report, summary=summary, directions=tuple(checks), omitted=0)


class _Prober:
    """Directional checks of one model at (X, W), and the bisection that localises failures."""

    def __init__(
        self,
        model: Model,
        X: Array,
        W: Array,
        gradients: dict[str, Array],
        scheme: Scheme,
        tolerance: Tolerance,
        f0: float,
        rng: np.random.Generator,
        cotangent: int | None,
    ) -> None:
        self.model, self.X, self.W = model, X, W
        self.gradients = gradients
        self.scheme, self.tolerance, self.f0 = scheme, tolerance, f0
        self.rng = rng
        self.cotangent = cotangent
        self.eps = machine_epsilon(X.dtype)
        self.offsets, self.at_h, self.at_2h = richardson_offsets(scheme)

    def direction(self, block: Block, depth: int) -> DirectionCheck:
        """Compare (f(x + h v) - ...) / h with <g, v> for a fresh random v on `block`."""
        # C-ordered zeros, so ravel() is a view that the assignment below writes through.
        vectors = {
            name: np.zeros((self.X if name == "X" else self.W).shape, dtype=self.X.dtype)
            for name in ("X", "W")
        }
        for name, flat in block.items():
            vectors[name].ravel()[flat] = self.rng.standard_normal(flat.size)
        v_max = max(float(np.max(np.abs(v), initial=0.0)) for v in vectors.values())
        moved = [(self.X if n == "X" else self.W).ravel()[f] for n, f in block.items()]
        x_max = max(float(np.max(np.abs(m), initial=0.0)) for m in moved)
        # The textbook step for the largest entry, shrunk so no entry moves further than that.
        step = float(default_steps(self.scheme, np.asarray([x_max], dtype=self.X.dtype))[0])
        step /= max(v_max, 1e-300)
        g_dot_v = sum(float(np.sum(self.gradients[n] * vectors[n])) for n in vectors)
        g_abs_v = sum(float(np.sum(np.abs(self.gradients[n] * vectors[n]))) for n in vectors)

        working = np.result_type(self.X.dtype, np.complex64) if self.scheme.imaginary else None
        diffs = np.empty((1, len(self.offsets)), dtype=working or np.float64)
        magnitude = abs(self.f0)
        with np.errstate(all="ignore"):
            for k, offset in enumerate(self.offsets):
                shift = offset * step
                moved_X = self.X + shift * vectors["X"]
                moved_W = self.W + shift * vectors["W"]
                value = self.model.value(moved_X, moved_W)
                diffs[0, k] = value - self.f0
                magnitude = max(magnitude, abs(value))
        steps = np.asarray([step])
        at_h = float(combine_differences(self.scheme, diffs, self.at_h, steps)[0])
        at_2h = float(combine_differences(self.scheme, diffs, self.at_2h, 2 * steps)[0])
        truncation = abs(at_2h - at_h) / (2.0**self.scheme.order - 1.0)
        if self.scheme.imaginary:
            roundoff = 4 * self.eps * abs(at_h)
        else:
            weight_sum = float(sum(abs(w) for w in self.scheme.weights))
            roundoff = 4 * self.eps * magnitude * weight_sum / step
        estimate = truncation + roundoff
        # <g, v> is a sum of many products: allow for its rounding in proportion to sum |g v|.
        tol = self.tolerance.atol + self.tolerance.rtol * abs(at_h)
        tol += ANALYTIC_RTOL_ULPS * self.eps * g_abs_v
        if self.tolerance.mode == "estimate":
            tol += SAFETY * estimate
        error = abs(at_h - g_dot_v)
        names = list(block)
        return DirectionCheck(
            wrt=names[0] if len(names) == 1 else "both",
            entries=int(sum(f.size for f in block.values())),
            depth=depth,
            analytic=g_dot_v,
            numerical=at_h,
            abs_error=error,
            error_estimate=estimate,
            tolerance=tol,
            step=step,
            passed=bool(np.isfinite(at_h) and error <= tol),
            cotangent=self.cotangent,
        )

    def localise(
        self, block: Block, *, limit: int
    ) -> tuple[list[tuple[str, int | None, NDArray[np.intp], Verdicts]], list[DirectionCheck]]:
        """Depth-first bisection of a failing block down to entries, up to `limit` wrong ones."""
        leaves: list[tuple[str, int | None, NDArray[np.intp], Verdicts]] = []
        trail: list[DirectionCheck] = []
        wrong = 0
        # Split by matrix first: each matrix's entries are bisected on their own.
        stack: list[tuple[Wrt, NDArray[np.intp], int]] = [
            (name, flat, 1) for name, flat in reversed(list(block.items())) if flat.size
        ]
        while stack and wrong < limit:
            name, flat, depth = stack.pop()
            if flat.size <= LEAF_SIZE:
                verdicts = check_matrix(
                    self.model,
                    self.X,
                    self.W,
                    name,
                    flat,
                    self.gradients[name],
                    self.scheme,
                    None,
                    self.tolerance,
                    self.f0,
                    structured=True,
                    progress=None,
                )
                leaves.append((name, self.cotangent, flat, verdicts))
                wrong += int(np.count_nonzero(~verdicts.passed))
                continue
            check = self.direction({name: flat}, depth)
            trail.append(check)
            if not check.passed:
                half = flat.size // 2
                stack.append((name, flat[half:], depth + 1))
                stack.append((name, flat[:half], depth + 1))
        return leaves, trail
