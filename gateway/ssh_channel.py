"""asyncssh's server process as a ``channel.Channel``: its exceptions become typed events and OSError.

asyncssh reports a resize, a signal or a break by raising it from
``stdin.read()``, and a lost connection as ``asyncssh.Error``; here they
become ``Resize``, ``Signal``, ``Break``, ``b""`` (the end) and
``ConnectionResetError``, so nothing past this module knows asyncssh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncssh

from gateway.channel import Break, Received, Resize, Signal, clamped


class _Out:
    """The client's stdout or stderr; asyncssh's errors as OSError."""

    __slots__ = ("_channel", "_writer")

    def __init__(self, writer: asyncssh.SSHWriter[bytes]) -> None:
        self._writer = writer
        self._channel = writer.channel

    def write(self, data: bytes, /) -> None:
        try:
            self._writer.write(data)
        except asyncssh.Error as exc:
            raise ConnectionResetError(str(exc)) from exc

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except asyncssh.Error as exc:
            raise ConnectionResetError(str(exc)) from exc

    def backlog(self) -> int:
        return self._channel.get_write_buffer_size()


class SSHChannel:
    """One asyncssh session channel, seen through the transport-neutral Channel."""

    __slots__ = ("_process", "stderr", "stdout")

    def __init__(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self._process = process
        self.stdout = _Out(process.stdout)
        self.stderr = _Out(process.stderr)

    @property
    def command(self) -> str | None:
        """The exec request's command, None for a shell request."""
        return self._process.command

    @property
    def subsystem(self) -> str | None:
        """The subsystem asked for, if any."""
        return self._process.subsystem

    @property
    def env(self) -> Mapping[str, Any]:
        """The accepted environment requests."""
        return self._process.env

    async def receive(self, n: int = 65536, /) -> Received:
        """Bytes, or a resize, signal or break; ``b""`` at EOF or when the channel is gone."""
        try:
            return await self._process.stdin.read(n)
        except asyncssh.TerminalSizeChanged as exc:
            return Resize(*clamped((exc.width, exc.height, exc.pixwidth, exc.pixheight)))
        except asyncssh.SignalReceived as exc:
            return Signal(exc.signal)
        except asyncssh.BreakReceived:
            return Break()
        except (asyncssh.Error, OSError):
            return b""

    async def wait_closed(self) -> None:
        """Return once the client has gone."""
        await self._process.channel.wait_closed()

    def get_terminal_type(self) -> str | None:
        """TERM when the client asked for a PTY."""
        return self._process.get_terminal_type()

    def get_terminal_size(self) -> tuple[int, int, int, int]:
        """(cols, rows, xpixels, ypixels)."""
        return self._process.get_terminal_size()

    def exit(self, status: int, /) -> None:
        """End the session with an exit status."""
        self._process.exit(status)

    def exit_with_signal(self, signal: str, /) -> None:
        """End the session with the signal the child died of."""
        self._process.exit_with_signal(signal)
