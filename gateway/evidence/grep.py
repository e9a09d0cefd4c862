"""``sessions grep PATTERN``: who typed or saw ``X``, and when, across every recording in range.

Each recording is read a block (1 MiB) at a time: each stream's text of the
block (typed input, output) is joined, cleaned as lines are, and searched
with one RE2 call in the pattern's multi-line form; only a block where that
finds something is cut into lines (escape sequences removed) and searched
line by line, so the matches are exactly the line-by-line search's, and
memory stays constant whatever the size of the recordings. A match names the session, its
start, principal, action and target, the offset in seconds into the
recording, the stream, and the line (controls and bidi overrides shown as
escapes, ``textsafe``).

The pattern is RE2 (``google-re2``): matching takes linear time whatever the
pattern, so ``(a*)*b`` cannot pin a core; RE2 refuses what it cannot do in
linear time (backreferences, lookaround) with a one-line error. A search
stops between two events once its *stop* event is set (the client left).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import re2  # type: ignore[import-untyped]  # google-re2 ships no stubs

from gateway.evidence import query
from gateway.textsafe import visible

MAX_PATTERN = 256
#: RE2's memory budget for one compiled pattern
MAX_PATTERN_MEMORY = 8 << 20
MAX_LINE = 4096
# CSI, OSC (ended by BEL or ST), other two-byte escapes, then any other control character but tab.
NEWLINES = re.compile(r"[\r\n]")
ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]"
)


@dataclass(frozen=True)
class Match:
    """One matching line."""

    session: str
    start: str
    principal: str
    action: str
    target: str
    offset: float
    stream: str
    line: str

    def text(self) -> str:
        """One line for the terminal."""
        where = f"{self.principal} {self.action} {self.target}".strip()
        start = self.start[:19].replace("T", " ")
        return f"{self.session}  {start}  {where}  +{self.offset:.3f}s  {self.stream}: {visible(self.line)}"

    def json(self) -> str:
        """One JSON object."""
        return json.dumps(asdict(self), sort_keys=True)


class Pattern(Protocol):
    """A compiled pattern: RE2's, or anything with ``search``."""

    def search(self, text: str, /) -> object:
        """A match, or None."""


class BlockPattern(Protocol):
    """The pattern's multi-line form, searched over a block's text in UTF-8."""

    def search(self, text: bytes, /) -> object:
        """A match, or None."""


class Compiled:
    """The user's pattern, for lines, and its multi-line form for whole blocks of text (or None).

    A line that matches is part of a block that matches the multi-line form
    (``^`` and ``$`` at every line end, the line's neighbours only a newline
    away), so a block the block form does not match holds no matching line.
    Patterns whose meaning is not the same inside a block (``\\A``, ``\\z``,
    a flag group that turns multi-line off) have no block form.
    """

    def __init__(self, line: Pattern, block: BlockPattern | None, source: str = "") -> None:
        self.line, self.block, self.source = line, block, source

    def search(self, text: str, /) -> object:
        """A match in one line, or None."""
        return self.line.search(text)


NO_BLOCK_FORM = re.compile(r"\\[Az]|\(\?[a-zA-Z]*-[a-zA-Z]*m")


def compile_pattern(pattern: str) -> Compiled:
    """The user's regular expression (RE2); QueryError if it is too long or RE2 refuses it."""
    if len(pattern) > MAX_PATTERN:
        raise query.QueryError(f"the pattern is longer than {MAX_PATTERN} characters")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_PATTERN_MEMORY
    try:
        compiled: Pattern = re2.compile(pattern, options)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else ""
        detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        why = "not a regular expression RE2 accepts (linear time: no backreferences or lookaround)"
        raise query.QueryError(f"{why}: {detail}") from None
    block: BlockPattern | None = None
    if not NO_BLOCK_FORM.search(pattern):
        try:
            block = re2.compile(f"(?m){pattern}", options)
        except re2.error:
            block = None
    return Compiled(compiled, block, pattern)


