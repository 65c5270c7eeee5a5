"""Outside text (file names, keys, a model's messages and names) made safe for a terminal:
printable() turns control characters into visible escapes, and the command line shows them so,
in its tables and in its one-line errors, never sending them raw."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import TANH_BACKWARD, TANH_MODEL, gradcheck, refusal
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


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory, the current one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- through the command line --------------------------------------------------------------------

ESCAPE = "\x1b[2J"
SHOWN = "\\x1b[2J"


def test_escapes_in_a_file_name_are_shown_not_sent(workdir: Path) -> None:
    """A CSV named ESC[2Jx.csv in the table, and a missing one in the error: shown as \\x1b."""
    (workdir / f"{ESCAPE}x.csv").write_text("1,2,3\n4,5,6\n7,8,9\n", encoding="utf-8")
    result = gradcheck("run", "--x", f"{ESCAPE}x.csv")
    assert result.exit_code == 0, result.stderr
    assert f"from {SHOWN}x.csv" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr
    line = refusal(gradcheck("run", "--x", f"{ESCAPE}gone.csv"))
    assert line == f"gradcheck: error: {SHOWN}gone.csv: no such file (given to --x)"


def test_escapes_in_a_models_exception_are_shown_not_sent(workdir: Path) -> None:
    """forward raising ValueError('ESC[2J...'): the one line shows \\x1b, the terminal gets none."""
    (workdir / "hostile.py").write_text(
        f"def forward(X, W):\n    raise ValueError('bad{SHOWN}thing')\n" + TANH_BACKWARD,
        encoding="utf-8",
    )
    result = gradcheck("run", "--model", "hostile.py")
    assert refusal(result) == (
        f"gradcheck: error: hostile.py:2: forward raised ValueError: bad{SHOWN}thing"
    )
    assert "\x1b" not in result.stderr


def test_escapes_in_a_models_name_are_shown_not_sent(workdir: Path) -> None:
    """A model file's `name` and `formula` holding ESC sequences: the table shows them escaped."""
    (workdir / "named.py").write_text(
        f"name = 'evil{SHOWN}name'\nformula = 'f{SHOWN}x'\n\n" + TANH_MODEL, encoding="utf-8"
    )
    for command in ("run", "perturb", "sweep"):
        result = gradcheck(command, "--model", "named.py")
        assert result.exit_code == 0, result.stderr
        assert f"evil{SHOWN}name" in result.stdout
        assert "\x1b" not in result.stdout + result.stderr
