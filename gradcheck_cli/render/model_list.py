"""`gradcheck models` in the terminal: the built-in models, their formulas and derivatives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def render_models(rows: Sequence[dict[str, Any]], console: Console) -> None:
    """`rows` (name, formula, activation, derivative, complex_step) and how the gradients read."""
    table = Table(
        box=box.SIMPLE_HEAD,
        title="Built-in models: --model ACTIVATION-REDUCTION",
        title_justify="left",
    )
    for column in ("name", "f(X, W)", "activation", "derivative", "complex-step"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["formula"],
            row["activation"],
            row["derivative"],
            "yes" if row["complex_step"] else "no (kink)",
        )
    console.print(table)
    console.print(
        "Gradients: dF/dX = act'(X @ W) @ W.T,  dF/dW = X.T @ act'(X @ W)"
        "  (divided by n*m for mean)."
    )
