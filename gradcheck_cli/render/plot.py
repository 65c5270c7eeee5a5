"""Figures with matplotlib (--plot FILE.png): the Taylor test and the error map; optional,
the plot extra.

matplotlib is imported only here and only when a figure is asked for.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from gradcheck_cli.errors import InputError
from gradcheck_cli.report import SweepReport

INSTALL_HINT = "pip install 'gradcheck[plot]' (or pip install matplotlib)"


def check_plot_available() -> None:
    """Fail before any work when --plot is asked for and matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}")


def sweep_png(report: SweepReport) -> bytes:
    """Residual against delta on log-log axes, with slope-1 and slope-2 guides, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deltas = [r.delta for r in report.rows]
    residuals = [r.residual for r in report.rows]
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.loglog(deltas, residuals, "o-", label="|f(x+dv) - f(x) - d<g,v>|")
    fit = [r for r in report.rows if r.in_fit]
    if fit:
        anchor = fit[0]
        for slope, style in ((2, "--"), (1, ":")):
            guide = [anchor.residual * (d / anchor.delta) ** slope for d in deltas]
            axes.loglog(deltas, guide, style, color="grey", label=f"slope {slope}")
    fitted = "none" if report.slope is None else f"{report.slope:.3f}"
    axes.set_title(f"Taylor test, {report.model.name}: fitted slope {fitted} ({report.reason})")
    axes.set_xlabel("delta")
    axes.set_ylabel("residual")
    axes.legend()
    figure.tight_layout()
    return _png(figure)


MOST_PANELS = 12
"""Inputs drawn at most: the worst first. A thousand panels took 81 s and 8.5 MB for a check of
2.5 s, and nobody reads them; the title says how many were left out."""


def error_map_png(ratios: Mapping[str, ArrayLike], *, title: str) -> bytes:
    """One panel per input of |analytic - numerical| / tolerance, on a log colour scale centred
    on the pass/fail boundary 1 (marked on the colour bar); NaN (not checked) is blank, inf
    (nothing finite to compare) is drawn at the top of the scale with an x. N-D inputs are shown
    as (product of the leading axes, last axis), 1-D and 0-D as one row. At most MOST_PANELS
    inputs, those with the most failing entries (then the largest ratio) first. PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    panels = {name: _as_rows(ratio) for name, ratio in ratios.items()}
    if len(panels) > MOST_PANELS:
        worst = sorted(panels, key=lambda name: _badness(panels[name]), reverse=True)
        title += f" (the {MOST_PANELS} worst of {len(panels)} inputs)"
        panels = {name: panels[name] for name in worst[:MOST_PANELS]}
    decades = _decades(list(panels.values()))
    norm = LogNorm(vmin=10.0**-decades, vmax=10.0**decades)
    # Green agrees, red fails, yellow at the boundary; not checked (NaN) is transparent: blank.
    colours = plt.get_cmap("RdYlGn_r").with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    count = max(len(panels), 1)
    # Fixed margins rather than constrained layout: the same picture, several times faster.
    height = 1.2 + 2.4 * count
    figure, grid = plt.subplots(count, 1, figsize=(7, height), squeeze=False)
    bottom, top = 0.55 / height, 1 - 0.7 / height
    figure.subplots_adjust(left=0.13, right=0.8, bottom=bottom, top=top, hspace=0.75)
    image = None
    for axes, (name, rows) in zip(grid[:, 0], panels.items(), strict=True):
        shown = np.where(np.isinf(rows), norm.vmax, np.clip(rows, norm.vmin, norm.vmax))
        image = axes.imshow(
            np.ma.masked_invalid(shown),
            cmap=colours,
            norm=norm,
            aspect="auto",
            interpolation="nearest",
        )
        non_finite = np.argwhere(np.isinf(rows))
        if len(non_finite):
            axes.scatter(non_finite[:, 1], non_finite[:, 0], marker="x", color="black", s=12)
        shape = " × ".join(str(n) for n in np.shape(ratios[name])) or "0-D"
        failed = int(np.sum(rows > 1.0))
        checked = int(np.sum(~np.isnan(rows)))
        axes.set_title(f"{name} ({shape}): {failed} of {checked} checked entries fail")
        ndim = np.ndim(ratios[name])
        axes.set_xlabel("entry" if ndim <= 1 else "column" if ndim == 2 else "last axis")
        axes.set_ylabel("" if ndim <= 1 else "row" if ndim == 2 else "leading axes, flattened")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        if ndim <= 1:
            axes.set_yticks([])
        if ndim == 0:
            axes.set_xticks([0], [f"{name}[]"])
    if image is not None:
        label = "|analytic - numerical| / tolerance"
        bar = figure.colorbar(image, cax=figure.add_axes((0.84, bottom, 0.03, top - bottom)))
        bar.set_label(label, fontsize=8)
        # The pass/fail boundary: above the line an entry fails.
        bar.ax.axhline(1.0, color="black", linewidth=2)
    figure.suptitle(title)
    return _png(figure)


def _badness(rows: np.ndarray[Any, np.dtype[np.float64]]) -> tuple[int, float]:
    """(failing entries, largest ratio) of one panel: what orders the panels kept."""
    with np.errstate(invalid="ignore"):
        failing = int(np.sum(rows > 1.0))
    finite = rows[~np.isnan(rows)]
    return failing, float(np.max(finite, initial=0.0))


def _as_rows(ratio: ArrayLike) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A 2-D picture of any input: 0-D and 1-D as one row, N-D as (leading axes, last axis)."""
    values = np.abs(np.asarray(ratio, dtype=np.float64))
    if values.ndim <= 1:
        return values.reshape(1, -1)
    return values.reshape(-1, values.shape[-1])


def _decades(panels: list[np.ndarray[Any, np.dtype[np.float64]]]) -> int:
    """Decades each side of 1 the colour scale spans: enough for the finite ratios, 1 to 12."""
    finite = [p[np.isfinite(p) & (p > 0)] for p in panels]
    values = np.concatenate(finite) if finite else np.array([])
    if values.size == 0:
        return 1
    widest = float(np.max(np.abs(np.log10(values))))
    return int(min(max(math.ceil(widest), 1), 12))


def _png(figure: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed. The caller writes them with the run's
    other outputs (output.write_together): complete or untouched, all of them or none."""
    import matplotlib.pyplot as plt

    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()
