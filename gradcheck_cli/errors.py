"""Errors that mean "bad input", as opposed to "a gradient is wrong".

The CLI turns every `InputError` into a one-line message and exit code 2; the numerics and the
loaders raise them with a message that already names the file, line, entry or option at fault.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input: a file, an option value or a user's model that cannot be used as given."""


class UserCodeError(InputError):
    """The user's model file raised, or returned something of the wrong type, count or shape."""
