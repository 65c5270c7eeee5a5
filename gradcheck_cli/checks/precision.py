"""A gradient computed in low precision, judged against float64 on the same quantised inputs.

Kernels that exist only in float32, float16 or bfloat16 cannot be checked by differencing
themselves: a step below the format's epsilon leaves differences of exactly zero, and one above
it truncates. Here the numerical side is a float64 forward (the model's own, when it follows
its inputs' dtype, or a reference the user names) at the inputs the low-precision run got,
differenced as any float64 check; the analytic side is the gradient the user's code computed
in the low precision. What the low precision may cost the analytic side is added to every
entry's error estimate (`judge`'s `rounding`), so it widens the tolerance and weighs in the
evidence like the difference's own error:

    rounding = u * max(|analytic|, the input's largest |analytic|, spread / u) + tiny

where u is the format's unit roundoff (eps / 2), tiny its smallest subnormal (the spacing of
its numbers near zero, which no code in it can resolve) and spread is how far the gradient
moves over a few runs at rounding-level perturbations (the inputs and what forward saved moved
by an ulp or two, the output's gradient scaled by a factor other than a power of two:
`subject.low_precision`): it measures the size of the terms the code sums where they cancel,
and how far the rounding of what forward saved carries. With SAFETY = 10 a correct kernel
passes (on softmax, layer norm and attention, at most 3 of these units were seen); an error of
1% in a float16 term shows wherever it is more than about 16 units of its entry; an entry whose
rounding alone is more than 1% of what is compared is inconclusive, never passed. What no
perturbation from outside shows, the rounding of terms that cancel inside the code (1 -
tanh(z)**2 where tanh(z) rounds to nearly 1), can still exceed the estimate: an entry beyond
its tolerance by less than UNRESOLVED units (at most 1%) of its size or its input's largest
gradient is inconclusive, not failed; beyond that it fails. Where the model's own code is the
reference, its float64 check came first and has already caught any error of the formula,
however small.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gradcheck_cli.checks.judgement import DOUBT, SAFETY
from gradcheck_cli.numerics.models import Array, Gradients
from gradcheck_cli.numerics.schemes import FloatArray

UNRESOLVED = 1024.0
"""Units of roundoff of an entry's size (or its input's largest gradient), up to 1% of it
(`DOUBT`), within which a disagreement beyond the rounding estimate is inconclusive, not
failed: the rounding of terms that cancel inside the code (1 - tanh(z)**2 where tanh(z) rounds
to nearly 1 loses three or four digits in float32) makes errors that no perturbation from
outside shows, of up to three digits' worth of cancellation allowed here. Beyond both, the
gradient is wrong: no rounding of that precision plausibly makes it."""

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
"""u = eps / 2 of each low precision: the largest relative error of one rounding."""

SMALLEST_SUBNORMAL = {"float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}
"""The spacing of each low precision's numbers near zero: what it cannot resolve at all. A
gradient of 6e-202 is 0 in float32, and no float32 code can say otherwise; the rounding
estimate of every entry is at least this much (a couple of roundings near zero)."""

ROUNDING_RULE = (
    "u x max(|analytic|, its input's largest |analytic|, spread / u) + the precision's "
    "smallest subnormal, spread: the largest change of the gradient over {dithers} runs at "
    "rounding-level perturbations"
)

UNRESOLVED_RULE = (
    "; no entry is vouched for: a tolerance of 10 x u = {tolerance:.1%} of what is compared "
    "cannot tell a 1% error from rounding, so an entry that agrees is inconclusive, one beyond "
    "its tolerance fails"
)
"""Said of a precision whose rounding resolves no 1% error (bfloat16), where nothing else
vouched for the formula."""

VERIFIED_RULE = (
    "; the formula was verified by the float64 check of the same code, so an entry that agrees "
    "within this precision's rounding (10 x u = {tolerance:.1%} of what is compared at the "
    "least) passes: a smaller error of this precision's own code path is below what it resolves"
)
"""Said of a precision whose rounding resolves no 1% error (bfloat16), where the same code
passed in float64 first."""


@dataclass(frozen=True)
class LowPrecision:
    """The gradient under test, computed in `dtype`, and what its rounding may be."""

    dtype: str
    unit: float
    """u of the precision the code computes in: the dtype's, or a coarser one its forward
    casts to (a float16 kernel run at --dtype float32)."""
    gradients: tuple[Gradients, ...]
    """Per model (cotangent): the low-precision gradient by input, as float64."""
    spread: tuple[Mapping[str, Array], ...]
    """Per model: how far each entry moved over the rounding-level perturbations."""
    dithers: int
    reference: str
    """What the numerical side differences: `the model's forward in float64`, `ref.py:NAME`."""
    verified_in_float64: bool = False
    """Whether the same code's gradient passed a float64 check first: its formula is right, and
    what remains to judge is whether this precision's run of it agrees within its rounding."""

    @property
    def rule(self) -> str:
        rule = ROUNDING_RULE.format(dithers=self.dithers)
        if not self.resolves:
            told = VERIFIED_RULE if self.verified_in_float64 else UNRESOLVED_RULE
            rule += told.format(tolerance=SAFETY * self.unit)
        return rule

    @property
    def vouches(self) -> bool:
        """Whether an entry that agrees within its rounding may pass: the precision resolves
        an error of DOUBT, or the formula was verified in float64 and the precision's run only
        has to agree with it as closely as its rounding allows."""
        return self.resolves or self.verified_in_float64

    @property
    def doubt(self) -> float:
        """The share of what is compared above which an entry's estimate cannot vouch for it:
        DOUBT (1%), or, where the formula was verified in float64, what this precision resolves
        at best (SAFETY x u, 3.9% for bfloat16): its run of the formula can show no more."""
        return max(DOUBT, SAFETY * self.unit) if self.verified_in_float64 else DOUBT

    @property
    def resolves(self) -> bool:
        """Whether a tolerance of this precision's rounding (SAFETY x u of what is compared, at
        the least) can resolve an error of DOUBT (1%): float16 and float32, not bfloat16."""
        return SAFETY * self.unit <= DOUBT

    def resolution(self, model: int, name: str) -> FloatArray:
        """The disagreement within which an entry beyond its rounding estimate is inconclusive
        rather than failed: UNRESOLVED units (at most 1%) of its size or its input's largest
        gradient."""
        analytic = np.abs(np.asarray(self.gradients[model][name], dtype=np.float64))
        largest = float(np.max(analytic[np.isfinite(analytic)], initial=0.0))
        share = min(UNRESOLVED * self.unit, DOUBT)
        return np.asarray(share * np.maximum(analytic, largest), np.float64)

    def rounding(self, model: int, name: str) -> FloatArray:
        """The rounding estimate of every entry of input `name` for model number `model`
        (0-based), in the input's shape."""
        analytic = np.abs(np.asarray(self.gradients[model][name], dtype=np.float64))
        largest = float(np.max(analytic[np.isfinite(analytic)], initial=0.0))
        spread = np.asarray(self.spread[model].get(name, 0.0), dtype=np.float64)
        size = np.maximum(np.maximum(analytic, largest), spread / self.unit)
        floor = SMALLEST_SUBNORMAL.get(self.dtype, 0.0)
        return np.asarray(self.unit * size + floor, dtype=np.float64)
