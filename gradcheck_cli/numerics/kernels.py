"""Dense central differences for the built-in elementwise models, without cancellation.

For f = reduction(act(X @ W)) and an entry X[i, j] moved by +-h, only row i of G = X @ W moves,
by +-h W[j, :], so

    f(x + h e_ij) - f(x - h e_ij)
        = scale * sum_c [act(G[i, c] + h W[j, c]) - act(G[i, c] - h W[j, c])].

For these activations the bracket has a closed form that is a single quotient, exact in real
arithmetic and free of the cancellation a subtraction of two nearly equal values suffers:

    sigmoid:  sinh(d) / (cosh(a) + cosh(d))
    tanh:     2 sinh(2d) / (cosh(2a) + cosh(2d))
    relu:     sign(d) * clip(a + |d|, 0, 2|d|)
    identity: 2d

with a = G[i, c] and d = h W[j, c]. The quotient separates into a table over (i, c) and tables
over (j, c), so a whole matrix of entries is one broadcast add, one divide and one sum per
element: no transcendental function per element, and no forward pass per entry. Entries of W
are the same with the roles of X and W swapped (G's column c moves by h X[:, j]).

This is still a finite difference: the value computed is f(x + h e) - f(x - h e) itself, only
evaluated by an identity instead of by subtraction. Pure numpy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from gradcheck_cli.numerics.models import Array, ElementwiseModel, Wrt

FloatArray = NDArray[np.floating]
T = TypeVar("T")
R = TypeVar("R")

SUPPORTED = frozenset({"sigmoid", "tanh", "relu", "identity"})

BLOCK_ELEMENTS = 1 << 18
"""Elements of the (rows, entries, terms) block one thread works on: 2 MiB of float64, small
enough to stay in cache, large enough to amortise numpy's per-call overhead."""

THREADS = max(1, min(4, os.cpu_count() or 1))
"""numpy releases the GIL inside ufuncs, so blocks run in parallel on threads."""

MAX_SHIFT = 300.0
"""cosh overflows past ~710; beyond this |d| the quotient form is not used (see supports)."""


def supports(model: object, X: Array, W: Array) -> bool:
    """Whether the dense identity path applies at all: a built-in model with a closed-form
    bracket, on real float inputs (which entries it covers: `beyond_reach`)."""
    if not isinstance(model, ElementwiseModel) or model.activation.name not in SUPPORTED:
        return False
    return not (np.iscomplexobj(X) or np.iscomplexobj(W))


def beyond_reach(X: Array, W: Array, wrt: Wrt, max_step: float) -> NDArray[np.bool_]:
    """Per entry of `wrt`, whether its shift is too large for cosh: moving X[i, j] by h moves
    row i of X @ W by h W[j, :], moving W[j, c] moves column c by h X[:, j]. One huge entry
    of X (1e30) takes only the entries of W whose shifts it is part of off the dense path."""
    with np.errstate(over="ignore", invalid="ignore"):
        if wrt == "X":
            reach = 2 * max_step * np.max(np.abs(W), axis=1, initial=0.0)  # per row j of W
            far = ~(reach < MAX_SHIFT)
            return np.broadcast_to(far[None, :], X.shape)
        reach = 2 * max_step * np.max(np.abs(X), axis=0, initial=0.0)  # per column j of X
        far = ~(reach < MAX_SHIFT)
        return np.broadcast_to(far[:, None], W.shape)


