"""asyncssh's server process as a ``channel.Channel``: its exceptions become typed events and OSError.

asyncssh reports a resize, a signal or a break by raising it from
``stdin.read()``, and a lost connection as ``asyncssh.Error``; here they
become ``Resize``, ``Signal``, ``Break``, ``b""`` (the end) and
``ConnectionResetError``, so nothing past this module knows asyncssh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import asyncssh

from gateway.channel import Break, Handler, Pumping, Received, Resize, Signal, clamped, pump_received
from gateway.sshfast import channel_writer


def _event(exc: Exception) -> Received:
    """What asyncssh raises from a read, as the event it stands for (``b""`` for an error)."""
    if isinstance(exc, asyncssh.TerminalSizeChanged):
        return Resize(*clamped((exc.width, exc.height, exc.pixwidth, exc.pixheight)))
    if isinstance(exc, asyncssh.SignalReceived):
        return Signal(exc.signal)
    if isinstance(exc, asyncssh.BreakReceived):
        return Break()
    return b""


class GatewayProcess(Pumping, asyncssh.SSHServerProcess[bytes]):
    """asyncssh's server process, able to hand the client's input straight to a handler.

    While ``pumping`` (``SSHChannel.pump``), data, resizes, signals and the end
    go to the handler from asyncssh's documented session callbacks
    (``data_received``, ``terminal_size_changed``, ``signal_received``,
    ``break_received``, ``eof_received``), in the order they came:
    no stream buffer, no waiter, no task per keystroke. A handler that
    returns an awaitable pauses the channel until it is done.
    """

    def typed_ahead(self) -> bool:
        """Whether input (or its end) is already buffered for ``stdin.read()``."""
        return bool(self._recv_buf[None]) or self._eof_received

    def start_pumping(self, handler: Handler) -> asyncio.Future[None]:
        """From now on hand input to *handler*; the future is done at the end."""
        self._handler = handler
        self._pumped = asyncio.get_running_loop().create_future()
        return self._pumped

    def stop_pumping(self) -> None:
        """Input goes to ``stdin`` again."""
        self._handler = None
        if self._resuming is not None:
            self._resuming.cancel()
            self._resuming = None

    def _pause(self) -> bool:
        if self._chan is None:
            return False
        self._chan.pause_reading()
        return True

    def _unpause(self) -> None:
        if self._chan is not None:
            self._chan.resume_reading()  # may hand on what was held at once

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        """Data from the client: to the handler while pumping."""
        if self._handler is not None and datatype is None:
            self._take(data)
        else:
            super().data_received(data, datatype)

    # asyncssh's documented SSHServerSession callbacks for what is not data

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        """A resize: to the handler while pumping."""
        if self._handler is not None:
            self._take(Resize(*clamped((width, height, pixwidth, pixheight))))
        else:
            super().terminal_size_changed(width, height, pixwidth, pixheight)

    def signal_received(self, signal: str) -> None:
        """A signal: to the handler while pumping."""
        if self._handler is not None:
            self._take(Signal(signal))
        else:
            super().signal_received(signal)

    def break_received(self, msec: int) -> bool:
        """A break: to the handler while pumping."""
        if self._handler is not None:
            self._take(Break())
            return True
        return bool(super().break_received(msec))

    def eof_received(self) -> bool:
        """The client's EOF (also called when the channel is lost): the end, while pumping."""
        if self._handler is not None:
            self._take(b"")
        return super().eof_received()


class _Out:
    """The client's stdout or stderr; asyncssh's errors as OSError."""

    __slots__ = ("_channel", "_send", "_writer")

    def __init__(self, writer: asyncssh.SSHWriter[bytes], datatype: asyncssh.DataType) -> None:
        self._writer = writer
        self._channel = writer.channel
        self._send = channel_writer(writer.channel, datatype)

    def write(self, data: bytes, /) -> None:
        try:
            self._send(data)
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

    def __init__(self, process: GatewayProcess) -> None:
        self._process = process
        self.stdout = _Out(process.stdout, None)
        self.stderr = _Out(process.stderr, asyncssh.EXTENDED_DATA_STDERR)

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
        except (asyncssh.TerminalSizeChanged, asyncssh.SignalReceived, asyncssh.BreakReceived) as exc:
            return _event(exc)
        except (asyncssh.Error, OSError):
            return b""

    async def pump(self, handler: Handler, /) -> None:
        """Hand *handler* everything the client sends, from asyncssh's callbacks (see ``Channel.pump``)."""
        process = self._process
        if await pump_received(self, handler, more=process.typed_ahead):  # what came before, in order
            return
        try:
            await process.start_pumping(handler)
        finally:
            process.stop_pumping()

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
