"""The supervisor's line to each worker: JSON objects, one per line, over a socketpair.

The supervisor says which policy to run (``{"policy": DIGEST}``: load it from
disk and take it only if it is that digest) and which keys to drop when a
reload failed (``{"revoke": [FINGERPRINT, ...]}``); a worker answers with what
it runs (``{"policy": DIGEST, "pid": PID}``). Reading is driven by the event
loop (``add_reader``), so neither side ever blocks on the other; a line that is
not JSON, or too long, is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from typing import Any

MAX_LINE = 4 << 20
Message = dict[str, Any]


class Control:
    """One end of a supervisor-worker socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self._buffer = b""
        self._loop: asyncio.AbstractEventLoop | None = None

    def send(self, message: Message) -> None:
        """Send one message; a peer that is gone (or a full buffer) loses it, never blocks us."""
        with contextlib.suppress(OSError):
            self.sock.send(json.dumps(message).encode() + b"\n")

    def listen(self, on_message: Callable[[Message], None], on_closed: Callable[[], None]) -> None:
        """Call *on_message* for each message as it arrives, *on_closed* once at the end."""
        self._loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                chunk = self.sock.recv(MAX_LINE)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                on_closed()
                return
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            if len(self._buffer) > MAX_LINE:
                self._buffer = b""
            for line in lines:
                message = _parsed(line)
                if message is not None:
                    on_message(message)

        self._loop.add_reader(self.sock.fileno(), readable)

    def close(self) -> None:
        """Stop reading and close (idempotent)."""
        if self.sock.fileno() < 0:
            return
        if self._loop is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _parsed(line: bytes) -> Message | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
