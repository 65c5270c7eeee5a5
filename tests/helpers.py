"""Small helpers shared by the tests: the seed's two inputs as the core's named inputs, and the
built-in models' gradient back as the pair (dF/dX, dF/dW)."""

from __future__ import annotations

from gradcheck_cli.numerics.models import Array, Model


def xw(X: Array, W: Array) -> dict[str, Array]:
    """The inputs {"X": X, "W": W} that the core takes, for models of the seed's two matrices."""
    return {"X": X, "W": W}


def gradient_pair(model: Model, X: Array, W: Array) -> tuple[Array, Array]:
    """(dF/dX, dF/dW) of a model of X and W; both must be given."""
    gradient = model.gradient(xw(X, W))
    dX, dW = gradient["X"], gradient["W"]
    assert dX is not None
    assert dW is not None
    return dX, dW
