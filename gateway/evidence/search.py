"""``sessions grep`` over the sessions a query selects: in session order, a large search on every core.

A large search (at least two recordings, ``MIN_BYTES`` between them) shares
the recordings out between helper processes (``python -I -m
gateway.evidence.search``, a clean environment), one per core: each is given
the pattern and every N-th recording on its standard input, searches them in
order with ``grep.grep_recording`` and writes each match as a JSON line, then
``"end"`` after each recording. Recording *k*'s matches are read from helper
``k % N``, so they come out in the order one process gives; a pipe that
fills stops its helper until it is read, so memory stays bounded whatever
matches. The pipes are polled, so a search stops within ``POLL`` of its
*stop* event (the client left), and its helpers are killed. The search also
leaves the gateway's own process: its event loop does not share a core
with it.

At most one helper per core runs in a process at once; a search that finds
fewer than two free (or a small one) searches in the calling thread, as
before.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import stat
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.environment import helper_env
from gateway.evidence import query
from gateway.evidence.grep import NEVER, Compiled, Match, Pattern, compile_pattern, grep_recording
from gateway.evidence.index import Index

MIN_BYTES = 32 << 20
#: seconds between two looks at the stop event while a helper searches
POLL = 0.05
END = b'"end"'
_CORES = len(os.sched_getaffinity(0))
_SLOTS = threading.BoundedSemaphore(_CORES)


class SearchError(query.QueryError):
    """A helper could not start, or ended before its share was searched: the search is cut short, and
    says so (one line, as any query error: over SSH and on the command line)."""


AGAIN = "run the search again (a search of fewer than two recordings stays in one process)"


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
    found: list[tuple[dict[str, Any], Path, int]] = []
    for row in rows:
        if row.get("recording"):
            path = state / str(row["recording"])
            with contextlib.suppress(OSError):
                if stat.S_ISREG((status := path.stat()).st_mode):
                    found.append((row, path, status.st_size))
    paths = [path for _, path, _ in found]
    large = sum(size for _, _, size in found) >= MIN_BYTES
    for index, offset, stream, line in _matches(
        paths, pattern, large=large, input_only=input_only, stop=stop
    ):
        row = found[index][0]
        info = {k: str(row.get(k) or "-") for k in ("start", "principal", "action", "target")}
        yield Match(str(row["id"]), **info, offset=round(offset, 3), stream=stream, line=line)


def _matches(
    paths: list[Path], pattern: Pattern, *, large: bool, input_only: bool, stop: threading.Event
) -> Iterator[tuple[int, float, str, str]]:
    """(recording's index, offset, stream, line) of every match, in order; helpers when *large*."""
    count = 0
    if large and _CORES > 1 and len(paths) > 1 and isinstance(pattern, Compiled) and pattern.source:
        while count < min(_CORES, len(paths)) and _SLOTS.acquire(blocking=False):
            count += 1
        if count < 2:  # one helper is no faster than this thread: leave the core to another search
            for _ in range(count):
                _SLOTS.release()
            count = 0
    try:
        if count >= 2:
            assert isinstance(pattern, Compiled)
            yield from _helpers(paths, pattern.source, input_only=input_only, stop=stop, count=count)
            return
        for index, path in enumerate(paths):
            if stop.is_set():
                return
            for offset, stream, line in grep_recording(path, pattern, input_only=input_only, stop=stop):
                yield index, offset, stream, line
    finally:
        for _ in range(count):
            _SLOTS.release()


def _helpers(
    paths: list[Path], pattern: str, *, input_only: bool, stop: threading.Event, count: int
) -> Iterator[tuple[int, float, str, str]]:
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        for k in range(count):
            helpers.append(_start(paths[k::count], pattern, input_only))
        readers = [_Reader(helper) for helper in helpers]
        for index in range(len(paths)):
            reader = readers[index % count]
            while (line := reader.next(stop)) is not None and line != END:
                offset, stream, text = json.loads(line)
                yield index, offset, stream, text
            if line is None:
                return  # stopped
    finally:
        for helper in helpers:
            helper.kill()
            helper.wait()
            if helper.stdout is not None:
                helper.stdout.close()


def _start(paths: list[Path], pattern: str, input_only: bool) -> subprocess.Popen[bytes]:
    job = {"pattern": pattern, "input_only": input_only, "paths": [str(p) for p in paths]}
    try:
        helper = subprocess.Popen(
            [sys.executable, "-I", "-m", "gateway.evidence.search"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=helper_env(),
            cwd="/",
        )
    except OSError as exc:
        raise SearchError(f"a search helper could not start ({exc.strerror}); {AGAIN}") from None
    assert helper.stdin is not None
    with contextlib.suppress(BrokenPipeError), helper.stdin:  # one that died at once: its reader says so
        helper.stdin.write(json.dumps(job).encode())
    return helper


class _Reader:
    """A helper's output, a line at a time, looking at *stop* at least every POLL seconds."""

    def __init__(self, helper: subprocess.Popen[bytes]) -> None:
        assert helper.stdout is not None
        self.fd = helper.stdout.fileno()
        self.poll = select.poll()  # not select(): the gateway's descriptors go past FD_SETSIZE
        self.poll.register(self.fd, select.POLLIN)
        self.lines: deque[bytes] = deque()
        self.rest = b""

    def next(self, stop: threading.Event) -> bytes | None:
        """The next line, or None once *stop* is set."""
        while not self.lines:
            if stop.is_set():
                return None
            if not self.poll.poll(int(POLL * 1000)):
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise SearchError(f"a search helper ended before its recordings were searched; {AGAIN}")
            *complete, self.rest = (self.rest + chunk).split(b"\n")
            self.lines.extend(complete)
        return None if stop.is_set() else self.lines.popleft()


def main() -> None:
    """A helper: the job on standard input, the matches on standard output."""
    job = json.loads(sys.stdin.buffer.read())
    pattern = compile_pattern(job["pattern"])
    out = sys.stdout.buffer
    for path in job["paths"]:
        for offset, stream, line in grep_recording(Path(path), pattern, input_only=job["input_only"]):
            out.write(json.dumps([offset, stream, line]).encode() + b"\n")
        out.write(END + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
