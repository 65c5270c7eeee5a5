"""printable(): outside text (file names, keys, a model's messages) made safe for a terminal."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradcheck_cli.sanitize import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2Jx.csv", "\\x1b[2Jx.csv"),
        ("bell\x07", "bell\\x07"),
        ("nul\x00byte", "nul\\x00byte"),
        ("a\tb\nc\rd", "a\\tb\\nc\\rd"),
        ("del\x7f", "del\\x7f"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("nel\x85", "nel\\x85"),
        ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
        ("abc\u202etxt.exe", "abc\\u202etxt.exe"),
        ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
    ],
    ids=["esc", "bel", "nul", "tab-lf-cr", "del", "c1-csi", "c1-nel", "u2028", "rlo", "isolate"],
)
def test_control_characters_become_visible_escapes(text: str, shown: str) -> None:
    """ESC, other C0/C1 controls, DEL, line separators and bidi controls are escaped."""
    assert printable(text) == shown


def test_ordinary_text_is_left_alone() -> None:
    """Spaces, the post's Korean text, maths symbols, accents and backslashes are unchanged."""
    text = r"경사 하강법: δ × ∂f/∂x ≤ 1e-4, café naïve C:\data\x.csv"
    assert printable(text) == text


def test_undecodable_file_name_bytes_show_as_the_bytes() -> None:
    """A non-UTF-8 byte in a file name (a surrogate after os.fsdecode) shows as \\xNN."""
    name = os.fsdecode(b"caf\xe9.csv")
    assert printable(name) == "caf\\xe9.csv"
    assert printable(name).encode("utf-8") == b"caf\\xe9.csv"  # printing it cannot fail


@given(st.text())
def test_result_is_one_line_without_controls(text: str) -> None:
    """Whatever the input, the result is one line with no control character and encodes."""
    shown = printable(text)
    assert len(shown.splitlines()) <= 1
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    shown.encode("utf-8")  # no lone surrogate left: this would raise UnicodeEncodeError


@given(st.text(st.characters(categories=["L", "N", "P", "S", "Zs"])))
def test_printable_text_is_unchanged(text: str) -> None:
    """Text of letters, numbers, punctuation, symbols and spaces passes through unchanged."""
    assert printable(text) == text
