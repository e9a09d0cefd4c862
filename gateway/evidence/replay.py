"""Replay a recording in the terminal, in constant memory (one event at a time)."""

from __future__ import annotations

import contextlib
import os
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gateway.evidence import query
from gateway.evidence.index import Index
from gateway.evidence.query import QueryError
from gateway.recording.asciicast import read_events
from gateway.textsafe import keys

MAX_PAUSE = 2.0  # long idle gaps are shortened, as asciinema's idle limit does


def recording_path(index: Index, state: Path, session: str) -> Path:
    """The recording of *session* (``ID`` or ``ID.N``)."""
    row = index.db.execute("SELECT recording FROM sessions WHERE id = ?", (session,)).fetchone()
    if row is None or not row[0]:
        raise QueryError(f"no recording for session {session!r}")
    return state / str(row[0])


def cast_events(path: Path, wanted: str = "o") -> Iterator[tuple[float, str]]:
    """(time, text) of each event of one kind (``o`` output, ``i`` input), read line by line."""
    return ((stamp, data) for stamp, _code, data in read_events(path, wanted))


def output_events(path: Path) -> Iterator[tuple[float, str]]:
    """(time, text) of each output event."""
    return cast_events(path, "o")


def show_text(state: Path, events: list[dict[str, Any]]) -> str:
    """``sessions show``: the records, then what was typed, keys named (``^C``, ``ESC``, ``^M`` for Enter)."""
    lines = [query.show_text(events)]
    for name in sorted({str(e["recording"]) for e in events if e.get("recording")}):
        path = state / name
        if path.is_file():
            lines += [
                f"typed  +{stamp:.3f}s  {keys(data, enter='^M')}\n" for stamp, data in cast_events(path, "i")
            ]
    return "".join(lines)


ANSWER_SETTLE = 0.2  # the terminal's last answers (to ESC[6n and the like) arrive within this


@contextlib.contextmanager
def quiet_terminal(fd: int) -> Iterator[None]:
    """While a recording plays: no echo, no line editing; afterwards, its answers are thrown away.

    A recording may hold queries (``ESC[6n`` asks the cursor position, and
    others); the terminal answers each one as if typed. ``asciinema play``
    keeps the terminal in raw mode and reads those answers itself; here the
    answers are not echoed while playing and are flushed from the input
    queue at the end, so none of them reaches the user's shell.
    """
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ICANON)  # lflag
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        time.sleep(ANSWER_SETTLE)
        termios.tcflush(fd, termios.TCIFLUSH)
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def replay(
    path: Path, out: BinaryIO, *, speed: float = 1.0, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Write each output event to *out* at its time, divided by *speed*."""
    last = 0.0
    for stamp, text in output_events(path):
        pause = min(max(stamp - last, 0.0), MAX_PAUSE) / speed
        if pause > 0:
            sleep(pause)
        last = stamp
        out.write(text.encode())
        out.flush()