def central_brackets(
    model: ElementwiseModel,
    X: Array,
    W: Array,
    G: Array,
    wrt: Wrt,
    steps: FloatArray,
    *,
    progress: Callable[[float], None] | None = None,
) -> FloatArray:
    """For every entry of `wrt` (steps has its shape): f(x + h e) - f(x - h e).
    Entries sharing a step are computed together."""
    # Orient the problem as out[p, q] = sum_r bracket(base[p, r], direction[q, r]), where the
    # entry (p, q) of `out` is the entry of `target` (transposed for W).
    # In float64 whatever the inputs' precision: cosh and sinh of a float32 overflow past 89,
    # far inside the brackets' reach (MAX_SHIFT), and inf / inf is no bracket.
    if wrt == "X":
        # entry X[i, j]: base row G[i, :], direction row W[j, :]
        base, direction = G.astype(np.float64), W.astype(np.float64)
        entry_steps = steps
    else:
        # entry W[j, c]: base row G[:, c], direction row X[:, j]; contiguous, for the tiles.
        base = np.ascontiguousarray(G.T, dtype=np.float64)
        direction = np.ascontiguousarray(X.T, dtype=np.float64)
        entry_steps = steps.T
    activation = model.activation.name
    scale = model.reduction.scale(G.size)
    differences = np.empty(entry_steps.shape, dtype=np.float64)
    with np.errstate(over="ignore"):  # cosh(a) = inf for |a| > 710 gives a bracket of 0: right
        prepared = _prepare_base(activation, base)
        if entry_steps.size and entry_steps.min() == entry_steps.max():
            # The common case, one step for every entry: no grouping, no gathering.
            tables = _prepare_direction(activation, direction, float(entry_steps.flat[0]))
            size = entry_steps.size

            def whole(fraction: float) -> None:
                if progress is not None:
                    progress(fraction * size)

            shared = _pair_sum(activation, prepared, tables, progress=whole) * scale
            return shared.T if wrt == "W" else shared
        for step in np.unique(entry_steps):
            in_group = entry_steps == step
            rows = np.flatnonzero(in_group.any(axis=1))
            tables = _prepare_direction(activation, direction, float(step))
            count = int(np.count_nonzero(in_group))

            def advance(fraction: float, count: int = count) -> None:
                if progress is not None:
                    progress(fraction * count)

            values = _pair_sum(activation, prepared[rows], tables, progress=advance)
            differences[rows] = np.where(in_group[rows], values, differences[rows])
    differences *= scale
    return differences.T if wrt == "W" else differences


def _third_derivative(activation: str, z: Array) -> Array:
    """act''' in stable forms built on act' (e / (1 + e)^2 style, never overflowing):
    sigmoid''' = s'(1 - 6 s'), tanh''' = 2 t'(2 - 3 t'); 0 for relu and identity."""
    if activation == "sigmoid":
        e = np.exp(-np.abs(z))
        first = e / (1.0 + e) ** 2
        return first * (1.0 - 6.0 * first)
    if activation == "tanh":
        e = np.exp(-2.0 * np.abs(z))
        first = 4.0 * e / (1.0 + e) ** 2
        return 2.0 * first * (2.0 - 3.0 * first)
    return np.zeros_like(z)


FOURTH_DERIVATIVE_BOUND = {
    "sigmoid": (1.0 / (3.0 * np.sqrt(3.0)), 2.0, 1.0),
    "tanh": (32.0 / (3.0 * np.sqrt(3.0)), 64.0, 2.0),
    "identity": (0.0, 0.0, 1.0),
}
"""(S, K, r) with |act''''(z)| <= S everywhere and |act''''(z)| <= K exp(-r |z|), for the
activations whose central truncation is bounded in closed form.

sigmoid'''' = s''(1 - 12 s') with |s''| = s'|1 - 2s| <= s', |s''| <= 1/(6 sqrt 3) and
|1 - 12 s'| <= 2; so |s''''| <= 1/(3 sqrt 3) = 0.192 (the true sup is 0.128) and
|s''''| <= 2 s' <= 2 exp(-|z|). tanh(z) = 2 sigmoid(2z) - 1, so tanh'''' = 2^5 sigmoid''''(2z).
relu is absent: across its kink no Taylor bound holds, so its truncation stays Richardson's."""


