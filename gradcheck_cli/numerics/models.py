"""Models: scalar functions of named arrays with a hand-written gradient to check.

A model is anything with `value(inputs)` (the forward pass, a scalar) and `gradient(inputs)`
(the analytic gradient, an array per input name, or None for an input it gives no gradient
for), where `inputs` maps each input's name to an array of any shape. Nothing in the checks
knows how many inputs there are or what they are called.

The built-in family is f(X, W) = reduction(activation(X @ W)), over the seed's two names;
because the activation is elementwise and the reduction linear, perturbing one entry of X or W
changes one row or one column of X @ W only, which `ElementwiseModel.entry_shift_differences`
exploits (see builtin_paths.py): a fast path chosen by capability (isinstance), not by name.

Pure numpy: nothing here knows about click or rich.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError

Array = NDArray[Any]
"""A float or complex numpy array (complex for complex-step)."""
Wrt = Literal["X", "W"]
"""The built-in models' two inputs."""
Inputs = Mapping[str, Array]
"""Named arrays of any shape, in the model's parameter order."""
Gradients = dict[str, Array | None]
"""The analytic gradient per input name; None where the model gives none."""


@runtime_checkable
class Model(Protocol):
    """A scalar function of named arrays with an analytic gradient."""

    @property
    def name(self) -> str: ...

    @property
    def formula(self) -> str: ...

    @property
    def complex_analytic(self) -> bool:
        """True when `value` accepts complex input and is holomorphic (complex-step is exact)."""
        ...

    def value(self, inputs: Inputs) -> float | complex: ...

    def gradient(self, inputs: Inputs) -> Gradients: ...


DifferencesAtShifts = Callable[
    [Inputs, str, NDArray[np.intp], Array], tuple[Array, NDArray[np.floating]] | None
]
"""(inputs, wrt, flat_indices, shifts) -> differences and sizes, or None (see
`BatchedModel.differences_at_shifts`)."""


@runtime_checkable
class BatchedModel(Protocol):
    """A model that can evaluate f at many points in one call: the points of one input moved
    entry by entry (a framework's vmap over a stack of copies of the input). The in-process
    evaluator uses it where it can (evaluation.py), and checks each batch against one-at-a-time
    evaluation; nothing here knows which framework batches, or how."""

    @property
    def batches(self) -> bool:
        """Whether this model evaluates batches at all (a numpy model file does not)."""
        ...

    def differences_at_shifts(
        self, inputs: Inputs, wrt: str, flat_indices: NDArray[np.intp], shifts: Array
    ) -> tuple[Array, NDArray[np.floating]] | None:
        """f(x + shifts[b, k] e) - f(x) with e entry flat_indices[b] of inputs[wrt], for every
        b and k (shaped like `shifts`), with f(x) computed by the same operations as the moved
        points (in the same batch), so that their rounding is consistent; the moved entry is
        x + shift rounded to the input's dtype, as one-at-a-time evaluation moves it. And |f| at
        its largest per entry, f(x) included. None when the model cannot evaluate these points
        together: they are then evaluated one at a time."""
        ...


# --- activations -----------------------------------------------------------------------------
# Each works for real and, where `complex_analytic`, complex input. The stable forms only ever
# exponentiate a number whose real part is <= 0, so no input overflows or warns.


