"""The seam between a transport and the session: what the client sends, as typed events.

A transport (``gateway serve``'s asyncssh server, the OpenSSH door's
descriptors) is adapted to ``Channel``; the session and every runner see only
this. Client input arrives from ``Channel.receive()`` as bytes, or as a
``Resize``, a ``Signal`` or a ``Break``; ``b""`` is the end (EOF, or the
channel is gone). Nothing here knows asyncssh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

#: the largest terminal dimension we pass on (TIOCSWINSZ and the Engine API take 16 bits)
MAX_DIMENSION = 0xFFFF
TerminalSize = tuple[int, int, int, int]


def clamped(size: tuple[int, int, int, int]) -> TerminalSize:
    """A client's (cols, rows, xpixels, ypixels), each forced into 0..65535."""
    cols, rows, xpix, ypix = (min(max(int(v), 0), MAX_DIMENSION) for v in size)
    return cols, rows, xpix, ypix


@dataclass(frozen=True)
class Resize:
    """The client's terminal changed size (already clamped)."""

    cols: int
    rows: int
    xpix: int = 0
    ypix: int = 0


@dataclass(frozen=True)
class Signal:
    """The client asked for a signal (its RFC 4254 name: ``INT``, ``TERM``, ...)."""

    name: str


@dataclass(frozen=True)
class Break:
    """The client sent a break."""


Received = bytes | Resize | Signal | Break
#: takes each thing the client sends; returns an awaitable when it can take no more until that is done
Handler = Callable[[Received], Awaitable[None] | None]


class Writer(Protocol):
    """The client's stdout or stderr."""

    def write(self, data: bytes, /) -> None:
        """Queue *data*."""

    async def drain(self) -> None:
        """Wait until the client can take more."""

    def backlog(self) -> int:
        """Bytes written and not yet taken by the client (its window is full)."""


class Channel(Protocol):
    """One session channel of one client, whichever door it came through."""

    @property
    def command(self) -> str | None:
        """The exec request's command, None for a shell request."""

    @property
    def subsystem(self) -> str | None:
        """The subsystem asked for, if any."""

    @property
    def stdout(self) -> Writer:
        """Client output."""

    @property
    def stderr(self) -> Writer:
        """Client error output."""

    @property
    def env(self) -> Mapping[str, str]:
        """What the client's accepted environment requests set (checked locale variables, a reason)."""

    async def receive(self, n: int = 65536, /) -> Received:
        """The next thing the client sent: up to *n* bytes, or an event; ``b""`` at the end."""

    async def pump(self, handler: Handler, /) -> None:
        """Hand *handler* everything the client sends, as it arrives, until the end (``b""``, handed too).

        The same events, in the same order, as ``receive()``, without a task
        woken for each: an interactive session's keystrokes. When *handler*
        returns an awaitable, nothing more arrives until it is done (the
        client's window closes meanwhile).
        """

    async def wait_closed(self) -> None:
        """Return once the client has gone."""

    def get_terminal_type(self) -> str | None:
        """TERM when the client asked for a PTY."""

    def get_terminal_size(self) -> tuple[int, int, int, int]:
        """(cols, rows, xpixels, ypixels)."""

    def exit(self, status: int, /) -> None:
        """End the session with an exit status."""

    def exit_with_signal(self, signal: str, /) -> None:
        """End the session with the signal the child died of."""


async def read_bytes(channel: Channel, n: int = 1024) -> bytes:
    """The next bytes the client typed, passing over resizes, signals and breaks; ``b""`` at the end."""
    while True:
        received = await channel.receive(n)
        if isinstance(received, bytes):
            return received


async def pump_received(
    channel: Channel, handler: Handler, *, more: Callable[[], bool] = lambda: True
) -> bool:
    """``Channel.pump`` by ``receive()``: one task reads and hands on, while *more()* says so.

    True once the end (``b""``) was handed on; False when *more()* said stop first.
    """
    while more():
        received = await channel.receive()
        waiting = handler(received)
        if waiting is not None:
            await waiting
        if received == b"":
            return True
    return False


class Pumping:
    """``Channel.pump`` from a transport's callbacks: each thing the client sends goes to the handler as
    it comes (no task, no future per read); a handler that returns an awaitable pauses the transport
    (``_pause``) until it is done (``_unpause``); an error or the end (``b""``) finishes the pump."""

    _handler: Handler | None = None
    _pumped: asyncio.Future[None] | None = None
    _resuming: asyncio.Task[None] | None = None

    def _pause(self) -> bool:
        """Stop taking input; False when there is nothing to pause."""
        raise NotImplementedError

    def _unpause(self) -> None:
        """Take input again."""
        raise NotImplementedError

    def _take(self, received: Received) -> None:
        handler = self._handler
        assert handler is not None
        try:
            waiting = handler(received)
        except Exception as exc:  # into the runner that pumps, not into the transport's callback
            self._finish(exc)
            return
        if received == b"":
            self._finish(None)
        elif waiting is not None and self._pause():
            self._resuming = asyncio.get_running_loop().create_task(self._resume_after(waiting))

    async def _resume_after(self, waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except Exception as exc:
            self._finish(exc)
            return
        self._resuming = None
        if self._handler is not None:
            self._unpause()

    def _finish(self, error: BaseException | None) -> None:
        pumped = self._pumped
        self._handler = None
        if pumped is not None and not pumped.done():
            pumped.set_exception(error) if error is not None else pumped.set_result(None)