def truncation_bound(
    model: ElementwiseModel, X: Array, W: Array, G: Array, wrt: Wrt, steps: FloatArray
) -> FloatArray:
    """A proven bound on |D(h) - f'| per entry for central differences (exact arithmetic).

    Taylor's theorem with Lagrange remainders at x + h and x - h gives
        D(h) - f' = h^2/6 f'''(x) + h^3/48 (f''''(xi+) - f''''(xi-)),   |xi+- - x| <= h,
    so |D(h) - f'| <= h^2/6 |f'''(x)| + h^3/24 sup|f''''| over the segment. Along X[i, j],
    f''' = scale sum_c act'''(G[i, c]) W[j, c]^3, and on the segment each G[i, c] moves by at
    most t = max(h) max|W|, so
        |f''''| <= scale sum_c W[j, c]^4 min(S, K exp(r t - r |G[i, c]|))
    (along W[j, c], the same with X[:, j] over column c). The sums are matrix products, for all
    entries at once; the min is taken after summing, of the two bounds each summed whole. The
    first term is the truncation itself to leading order, so the bound is as tight as
    Richardson's estimate in the asymptotic range; the second keeps it an upper bound beyond,
    and the exponential keeps it small where the activation saturates.
    """
    activation = model.activation.name
    everywhere, factor, rate = FOURTH_DERIVATIVE_BOUND[activation]
    scale = model.reduction.scale(G.size)
    moving = X if wrt == "W" else W
    reach = float(np.max(steps, initial=0.0)) * float(np.max(np.abs(moving), initial=0.0))
    # Powers of huge entries overflow to inf: a bound of inf, which vouches for nothing.
    with np.errstate(over="ignore", invalid="ignore"):
        third = _third_derivative(activation, G) * scale
        # exp(r t - r |G|) <= 1 unless t > |G|; t < MAX_SHIFT keeps it finite (see supports).
        decay = np.exp(rate * (reach - np.abs(G)))
        # Products, not **: numpy's power for float exponents 3 and 4 is ~50x slower.
        square = moving * moving
        if wrt == "X":
            # Entry X[i, j] moves row i of G by W[j, :]: sums over c, shapes (n, k) and (1, k).
            along = third @ (square * moving).T
            local = decay @ (square * square).T
            overall = np.sum(square * square, axis=1)[None, :]
        else:
            # Entry W[j, c] moves column c of G by X[:, j]: sums over i, (k, m) and (k, 1).
            along = (square * moving).T @ third
            local = (square * square).T @ decay
            overall = np.sum(square * square, axis=0)[:, None]
        fourth = scale * np.minimum(everywhere * overall, factor * local)
        step_squared = steps * steps
        return np.asarray(step_squared / 6.0 * np.abs(along) + step_squared * steps / 24.0 * fourth)


def value_sizes(model: ElementwiseModel, G: Array, wrt: Wrt) -> FloatArray:
    """Per entry, sum over the touched row (X) or column (W) of G of |act(a)| + |a act'(a)|:
    the size of what a subtraction of f values would round by (broadcast to the entries)."""
    sizes = np.abs(model.activation.function(G)) + np.abs(G * model.activation.derivative(G))
    scale = model.reduction.scale(G.size)
    if wrt == "X":
        return np.asarray(np.sum(sizes, axis=1)[:, None] * scale)  # (n, 1): entry X[i, j]
    return np.asarray(np.sum(sizes, axis=0)[None, :] * scale)  # (1, m): entry W[j, c]


def term_sizes(model: ElementwiseModel, X: Array, W: Array, G: Array, wrt: Wrt) -> FloatArray:
    """Per entry, sum_c |act'(a_c)| (1 + |a_c|) |d_c / h|: the size of the brackets summed for
    one central difference, divided by 2h, with the (1 + |a|) that a's own rounding costs.
    A matrix product, so it is cheap next to the brackets."""
    weight = np.abs(model.activation.derivative(G)) * (1.0 + np.abs(G))
    scale = model.reduction.scale(G.size)
    if wrt == "X":
        return np.asarray(weight @ np.abs(W).T * scale)
    return np.asarray(np.abs(X).T @ weight * scale)


def _prepare_base(activation: str, base: Array) -> Array:
    if activation == "sigmoid":
        prepared: Array = np.cosh(base)
    elif activation == "tanh":
        prepared = np.cosh(2 * base)
    else:
        prepared = base
    return prepared