def _sigmoid(z: Array) -> Array:
    nonneg = z.real >= 0
    e = np.exp(np.where(nonneg, -z, z))  # |e| <= 1
    return np.where(nonneg, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_derivative(z: Array) -> Array:
    # s(1 - s) loses everything once s rounds to 1 (|z| > ~37); e / (1 + e)^2 does not.
    e = np.exp(-np.abs(z))
    return e / (1.0 + e) ** 2


def _sigmoid_second_derivative(z: Array) -> Array:
    # s'(1 - 2s), with 1 - 2s = -sign(z) (1 - e) / (1 + e), e = exp(-|z|): no overflow, no
    # cancellation of s against 1/2.
    e = np.exp(-np.abs(z))
    return -np.sign(z) * (1.0 - e) / (1.0 + e) * e / (1.0 + e) ** 2


def _tanh(z: Array) -> Array:
    return np.tanh(z)


def _tanh_derivative(z: Array) -> Array:
    # 1 - tanh^2 underflows to 0 early for the same reason; 4e / (1 + e)^2 with e = exp(-2|z|).
    e = np.exp(-2.0 * np.abs(z))
    return 4.0 * e / (1.0 + e) ** 2


def _tanh_second_derivative(z: Array) -> Array:
    return -2.0 * np.tanh(z) * _tanh_derivative(z)


def _softplus(z: Array) -> Array:
    nonneg = z.real >= 0
    e = np.exp(np.where(nonneg, -z, z))
    return np.where(nonneg, z, 0.0) + np.log1p(e)


def _relu(z: Array) -> Array:
    return np.maximum(z, 0.0)


def _relu_derivative(z: Array) -> Array:
    # At the kink we take 0, as PyTorch does; finite differences there see 1/2 (a kink).
    return (z > 0).astype(z.dtype)


def _zero(z: Array) -> Array:
    # relu and identity are piecewise linear: no curvature (relu's kink aside).
    return np.zeros_like(z)


def _identity(z: Array) -> Array:
    return z


def _identity_derivative(z: Array) -> Array:
    return np.ones_like(z)


@dataclass(frozen=True)
class Activation:
    name: str
    formula: str
    derivative_formula: str
    function: Callable[[Array], Array]
    derivative: Callable[[Array], Array]
    second_derivative: Callable[[Array], Array]
    complex_analytic: bool
    kinks: tuple[float, ...] = ()
    bend: float = 1.0
    """How far its slope changes across its bend, on the scale of 1 in z (1 for tanh and
    softplus, 1/4 for sigmoid; 0 for activations that do not bend): a difference whose shifts
    carry z over it can be off by up to this much times the weight (`step_limits`)."""


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "sigmoid",
            "sigmoid(z) = 1 / (1 + exp(-z))",
            "sigmoid(z) * (1 - sigmoid(z))",
            _sigmoid,
            _sigmoid_derivative,
            _sigmoid_second_derivative,
            complex_analytic=True,
            bend=0.25,
        ),
        Activation(
            "tanh",
            "tanh(z)",
            "1 - tanh(z)^2",
            _tanh,
            _tanh_derivative,
            _tanh_second_derivative,
            complex_analytic=True,
        ),
        Activation(
            "softplus",
            "softplus(z) = log(1 + exp(z))",
            "sigmoid(z)",
            _softplus,
            _sigmoid,
            _sigmoid_derivative,
            complex_analytic=True,
        ),
        Activation(
            "relu",
            "relu(z) = max(z, 0)",
            "1 if z > 0 else 0",
            _relu,
            _relu_derivative,
            _zero,
            complex_analytic=False,
            kinks=(0.0,),
            bend=0.0,
        ),
        Activation(
            "identity",
            "identity(z) = z",
            "1",
            _identity,
            _identity_derivative,
            _zero,
            complex_analytic=True,
            bend=0.0,
        ),
    )
}


@dataclass(frozen=True)
class Reduction:
    name: str
    """sum or mean: both linear, so f's change is the scaled change of the touched terms."""

    def scale(self, n_terms: int) -> float:
        return 1.0 if self.name == "sum" else 1.0 / n_terms


REDUCTIONS: dict[str, Reduction] = {r.name: r for r in (Reduction("sum"), Reduction("mean"))}


def touched_terms(
    X: Array, W: Array, G: Array, wrt: Wrt, rows: NDArray[np.intp], cols: NDArray[np.intp]
) -> tuple[Array, Array]:
    """For entries (rows[b], cols[b]) of X or W: the pre-activations each one moves, and how
    far per unit of its shift, (B, terms) each. X[i, j] moves row i of G = X @ W along row j
    of W; W[j, c] moves column c of G along column j of X."""
    if wrt == "X":
        return G[rows, :], W[cols, :]
    return G[:, cols].T, X[:, rows].T


