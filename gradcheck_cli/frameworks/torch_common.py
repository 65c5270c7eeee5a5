"""What the PyTorch adapter and its side-effect checks share: torch itself (imported by the
user's file, never here) and a context that keeps PyTorch's own warnings out of the run."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

NOT_WRITABLE = "The given NumPy array is not writable"


def torch_module() -> Any:
    """torch, as the user's file imported it."""
    return sys.modules["torch"]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """PyTorch's own deprecation warnings (torch.func imports torch.jit on first use) are not
    the user's: they stay out of the run (and out of a test run that makes warnings errors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", message=NOT_WRITABLE, category=UserWarning)
        yield
