"""Run reports built from made-up verdicts, through the same assembly every check uses: the
summaries, listing, maps and diagnosis are the real ones, the numbers are whatever a test says.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradcheck_cli.checks.assembly import Batch, assemble_run_report
from gradcheck_cli.checks.judgement import Verdicts
from gradcheck_cli.numerics.models import builtin_model
from gradcheck_cli.report import FastSettings, InputInfo, ModelInfo, RunReport, RunSettings


def verdicts(
    analytic: ArrayLike,
    numerical: ArrayLike,
    tolerance: ArrayLike = 1e-6,
    reasons: Sequence[str] | None = None,
) -> Verdicts:
    """Entries that pass when |analytic - numerical| <= tolerance, with the reasons given (an
    "inconclusive" or passing reason other than ok only where the numbers agree)."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    t = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), a.shape).copy()
    error = np.abs(a - n)
    agree = error <= t
    given = list(reasons) if reasons is not None else ["ok"] * a.size
    final = [
        reason if ok or reason in ("mismatch", "kink-mismatch", "non-finite") else "mismatch"
        for reason, ok in zip(given, agree, strict=True)
    ]
    final = [
        ("mismatch" if not ok and r == "ok" else r) for r, ok in zip(final, agree, strict=True)
    ]
    passed = np.array([ok and r != "inconclusive" for r, ok in zip(final, agree, strict=True)])
    return Verdicts(
        analytic=a,
        numerical=n,
        abs_error=error,
        error_estimate=t / 10,
        tolerance=t,
        steps=np.full(a.shape, 1e-5),
        reasons=np.asarray(final, dtype=np.str_),
        passed=passed,
    )


def settings(
    *, mode: str = "full", cotangents: int | None = None, details: str = "auto", wrt: Sequence[str]
) -> RunSettings:
    return RunSettings(
        method="central",
        delta=None,
        step_rule="made up",
        rtol=1e-14,
        atol=0.0,
        tolerance="estimate",
        safety=10.0,
        dtype="float64",
        wrt=tuple(wrt),
        forward_eps=None,
        nondet_tol=0.0,
        details=details,
        mode=mode,
        cotangents=cotangents,
        fast=FastSettings(4, "five-point", 20) if mode == "fast" else None,
    )


def report(
    shapes: dict[str, tuple[int, ...]],
    batches: Sequence[Batch],
    *,
    mode: str = "full",
    cotangents: int | None = None,
    details: str = "auto",
    top: int = 10,
    lower_bounds: Sequence[str] = (),
) -> RunReport:
    """The run report of `batches` over inputs of these shapes (random values)."""
    rng = np.random.default_rng(0)
    inputs = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    infos = {name: InputInfo(name, "array", shape, "float64") for name, shape in shapes.items()}
    return assemble_run_report(
        builtin_model("sigmoid-sum"),
        inputs,
        list(batches),
        settings(mode=mode, cotangents=cotangents, details=details, wrt=list(shapes)),
        f0=1.0,
        about=ModelInfo("made-up", "f(...)", "api"),
        input_infos=infos,
        top=top,
        lower_bounds=lower_bounds,
    )


def flat(*indices: int) -> NDArray[np.intp]:
    return np.asarray(indices, dtype=np.intp)
