"""asciicast v2 writer: a JSON header line, then ``[seconds, code, data]`` events."""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from encodings import utf_8
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, Protocol


class Recorder(Protocol):
    """What an action runner taps its streams into."""

    def output(self, data: bytes) -> None:
        """Bytes the client saw on stdout or stderr."""

    def input(self, data: bytes) -> None:
        """Bytes the client typed."""

    def withhold_input(self) -> None:
        """Typed bytes that must not be recorded (echo off)."""

    def resize(self, cols: int, rows: int) -> None:
        """The client's terminal changed size."""

    def marker(self, label: str) -> None:
        """A named point in the session."""

    def close(self) -> dict[str, Any]:
        """Finish the file; returns what the session-end record keeps (path, size, sha256)."""

    @property
    def name(self) -> str | None:
        """The recording's path relative to the state directory, or None."""

    @property
    def full(self) -> bool:
        """Whether the recording reached its limit (nothing more is recorded, or may be shown)."""


class NullRecorder:
    """Records nothing; for sessions that carry no stream."""

    name = None
    full = False

    def output(self, data: bytes) -> None:
        """Drop output."""

    def input(self, data: bytes) -> None:
        """Drop input."""

    def withhold_input(self) -> None:
        """Drop the marker."""

    def resize(self, cols: int, rows: int) -> None:
        """Drop a resize."""

    def marker(self, label: str) -> None:
        """Drop a marker."""

    def close(self) -> dict[str, Any]:
        """Nothing was written."""
        return {}


FLUSH_SECONDS = 0.25
FLUSH_BYTES = 65536
#: room kept below the limit for the closing marker
LIMIT_RESERVE = 256


class AsciicastRecorder:
    """Writes one asciicast v2 file, created 0600 and never rewritten."""

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        term: str | None,
        record_input: bool,
        title: str,
        name: str | None = None,
        binary_as_size: bool = False,
        limit: int | None = None,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.path = path
        self.name = name or str(path)
        self._withheld = False
        self._limit = limit
        self._on_full = on_full
        self.full = False
        # unbuffered: the lines already wait in _pending (a 64 KiB buffer per open session was most of
        # the gateway's memory per session)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._timer: asyncio.TimerHandle | None = None
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self._unwritten = 0
        self._size = 0
        self._start = time.monotonic()
        self._record_input = record_input
        self._out = utf_8.IncrementalDecoder(errors="replace")
        # Without a PTY a stream may be binary (tar, images): JSON-escaping it
        # inflates it fourfold and costs most of the CPU, and the replay would
        # be lossy anyway. Such output is recorded by size; text still as text.
        self._binary_as_size = binary_as_size
        self._strict = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._binary_run = 0
        self._in = utf_8.IncrementalDecoder(errors="replace")
        header = {
            "version": 2,
            "width": max(width, 1),
            "height": max(height, 1),
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": term or "", "SHELL": "/bin/sh"},
        }
        self._write(json.dumps(header))
        self._drain()  # the header is in the file at once: a follower reads it first

    def _write(self, line: str) -> None:
        self._append((line + "\n").encode())

    def _append(self, data: bytes, *, limited: bool = True) -> None:
        # Batched: lines wait in a list and go to the file (and the hash) together, once per
        # FLUSH_SECONDS or FLUSH_BYTES, rather than per keystroke (200 typing sessions are
        # 8,000 events a second); close() writes the rest.
        size = len(data)
        if limited and self._limit is not None and self._size + size > self._limit - LIMIT_RESERVE:
            self._reached()
            return
        self._pending.append(data)
        self._size += size
        self._unwritten += size
        if self._unwritten >= FLUSH_BYTES:
            self._drain()
        if self._timer is None and not self._file.closed:
            try:  # flushed within FLUSH_SECONDS, so `sessions watch` sees output soon after it happened
                self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush)
            except RuntimeError:  # no event loop (a tool writing a recording): write through
                self._flush()

    def _drain(self) -> None:
        """The waiting lines into the file's buffer and the hash, in one piece."""
        if self._pending:
            blob = b"".join(self._pending)
            self._pending.clear()
            self._unwritten = 0
            self._hash.update(blob)
            view = memoryview(blob)
            while view:  # a regular file takes it all at once but for a full disk
                view = view[self._file.write(view) :]

    def _reached(self) -> None:
        """The limit: one closing marker, then nothing more; the session is told to end."""
        if self.full:
            return
        self.full = True
        marker = json.dumps([round(time.monotonic() - self._start, 6), "m", "recording limit reached"]) + "\n"
        self._append(marker.encode(), limited=False)
        if self._on_full is not None:
            self._on_full()

    def _flush(self) -> None:
        self._timer = None
        if not self._file.closed:
            self._drain()

    def _event(self, code: str, text: str) -> None:
        if text:  # json.dumps([stamp, code, text], ensure_ascii=False), without building an encoder each time
            stamp = round(time.monotonic() - self._start, 6)
            self._append(f'[{stamp!r}, "{code}", {encode_basestring(text)}]\n'.encode())

    def output(self, data: bytes) -> None:
        """Record output as an ``o`` event (binary output without a PTY: by size)."""
        if not self._binary_as_size:
            self._event("o", _text(self._out, data))
            return
        try:
            text = self._strict.decode(data)
        except UnicodeDecodeError:
            self._strict.reset()
            self._binary_run += len(data)
            return
        self._flush_binary()
        self._event("o", text)

    def _flush_binary(self) -> None:
        if self._binary_run:
            self._event("m", f"binary output: {self._binary_run} bytes (not recorded as text)")
            self._binary_run = 0

    def input(self, data: bytes) -> None:
        """Record input as an ``i`` event, when this action records input."""
        if self._record_input:
            self._withheld = False
            self._event("i", _text(self._in, data))

    def withhold_input(self) -> None:
        """Input arrived while the terminal's echo was off (a password): mark, don't record."""
        if self._record_input and not self._withheld:
            self._withheld = True
            self._event("m", "input withheld: terminal echo is off")

    def resize(self, cols: int, rows: int) -> None:
        """Record a resize as an ``r`` event (``COLSxROWS``)."""
        self._event("r", f"{cols}x{rows}")

    def marker(self, label: str) -> None:
        """Record an ``m`` event."""
        self._event("m", label)

    def close(self) -> dict[str, Any]:
        """Flush the decoders, fsync, close; return path, size and SHA-256."""
        if not self._file.closed:
            self._flush_binary()
            self._event("o", self._out.decode(b"", final=True))
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._drain()
            os.fsync(self._file.fileno())
            self._file.close()
        return {
            "recording": self.name,
            "recording_size": self._size,
            "recording_sha256": self._hash.hexdigest(),
        }


def _text(decoder: utf_8.IncrementalDecoder, data: bytes) -> str:
    """*data* as text; ASCII with nothing held back by *decoder* needs no incremental decoding."""
    return data.decode("ascii") if data.isascii() and not decoder.buffer else decoder.decode(data)


def read_events(path: Path, codes: str = "io") -> Iterator[tuple[float, str, str]]:
    """(time, code, text) of a recording's events whose code is in *codes*, one line at a time.

    A line that is not an event (a torn last line after a crash) is passed over.
    """
    with path.open(encoding="utf-8", errors="replace") as f:
        f.readline()  # the header
        for raw in f:
            try:
                stamp, code, data = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if code in codes and isinstance(data, str):
                yield float(stamp), str(code), data