def _prepare_direction(activation: str, direction: Array, step: float) -> tuple[Array, Array]:
    d = step * direction
    if activation == "sigmoid":
        return np.sinh(d), np.cosh(d)
    if activation == "tanh":
        return 2 * np.sinh(2 * d), np.cosh(2 * d)
    if activation == "relu":
        return np.sign(d), np.abs(d)
    return d, d  # identity: the bracket is 2d whatever the base


_POOL: list[ThreadPoolExecutor] = []
_WORKER = threading.local()
_CANCELLED = threading.Event()


class Cancelled(Exception):
    """The run was stopped (a signal): the pool's tiles stop at their next boundary."""


def cancel() -> None:
    """Stop every tile not yet started, for good: the process is about to exit."""
    _CANCELLED.set()


def _pool() -> ThreadPoolExecutor:
    """One pool for the process: starting threads per call costs more than a small tile."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(THREADS, thread_name_prefix="gradcheck"))
    return _POOL[0]


def map_in_parallel(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """work(item) for each item on the pool's threads, whose own tiles then run serially.

    Coarse tasks (a whole matrix of entries each) keep both cores busy with less
    synchronisation than tiles do; and a worker must not wait on tiles queued behind itself.
    """
    if THREADS == 1 or len(items) < 2 or getattr(_WORKER, "serial", False):
        return [work(item) for item in items]

    def serially(item: T) -> R:
        _WORKER.serial = True
        try:
            return work(item)
        finally:
            _WORKER.serial = False

    return list(_pool().map(serially, items))


def _pair_sum(
    activation: str,
    base: Array,
    tables: tuple[Array, Array],
    *,
    progress: Callable[[float], None] | None,
) -> FloatArray:
    """out[p, q] = sum_r bracket(base[p, r], tables[.][q, r]), in cache-sized tiles of
    (p, q), on threads."""
    rows, terms = base.shape
    entries = tables[0].shape[0]
    out = np.empty((rows, entries), dtype=np.float64)
    if activation == "identity":
        out[:] = 2 * np.sum(tables[0], axis=1)[None, :]
        if progress is not None:
            progress(1.0)
        return out
    # A tile of tile_rows x tile_entries x terms elements fits BLOCK_ELEMENTS.
    tile_entries = max(1, min(entries, BLOCK_ELEMENTS // max(1, terms)))
    tile_rows = max(1, BLOCK_ELEMENTS // (tile_entries * max(1, terms)))
    local = threading.local()
    first, second = tables
    twice = 2 * second if activation == "relu" else second
    share = tile_entries / entries

    def work(tile: tuple[int, int]) -> None:
        if _CANCELLED.is_set():
            raise Cancelled
        row, entry = tile
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = np.empty((tile_rows, tile_entries, terms), dtype=np.float64)
        rows_here = slice(row, min(row + tile_rows, rows))
        entries_here = slice(entry, min(entry + tile_entries, entries))
        t = buffer[: rows_here.stop - row, : entries_here.stop - entry]
        a = base[rows_here, None, :]
        if activation == "relu":
            # sign(d) * clip(a + |d|, 0, 2|d|)
            np.add(a, second[None, entries_here], out=t)
            np.clip(t, 0.0, twice[None, entries_here], out=t)
            np.multiply(t, first[None, entries_here], out=t)
        else:
            # numerator / (cosh-like(a) + cosh-like(d))
            np.add(a, second[None, entries_here], out=t)
            np.divide(first[None, entries_here], t, out=t)
        t.sum(axis=-1, out=out[rows_here, entries_here])
        if progress is not None:
            progress((rows_here.stop - row) / rows * share)

    tiles = [(r, e) for r in range(0, rows, tile_rows) for e in range(0, entries, tile_entries)]
    if THREADS > 1 and len(tiles) > 1 and not getattr(_WORKER, "serial", False):
        for _ in _pool().map(work, tiles):
            pass
    else:
        for tile in tiles:
            work(tile)
    return out
