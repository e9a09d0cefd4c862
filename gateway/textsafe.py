"""Text from recordings made safe for Charlotte's terminal (and the HTML evidence).

C0 controls (but tab), DEL, C1 controls (``\\x9b`` is a one-byte CSI for many
terminals) and the bidirectional overrides and isolates (which reorder what a
line appears to say) are shown as visible escapes, never passed through.
"""

from __future__ import annotations

import re

#: bidi embeddings, overrides, isolates and marks
BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
UNSAFE = re.compile(f"[\x00-\x08\x0a-\x1f\x7f-\x9f{BIDI}]")
#: the same but for the line break: a table's text, checked whole
UNSAFE_LINE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{BIDI}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """*text* with every control character and bidi override written as an escape."""
    return UNSAFE.sub(_escape, text)


def _key(match: re.Match[str], enter: str) -> str:
    code = ord(match.group())
    if code == 0x1B:
        return "ESC"
    if code == 0x0D:
        return enter
    if code < 0x20:
        return "^" + chr(code + 0x40)
    return _escape(match)


def keys(text: str, enter: str = "\n") -> str:
    """Typed input as a reader names the keys: ``^C``, ``^D``, ``ESC``, ``\x7f``; Enter as *enter*."""
    return UNSAFE.sub(lambda m: _key(m, enter), text.replace("\r\n", "\r"))
