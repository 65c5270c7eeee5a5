"""gradcheck: tells you, with numbers, whether a hand-written gradient is right.

Importing the package stays cheap (no numpy, no rich) so that ``gradcheck --help`` and
``--version`` start fast; the Python API is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "assert_gradients_close",
    "assert_layer_gradients",
    "check_file",
    "check_function",
    "check_gradients",
    "check_hvp",
    "check_jvp",
    "check_layer",
]

if TYPE_CHECKING:
    from gradcheck_cli.api import (
        assert_gradients_close,
        assert_layer_gradients,
        check_file,
        check_function,
        check_gradients,
        check_hvp,
        check_jvp,
        check_layer,
    )


def __getattr__(name: str) -> Any:
    if name in __all__[1:]:
        from gradcheck_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'gradcheck_cli' has no attribute {name!r}")
