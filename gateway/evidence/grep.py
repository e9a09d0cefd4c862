"""``sessions grep PATTERN``: who typed or saw ``X``, and when, across every recording in range.

Each recording is read one event at a time, and each stream (typed input,
output) is cut into lines with escape sequences removed, so memory stays
constant whatever the size of the recordings. A match names the session, its
start, principal, action and target, the offset in seconds into the
recording, the stream, and the line (controls and bidi overrides shown as
escapes, ``textsafe``).

The pattern is RE2 (``google-re2``): matching takes linear time whatever the
pattern, so ``(a*)*b`` cannot pin a core; RE2 refuses what it cannot do in
linear time (backreferences, lookaround) with a one-line error. A search
stops between two events once its *stop* event is set (the client left).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import re2  # type: ignore[import-untyped]  # google-re2 ships no stubs

from gateway.evidence import query
from gateway.evidence.index import Index
from gateway.recording.asciicast import read_events
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


def compile_pattern(pattern: str) -> Pattern:
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
    return compiled


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


def _events(path: Path) -> Iterator[tuple[float, str, str]]:
    return read_events(path, "io")


NEVER = threading.Event()


def grep_recording(
    path: Path, pattern: Pattern, *, input_only: bool, stop: threading.Event = NEVER
) -> Iterator[tuple[float, str, str]]:
    """(offset, stream, line) of every matching line of one recording, until *stop* is set."""
    streams = {"i": _Lines(), "o": _Lines()}
    names = {"i": "input", "o": "output"}
    for stamp, code, data in _events(path):
        if stop.is_set():
            return
        if input_only and code != "i":
            continue
        for began, line in streams[code].feed(stamp, data, typed=code == "i"):
            if pattern.search(line):
                yield began, names[code], line
    for code, lines in streams.items():
        for began, line in lines.rest():
            if pattern.search(line):
                yield began, names[code], line


def grep(
    index: Index, state: Path, pattern: Pattern, filters: query.Filters, *, input_only: bool = False
) -> Iterator[Match]:
    """Every match in the recordings of the sessions *filters* selects, oldest session first."""
    return grep_rows(query.list_sessions(index, filters), state, pattern, input_only=input_only)


def grep_rows(
    rows: list[dict[str, Any]],
    state: Path,
    pattern: Pattern,
    *,
    input_only: bool = False,
    stop: threading.Event = NEVER,
) -> Iterator[Match]:
    """Every match in the recordings of the sessions in *rows* (no database access: any thread)."""
    for row in rows:
        recording = row.get("recording")
        if not recording:
            continue
        path = state / str(recording)
        if not path.is_file():
            continue
        info: dict[str, Any] = {k: str(row.get(k) or "-") for k in ("start", "principal", "action", "target")}
        if stop.is_set():
            return
        for offset, stream, line in grep_recording(path, pattern, input_only=input_only, stop=stop):
            yield Match(str(row["id"]), **info, offset=round(offset, 3), stream=stream, line=line)
