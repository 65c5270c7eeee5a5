"""Making outside text safe to print: file names, archive keys, CSV cells, a model's messages.

A file may be called `\\x1b[2J.csv`, and a model may raise an exception whose message holds
terminal escape sequences. Printed raw, such text clears the screen, hides the rest of the line
or fakes a second line; `printable` turns every character that can do that into a visible escape,
and leaves everything else (spaces, Korean text, maths symbols) as it is.

Pure: the standard library only.
"""

from __future__ import annotations

import re

# Characters that act on a terminal or on line splitting instead of showing a glyph:
# - C0 controls (ESC, BEL, backspace, newline, ...), DEL and the C1 controls (U+0080-U+009F,
#   whose U+009B is a one-character CSI on some terminals): the general category Cc;
# - U+2028 and U+2029, which str.splitlines() and some terminals take as line breaks;
# - the bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), which
#   reorder what follows them on screen ("Trojan Source");
# - lone surrogates, which os.fsdecode makes of undecodable bytes in file names and which a
#   UTF-8 stderr cannot encode at all (printing them would raise UnicodeEncodeError).
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ud800-\udfff]"
)
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_SURROGATE_ESCAPED_BYTES = range(0xDC80, 0xDD00)  # os.fsdecode's stand-ins for bytes 0x80-0xff


def printable(text: str) -> str:
    """`text` with every control character replaced by a visible escape such as `\\x1b`.

    Escapes follow Python's own spelling (`\\t`, `\\n`, `\\r`, `\\xNN`, `\\uNNNN`); an undecodable
    byte in a file name (a surrogate from os.fsdecode) is shown as the byte, `\\xff`. Backslashes
    are left alone, so a Windows path stays readable; the result is for display, not for parsing
    back.
    """
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    code = ord(character)
    if code in _SURROGATE_ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"
