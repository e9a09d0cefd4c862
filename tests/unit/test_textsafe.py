"""Recorded text for Charlotte's terminal: controls and bidi overrides become visible escapes."""

from __future__ import annotations

from gateway.textsafe import visible


def test_c0_c1_and_bidi_are_escaped_and_text_is_kept() -> None:
    assert (
        visible("a\x9b2J\u009d0;t\u009c \u202eevil\tok\x03é") == "a\\x9b2J\\x9d0;t\\x9c \\u202eevil\tok\\x03é"
    )
    assert visible("\x1b[31m") == "\\x1b[31m"
    assert visible("\u2066\u200f") == "\\u2066\\u200f"


def test_typed_keys_read_as_keys() -> None:
    from gateway.textsafe import keys  # noqa: PLC0415

    assert keys("ls\r\x03\x04\x1b[A\x7f") == "ls\n^C^DESC[A\\x7f"