class _Lines:
    """One stream's text cut into lines (escapes removed), remembering when each line began."""

    def __init__(self) -> None:
        self.buffer = ""
        self.began = 0.0

    def feed(self, stamp: float, data: str, *, typed: bool) -> Iterator[tuple[float, str]]:
        if not self.buffer:
            self.began = stamp
        if not typed:  # output: split on line ends at C speed
            *complete, rest = NEWLINES.split(data)
            for part in complete:
                line = self.buffer + part
                if line:
                    yield self.began, ESCAPES.sub("", line)
                self.buffer, self.began = "", stamp
            self.buffer += rest
            if len(self.buffer) >= MAX_LINE:
                yield self.began, ESCAPES.sub("", self.buffer)
                self.buffer, self.began = "", stamp
            return
        for char in data:
            if char in "\r\n":
                if self.buffer:
                    yield self.began, ESCAPES.sub("", self.buffer)
                self.buffer, self.began = "", stamp
            elif typed and char in "\x7f\b":
                self.buffer = self.buffer[:-1]
            else:
                self.buffer += char
                if len(self.buffer) >= MAX_LINE:
                    yield self.began, ESCAPES.sub("", self.buffer)
                    self.buffer, self.began = "", stamp

    def rest(self) -> Iterator[tuple[float, str]]:
        if self.buffer:
            yield self.began, ESCAPES.sub("", self.buffer)


NEVER = threading.Event()


def grep_recording(
    path: Path, pattern: Pattern, *, input_only: bool, stop: threading.Event = NEVER
) -> Iterator[tuple[float, str, str]]:
    """(offset, stream, line) of every matching line of one recording, until *stop* is set.

    The recording is read a block at a time. A block whose text (each stream
    joined, cleaned as lines are) the pattern's block form does not match in
    one RE2 call holds no matching line: only where the block form finds
    something are the block's lines cut and searched one by one.
    """
    block = getattr(pattern, "block", None)
    streams = {"i": _Lines(), "o": _Lines()}
    codes = "i" if input_only else "io"
    with path.open("rb") as f:
        f.readline()  # the header
        for events in _blocks(f):
            if stop.is_set():
                return
            if block is not None and _passed_over(events, block, streams, codes):
                continue
            yield from _lines_matching(events.split("\n"), pattern, streams, codes)
    for code, lines_of in streams.items():
        for began, line in lines_of.rest():
            if pattern.search(line):
                yield began, NAMES[code], line


NAMES = {"i": "input", "o": "output"}


def _blocks(f: BinaryIO) -> Iterator[str]:
    """The rest of *f* in blocks of about BLOCK bytes, each ending at a line end (or the file's), decoded
    (a newline byte is never inside a UTF-8 sequence: each block decodes whole)."""
    carry = b""
    while chunk := f.read(BLOCK):
        chunk = carry + chunk
        cut = chunk.rfind(b"\n") + 1
        if cut:
            yield chunk[:cut].decode("utf-8", "replace")
        carry = chunk[cut:]
    if carry:
        yield carry.decode("utf-8", "replace")


def _lines_matching(
    lines: list[str], pattern: Pattern, streams: dict[str, _Lines], codes: str
) -> Iterator[tuple[float, str, str]]:
    """The block's events, line by line (the exact search)."""
    for raw in lines:
        try:
            stamp, code, data = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if code not in codes or not isinstance(data, str):
            continue
        if "\\ud" in raw:  # a lone surrogate from a hand-made file: as the block pass has it
            data = _whole(data)
        for began, line in streams[code].feed(float(stamp), data, typed=code == "i"):
            if pattern.search(line):
                yield began, NAMES[code], line


def _passed_over(events: str, block: BlockPattern, streams: dict[str, _Lines], codes: str) -> bool:
    """True when no line of this block of events can match (the streams then stand as after it)."""
    texts = _decoded(events)
    if texts is None:
        return False  # not what the recorder writes (a torn line): line by line
    for code in codes:
        text = streams[code].buffer + texts[code]
        if code == "i" and ("\x7f" in text or "\b" in text):
            return False  # typed corrections: only the line-by-line pass knows the line
        text, data = _utf8(text)
        texts[code] = text[len(streams[code].buffer) :]
        if _long_line(data, text):
            return False  # a line the line-by-line pass cuts in pieces (a pattern may anchor to)
        if block.search(_clean(data)):
            return False
    for code in codes:
        _advance(streams[code], events, code, texts[code])
    return True


