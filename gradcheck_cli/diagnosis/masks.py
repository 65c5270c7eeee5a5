"""A mask forgotten, inverted or applied where none belongs: the analytic gradient is non-zero
where the numerical one is zero (a ReLU's, max-pool's or dropout's mask not applied), zero where
it is not (a mask applied where none belongs), or both (the mask inverted), and the rest agrees;
or one factor where an input is positive and another where it is not (a leaky ReLU's slopes
turned around).
When the set is a sign pattern of an input of the same shape (x > 0, x < 0), that input is
named: its sign is the mask the backward should have used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck_cli.diagnosis.fitting import (
    FIT_SLACK,
    INFORMATIVE,
    BoolArray,
    CheckedNumbers,
    least_squares_factor,
    noise_weights,
    pattern_fit,
    scaled_norm,
)
from gradcheck_cli.diagnosis.result import Diagnosis, covered_entries
from gradcheck_cli.diagnosis.wording import checked_entries, format_number, rest_agrees

AGREEMENT = 0.95
"""A sign pattern of an input names the mask when it agrees with the failing set on at least
95% of the entries that tell (a mask's boundary, x exactly 0, may go either way)."""


def masked(numbers: CheckedNumbers) -> Diagnosis | None:
    """Every failing entry has analytic ~ 0 or numerical ~ 0 (not both): a mask's pattern."""
    failing = numbers.failing
    count = int(failing.sum())
    if count < 2:
        return None
    near_zero = FIT_SLACK * numbers.noise
    numerical_zero = np.abs(numbers.numerical) <= near_zero
    analytic_zero = np.abs(numbers.analytic) <= near_zero
    extra = failing & numerical_zero & ~analytic_zero
    missing = failing & analytic_zero & ~numerical_zero
    if np.any(failing & ~(extra | missing)):
        return None
    if extra.any() and extra.sum() < AGREEMENT * (numerical_zero & numbers.comparable).sum():
        # A mask not applied lets the gradient through wherever it should be 0: a few stray
        # non-zeros among many zeros are errors, not a mask.
        return None
    sign = _sign_pattern(numbers, extra, missing)
    if not extra.any() and sign is None:
        return None  # zeros alone, on no input's sign pattern: the `zero` pattern's to say
    if extra.any() and missing.any():
        mask = "inverted"
        what = "analytic is non-zero where numerical is 0, and 0 where it is not"
    elif extra.any():
        mask = "forgotten"
        what = "analytic is non-zero exactly where numerical is 0"
    else:
        mask = "extra"
        what = "analytic is 0 where numerical is not"
    parameters: dict[str, Any] = {
        "mask": mask,
        "extra": int(extra.sum()),
        "missing": int(missing.sum()),
    }
    where, hint = "", _HINTS[mask]
    if sign is not None:
        name, positive = sign
        parameters["input"] = name
        parameters["sign"] = "positive" if positive else "negative"
        on, off = (f"{name} > 0", f"{name} <= 0") if positive else (f"{name} < 0", f"{name} >= 0")
        where = f" (where {off})" if mask != "inverted" else f" (the mask {on} turned around)"
        hint = {
            "forgotten": f"the mask {on} (a ReLU's, a dropout's) not applied?",
            "inverted": f"the mask {on} inverted ({off} used)?",
            "extra": f"a mask {on} applied where none belongs?",
        }[mask]
    wrt = numbers.wrt
    checked = int(numbers.comparable.sum())
    description = f"{count} of {checked_entries(numbers, checked)}"
    rest = f"; {rest_agrees(numbers)}" if count < checked else ""
    left = np.where(failing, 0.0, numbers.error)
    disagreement = scaled_norm(numbers.error[numbers.comparable])
    return Diagnosis(
        wrt=wrt,
        kind="masked",
        message=f"{what}, on {description}{where}{rest} — {hint}",
        parameters=parameters,
        entries=covered_entries(failing, failing, description),
        fit=scaled_norm(left[numbers.comparable]) / disagreement,
    )


def factor_by_sign(numbers: CheckedNumbers) -> Diagnosis | None:
    """analytic = c1 × numerical where an input is positive and c2 × numerical where it is not
    (c1 != c2): a leaky ReLU's slopes swapped, a mask turned around between two slopes."""
    failing = numbers.failing
    if int(failing.sum()) < 2:
        return None
    n, a = numbers.numerical, numbers.analytic
    informative = numbers.comparable & (np.abs(n) > INFORMATIVE * numbers.noise)
    for name, values in _same_shaped_values(numbers):
        on = np.asarray(values, dtype=np.float64) > 0
        factors = []
        for side in (on, ~on):
            inside = informative & side
            if int(inside.sum()) < 2:
                break
            weights = noise_weights(numbers, inside)
            factor = least_squares_factor(weights, a, n)
            if factor is None:
                break
            factors.append(factor)
        if len(factors) < 2 or abs(factors[0] - factors[1]) <= 0.1 * max(map(abs, factors)):
            continue
        predicted = np.where(on, factors[0] * n, factors[1] * n)
        allowance = np.maximum(1.0, np.abs(np.where(on, factors[0], factors[1]))) * numbers.noise
        fit = pattern_fit(numbers, predicted, allowance, numbers.comparable)
        if fit is None:
            continue
        wrt = numbers.wrt
        count = int(numbers.comparable.sum())
        description = checked_entries(numbers, count, every=True)
        first, second = (format_number(f) for f in factors)
        return Diagnosis(
            wrt=wrt,
            kind="masked",
            message=(
                f"analytic = {first} × numerical where {name} > 0 and {second} × numerical "
                f"where {name} <= 0, on {description} — a mask's two slopes turned around "
                f"(the mask {name} > 0 inverted)?"
            ),
            parameters={
                "mask": "by-sign",
                "input": name,
                "factors": {"positive": factors[0], "other": factors[1]},
            },
            entries=covered_entries(failing, numbers.comparable, description),
            fit=fit,
        )
    return None


def _same_shaped_values(numbers: CheckedNumbers) -> list[tuple[str, Any]]:
    """The inputs a mask may be a sign pattern of: the checked one first, then the others of
    its shape."""
    candidates: list[tuple[str, Any]] = []
    if numbers.values is not None:
        candidates.append((numbers.wrt, numbers.values))
    for name, values in numbers.context.values.items():
        if name != numbers.wrt and np.shape(values) == numbers.shape:
            candidates.append((name, values))
    return candidates


_HINTS = {
    "forgotten": "a mask (a ReLU's, max-pool's, dropout's) not applied?",
    "inverted": "a mask inverted (> where < was meant)?",
    "extra": "a mask applied where none belongs?",
}


def _sign_pattern(
    numbers: CheckedNumbers, extra: BoolArray, missing: BoolArray
) -> tuple[str, bool] | None:
    """The input (the checked one first) whose sign is the mask: (its name, True for x > 0).

    With the mask on = (x > 0): a forgotten mask fails where it is off and the gradient flows
    (`extra`: analytic non-zero there); an inverted one also where it is on and the true
    gradient flows (`missing`); a mask applied where none belongs zeroes the entries where it
    is off (`missing` alone)."""
    comparable = numbers.comparable
    near_zero = FIT_SLACK * numbers.noise
    analytic_flows = comparable & (np.abs(numbers.analytic) > near_zero)
    numerical_flows = comparable & (np.abs(numbers.numerical) > near_zero)
    for name, values in _same_shaped_values(numbers):
        array = np.asarray(values, dtype=np.float64)
        for positive in (True, False):
            on = array > 0 if positive else array < 0
            if extra.any():
                if not _agree(extra, ~on & analytic_flows, comparable):
                    continue
                if missing.any() and not _agree(missing, on & numerical_flows, comparable):
                    continue
                return name, positive
            if _agree(missing, ~on & numerical_flows, comparable):
                return name, positive
    return None


def _agree(found: BoolArray, expected: BoolArray, within: BoolArray) -> bool:
    """Whether two sets agree on at least AGREEMENT of their union (within the checked)."""
    union = int(((found | expected) & within).sum())
    if union == 0:
        return False
    return int((found & expected & within).sum()) >= AGREEMENT * union
