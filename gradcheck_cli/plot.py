"""The Taylor test as a matplotlib figure (--plot FILE.png): optional, the plot extra.

matplotlib is imported only here and only when --plot is given.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from gradcheck_cli.errors import InputError
from gradcheck_cli.report import SweepReport

INSTALL_HINT = "pip install 'gradcheck[plot]' (or pip install matplotlib)"


def check_plot_available() -> None:
    """Fail before any work when --plot is asked for and matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}")


def write_sweep_plot(report: SweepReport, path: Path) -> None:
    """Residual against delta on log-log axes, with slope-1 and slope-2 guides; atomic write."""
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
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temporary, format="png")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    finally:
        plt.close(figure)