@dataclass(frozen=True)
class ElementwiseModel:
    """f(X, W) = reduction(activation(X @ W)), with its closed-form gradient."""

    activation: Activation
    reduction: Reduction

    input_names: ClassVar[tuple[Wrt, Wrt]] = ("X", "W")
    """The two inputs, whose entries each move one row or column of X @ W."""

    @property
    def name(self) -> str:
        return f"{self.activation.name}-{self.reduction.name}"

    @property
    def formula(self) -> str:
        return f"{self.reduction.name}({self.activation.name}(X @ W))"

    @property
    def gradient_formula(self) -> str:
        d = f"{self.activation.name}'(X @ W)"
        if self.reduction.name == "mean":
            d = f"{d} / (n*m)"
        return f"dF/dX = {d} @ W.T;  dF/dW = X.T @ {d}"

    @property
    def complex_analytic(self) -> bool:
        return self.activation.complex_analytic

    @property
    def kinks(self) -> tuple[float, ...]:
        return self.activation.kinks

    def value(self, inputs: Inputs) -> float | complex:
        G = inputs["X"] @ inputs["W"]
        total = np.sum(self.activation.function(G)) * self.reduction.scale(G.size)
        return complex(total) if np.iscomplexobj(total) else float(total)

    def gradient(self, inputs: Inputs) -> Gradients:
        X, W = inputs["X"], inputs["W"]
        G = X @ W
        D = self.activation.derivative(G) * self.reduction.scale(G.size)
        return {"X": D @ W.T, "W": X.T @ D}

    def hessian_vector_product(self, inputs: Inputs, tangents: Inputs) -> Gradients:
        """H v in closed form. With G = X W, D = act'(G) s and dG = vX W + X vW (s the
        reduction's scale), the gradient (D W^T, X^T D) moves by
            d(dF/dX) = (act''(G) s * dG) W^T + D vW^T,   d(dF/dW) = X^T (act''(G) s * dG) + vX^T D.
        """
        X, W = inputs["X"], inputs["W"]
        vX = tangents.get("X", np.zeros_like(X))
        vW = tangents.get("W", np.zeros_like(W))
        G = X @ W
        scale = self.reduction.scale(G.size)
        D = self.activation.derivative(G) * scale
        moved = self.activation.second_derivative(G) * scale * (vX @ W + X @ vW)
        return {"X": moved @ W.T + D @ vW.T, "W": X.T @ moved + vX.T @ D}

    def jacobian_vector_product(self, inputs: Inputs, tangents: Inputs) -> float:
        """<grad f, v>: the directional derivative of the scalar f along the tangents."""
        gradient = self.gradient(inputs)
        return float(
            sum(np.sum(g * tangents[name]) for name, g in gradient.items() if name in tangents)
        )

    def entry_shift_differences(
        self,
        X: Array,
        W: Array,
        G: Array,
        wrt: Wrt,
        rows: NDArray[np.intp],
        cols: NDArray[np.intp],
        shifts: Array,
    ) -> tuple[Array, NDArray[np.floating], NDArray[np.floating]]:
        """f(x + shifts[b, k] * e_b) - f(x) for a chunk of entries b = (rows[b], cols[b]).

        Only the touched row (wrt X) or column (wrt W) of G = X @ W changes, so each difference
        costs O(m) or O(n) and sums only the terms that changed: no round-off from re-summing
        the unchanged ones. `shifts` is (B, K), real or complex (complex-step).

        Also returns, per entry, the two sizes the round-off budget needs (see `_roundoff_sizes`).
        """
        base, direction = touched_terms(X, W, G, wrt, rows, cols)
        act = self.activation.function
        base_values = act(base)
        scale = self.reduction.scale(G.size)
        out = np.empty(shifts.shape, dtype=np.result_type(base, shifts))
        first = base_values
        for k in range(shifts.shape[1]):
            changes = act(base + shifts[:, k, None] * direction) - base_values
            out[:, k] = np.sum(changes, axis=1) * scale
            if k == 0:
                first = changes
        values, terms = self._roundoff_sizes(base, base_values, first, shifts[:, 0], direction != 0)
        return out, values * scale, terms * scale

    def step_limits(
        self,
        X: Array,
        W: Array,
        wrt: Wrt,
        rows: NDArray[np.intp],
        cols: NDArray[np.intp],
        steps: NDArray[np.floating],
        z_step: float,
    ) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
        """Per entry, (the longest step that keeps a difference on the slope it measures, how
        far a difference at `steps` may be off for want of it); (inf, 0) where any step will do.

        Where `steps` move a pre-activation g_j an entry touches by more than a quarter of
        max(1, |g_j|) (a weight of 1e10 times a step of 1e-6), the difference spans the bend of
        a bending activation, or crosses it (tanh(9 +- 1e5) = +-1 on both sides), and no
        truncation estimate from such steps sees it: such a term can be off by up to the
        activation's `bend` times its weight |d_j|. The limit is the textbook step in g,
        `z_step` * max(1, |g_j|) / |d_j|, for the tightest such term."""
        nothing = np.full(steps.shape, np.inf), np.zeros(steps.shape)
        if not self.activation.bend:
            return nothing
        base, moved = touched_terms(X, W, X @ W, wrt, rows, cols)
        direction = np.abs(moved)
        room = np.maximum(1.0, np.abs(base.real))
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            leaving = (steps[:, None] * direction > 0.25 * room) & (direction > 0)
            limits = np.min(np.where(leaving, z_step * room / direction, np.inf), axis=1)
            risk = np.max(np.where(leaving, direction, 0.0), axis=1) * self.activation.bend
        risk = risk * self.reduction.scale(X.shape[0] * W.shape[1])
        return np.asarray(limits, dtype=np.float64), np.asarray(risk, dtype=np.float64)

    def _roundoff_sizes(
        self,
        base: Array,
        base_values: Array,
        changes: Array,
        shift: Array,
        moving: NDArray[np.bool_],
    ) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
        """Per entry: the size of what was differenced, and the size of the derivative's terms.

        values: sum_j |a(g_j)| + |g_j a'(g_j)| over the terms that move (d_j != 0). Each
        a(g_j) rounds by eps |a(g_j)|, and
        g_j + s d_j rounds by eps |g_j|, which moves a by eps |g_j a'(g_j)| (larger than the
        first where a saturates towards 0: sigmoid, softplus at g << 0). Summed in absolute value,
        not in quadrature: where the activation saturates, every change rounds the same way (to
        a multiple of ulp(a)), so the terms' errors need not be independent.
        terms: sum_j |a(g_j + s d_j) - a(g_j)| / |s|, i.e. sum_j |a'(g_j) d_j|: summing those
        (here and in the analytic gradient) rounds in proportion to it, which exceeds |f'| where
        the terms cancel.
        """
        complex_step = np.iscomplexobj(shift)
        # Complex-step reads the imaginary part only; the real part is rounding noise.
        moves = np.abs(changes.imag if complex_step else changes)
        # A change that underflows (a complex-step term of a saturated activation, a shift times
        # a tiny weight) keeps only an absolute accuracy of ~tiny: counting each term as at least
        # tiny / eps puts that into the eps-relative budget.
        info = np.finfo(base.dtype)
        moves = np.maximum(moves, float(info.tiny) / float(info.eps))
        terms = np.sum(np.where(moving, moves, 0.0), axis=1) / np.abs(shift).astype(np.float64)
        sizes = np.abs(base_values) + np.abs(base * self.activation.derivative(base))
        # A term whose direction is exactly 0 does not move: a(g + 0) - a(g) is exactly 0,
        # whatever the size of a(g), so it adds no rounding.
        return np.sum(np.where(moving, sizes, 0.0), axis=1), terms

    def kink_within(
        self,
        X: Array,
        W: Array,
        G: Array,
        wrt: Wrt,
        rows: NDArray[np.intp],
        cols: NDArray[np.intp],
        reach: NDArray[np.floating],
    ) -> NDArray[np.bool_]:
        """True where shifts up to +-reach carry a touched pre-activation over a kink."""
        if not self.kinks:
            return np.zeros(rows.shape, dtype=bool)
        base, direction = touched_terms(X, W, G, wrt, rows, cols)
        span = np.abs(direction) * reach[:, None]
        hit = np.zeros(base.shape, dtype=bool)
        for kink in self.kinks:
            hit |= np.abs(base.real - kink) <= span
        return np.asarray(np.any(hit, axis=1))


