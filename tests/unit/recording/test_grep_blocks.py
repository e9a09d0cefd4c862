"""`sessions grep` a block at a time finds exactly what the line-by-line search finds.

The reference below is the search as it was: every event fed to the line
cutter, every line searched. Random recordings (escapes, OSC, carriage
returns, backspaces, emoji, lines longer than MAX_LINE, other event codes) and
patterns (anchors, word boundaries, ``\\A``, ``(?-m)``, empty matches), read in
blocks of 40 bytes to 1 MiB: the same matches, offsets and streams.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.evidence import grep
from gateway.recording.asciicast import read_events

PIECES = ["foo", "bar", " ", "\r\n", "\n", "\r", "\x1b[1m", "\x1b]0;title\x07", "\x1b]0;x", "\x07", "\x7f",
          "\b", "é", "😀", "\t", "\x00", "\u202e", "a" * 5000, "foobar", "\x1b(B"]  # fmt: skip
PATTERNS = ["foo", "^foo", "foo$", "^$", r"\bbar", r"bar\b", "o+b", "x*", "😀", r"\Afoo", r"foo\z", "(?-m)^foo",
            "f.o", "[^a]foo", "a{999}", "title", r"foo\s*bar", "^.*$"]  # fmt: skip


def _reference(path: Path, pattern: grep.Pattern, *, input_only: bool) -> list[tuple[float, str, str]]:
    streams = {"i": grep._Lines(), "o": grep._Lines()}
    out = []
    for stamp, code, data in read_events(path, "io"):
        if input_only and code != "i":
            continue
        out += [(b, grep.NAMES[code], line) for b, line in streams[code].feed(stamp, data, typed=code == "i")
                if pattern.search(line)]  # fmt: skip
    for code, lines in streams.items():
        out += [(b, grep.NAMES[code], line) for b, line in lines.rest() if pattern.search(line)]
    return out


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["o", "o", "i", "r"]), st.lists(st.sampled_from(PIECES), max_size=6).map("".join)
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, pattern=st.sampled_from(PATTERNS), input_only=st.booleans(),
       block=st.sampled_from([40, 200, 1 << 20]))  # fmt: skip
def test_blocks_find_exactly_what_lines_find(
    events: list[tuple[str, str]], pattern: str, input_only: bool, block: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(grep, "BLOCK", block)
        path = Path(tmp) / "r.cast"
        lines = [json.dumps({"version": 2, "width": 80, "height": 24})]
        lines += [json.dumps([k * 0.01, code, data]) for k, (code, data) in enumerate(events)]
        path.write_text("\n".join(lines) + "\n")
        compiled = grep.compile_pattern(pattern)
        found = list(grep.grep_recording(path, compiled, input_only=input_only))
        assert found == _reference(path, compiled, input_only=input_only)


def test_a_lone_surrogate_in_a_hand_made_recording_is_searched_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "r.cast"
    path.write_text('{"version": 2, "width": 80, "height": 24}\n[0.5, "o", "ab\\udc80cd needle\\r\\n"]\n')
    compiled = grep.compile_pattern("needle")
    found = list(grep.grep_recording(path, compiled, input_only=False))
    assert [(offset, stream) for offset, stream, _ in found] == [(0.5, "output")]
    lines_only = grep.Compiled(compiled.line, None)  # the line-by-line pass alone finds the same
    assert list(grep.grep_recording(path, lines_only, input_only=False)) == found