def _advance(stream: _Lines, events: str, code: str, data: str) -> None:
    """The stream as the line-by-line pass would leave it after *data* (no line of it matched)."""
    end = max(data.rfind("\r"), data.rfind("\n"))
    if end < 0:  # the line goes on
        if not stream.buffer and data:
            stream.began = _stamp_at(events.split("\n"), code, 0, from_end=False)
        stream.buffer += data
        return
    stream.buffer = data[end + 1 :]
    if stream.buffer:  # it began in the event holding its first character
        stream.began = _stamp_at(events.split("\n"), code, len(stream.buffer), from_end=True)


def _stamp_at(lines: list[str], code: str, length: int, *, from_end: bool) -> float:
    """The stamp of the first event of *code* with text (*from_end* False), or of the event holding the
    first of the last *length* characters of the stream (True). Decodes only the events it needs."""
    held = 0
    for raw in reversed(lines) if from_end else lines:
        with contextlib.suppress(ValueError, TypeError):
            stamp, found, data = json.loads(raw)
            if found == code and isinstance(data, str) and data:
                held += len(data)
                if not from_end or held >= length:
                    return float(stamp)
    return 0.0


#: bytes of a recording read, parsed and searched at once by the block pass
BLOCK = 1 << 20
#: an escape sequence, as ESCAPES has them, but never across a line end (its control characters go
#: with CONTROLS: the same text as ESCAPES leaves, line by line, at C speed)
BLOCK_ESCAPES = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\r\n]*(?:\x07|\x1b\\)?|[@-_])")
#: removed from a block's text: every control character but tab and the line ends
CONTROLS = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
#: a carriage return ends a line as a newline does
LINE_ENDS = bytes.maketrans(b"\r", b"\n")
#: what separates two output events' texts in a block the recorder wrote (``json.dumps``'s form)
FRAME = re.compile(r'"\]\n\[[0-9.e+-]+, "o", "')
OUTPUT_START = re.compile(r'\[[0-9.e+-]+, "o", "')


def _long_line(data: bytes, text: str) -> bool:
    """Whether a line of *text* (*data* in UTF-8) is MAX_LINE characters long or more. When every window
    of half that many bytes holds a line end, none is (a character is at least a byte): one C search per
    window, not one string per line; else the lines are measured."""
    half, find = MAX_LINE // 2, data.find
    if all(find(b"\n", k, k + half) >= 0 or find(b"\r", k, k + half) >= 0 for k in range(0, len(data), half)):
        return False
    return max(map(len, NEWLINES.split(text))) >= MAX_LINE


def _clean(data: bytes) -> bytes:
    """A block's text in UTF-8 as the line-by-line pass sees its lines: escapes and control characters
    removed, every line end a newline (what RE2 searches: no str, so no copy by the wrapper)."""
    if b"\x1b" in data:
        data = BLOCK_ESCAPES.sub(b"", data)
    return data.translate(LINE_ENDS, CONTROLS)


def _utf8(text: str) -> tuple[str, bytes]:
    """*text* and its UTF-8; a lone surrogate (``\\udc80`` in a hand-made recording's JSON) as U+FFFD,
    as the line pass has it."""
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:
        text = _whole(text)
        return text, text.encode("utf-8")


def _whole(text: str) -> str:
    """*text* with any lone surrogate as U+FFFD: searchable in UTF-8."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _decoded(block: str) -> dict[str, str] | None:
    start = OUTPUT_START.match(block)
    if start is not None and block.endswith('"]\n'):
        # only output, as the recorder writes it: one JSON string, decoded in one call (any other
        # line leaves a bare quote and line end in it, which JSON refuses: then event by event)
        inner = FRAME.sub("", block[start.end() : -3])
        try:
            return {"i": "", "o": json.loads(f'"{inner}"')}
        except ValueError:
            pass  # not that shape after all: event by event
    try:
        events = json.loads("[" + ",".join(line for line in block.split("\n") if line) + "]")
    except ValueError:
        return None
    found: dict[str, list[str]] = {"i": [], "o": []}
    for event in events:
        if isinstance(event, list) and len(event) == 3 and event[1] in found and isinstance(event[2], str):
            found[event[1]].append(event[2])
    return {code: "".join(parts) for code, parts in found.items()}