def builtin_model_names() -> list[str]:
    return [f"{a}-{r}" for a in ACTIVATIONS for r in REDUCTIONS]


def builtin_model(name: str) -> ElementwiseModel:
    """The built-in model called `activation-reduction`, e.g. sigmoid-sum or tanh-mean."""
    activation, _, reduction = name.partition("-")
    if activation not in ACTIVATIONS or reduction not in REDUCTIONS:
        known = ", ".join(builtin_model_names())
        raise InputError(
            f"unknown model {name!r}: expected one of {known}, or a path to a .py model file"
        )
    return ElementwiseModel(ACTIVATIONS[activation], REDUCTIONS[reduction])


@dataclass(frozen=True)
class ContractedModel:
    """A vector-valued model seen through one cotangent v: the scalar <forward(inputs), v>.

    Checking its gradient checks the user's vector-Jacobian product for that v.
    """

    name: str
    formula: str
    contracted: Callable[[Inputs], Array]
    """<forward(inputs), v> as a 0-d array."""
    vjp: Callable[[Inputs], Gradients]
    """The user's vector-Jacobian product for the same v."""
    number: int = 1
    """Which cotangent (1-based): reports tag the entries checked through it."""
    complex_analytic: bool = False
    vectors: tuple[Array, ...] = ()
    """The cotangent v, one array per output of forward."""
    contracted_at_shifts: DifferencesAtShifts | None = None
    """<forward, v> at many shifted points in one call, where forward batches (else None)."""
    step_scale: float | None = None
    """The size of f its default steps are balanced for, where the cotangents share batches:
    the smallest |<forward, v>| over them, so that they ask for the same points. The smallest:
    a first pass judges by round-off alone, and a step balanced for a larger f would be too long
    for this one (its truncation unaccounted); a shorter step only adds round-off, which each
    cotangent's own |f| accounts for. None: |f| at the inputs (a numpy model file's
    contractions keep steps of their own)."""

    def value(self, inputs: Inputs) -> float | complex:
        total = self.contracted(inputs)
        return complex(total) if np.iscomplexobj(total) else float(total)

    def gradient(self, inputs: Inputs) -> Gradients:
        return self.vjp(inputs)

    @property
    def batches(self) -> bool:
        return self.contracted_at_shifts is not None

    def differences_at_shifts(
        self, inputs: Inputs, wrt: str, flat_indices: NDArray[np.intp], shifts: Array
    ) -> tuple[Array, NDArray[np.floating]] | None:
        """<forward, v> at every shift of every entry, batched (`BatchedModel`), or None."""
        if self.contracted_at_shifts is None:
            return None
        return self.contracted_at_shifts(inputs, wrt, flat_indices, shifts)


def step_scale(model: Model, f0: float) -> float:
    """The size of f a black box's default steps balance round-off for: |f0|, or the one its
    cotangents share (`ContractedModel.step_scale`)."""
    if isinstance(model, ContractedModel) and model.step_scale is not None:
        return model.step_scale
    return abs(f0)


def batching(model: Model) -> BatchedModel | None:
    """The model, when it evaluates batches of points (`BatchedModel.batches`); else None."""
    if isinstance(model, BatchedModel) and model.batches:
        return model
    return None


def closed_form_model(model: Model, wrt: str) -> ElementwiseModel | None:
    """The model, when the differences along the entries of its input `wrt` have a closed form
    (a built-in model: moving one entry of X or W moves one row or column of X @ W); None for
    a black box, which is differenced by whole forward passes."""
    if isinstance(model, ElementwiseModel) and wrt in model.input_names:
        return model
    return None
