"""sshd's end of the session (our stdin, stdout, stderr) in the shape of an asyncssh process.

The runners only use a small part of ``SSHServerProcess``; this provides it on
top of the process's own file descriptors, so the forced-command door runs
the very same code as the SSH server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
import tty
from collections.abc import Iterator

import asyncssh

CHUNK = 65536


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Reader:
    def __init__(self, owner: StdioProcess) -> None:
        self.owner = owner

    async def read(self, n: int = CHUNK) -> bytes:
        if self.owner.resized:
            self.owner.resized = False
            cols, rows, xpix, ypix = self.owner.get_terminal_size()
            raise asyncssh.TerminalSizeChanged(cols, rows, xpix, ypix)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self.owner.wake = ready
        loop.add_reader(0, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(0)
            self.owner.wake = None
        if self.owner.resized:
            return await self.read(n)
        try:
            return os.read(0, n)
        except BlockingIOError:
            return await self.read(n)
        except OSError:
            return b""


class _Writer:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += data
        self.flush_now()

    def flush_now(self) -> None:
        """Write what the descriptor takes without waiting; keep the rest for drain()."""
        while self.pending:
            try:
                written = os.write(self.fd, self.pending)
            except (BlockingIOError, OSError):
                return
            del self.pending[:written]

    async def drain(self) -> None:
        while self.pending:
            try:
                written = os.write(self.fd, self.pending)
            except BlockingIOError:
                await _writable(self.fd)
                continue
            except OSError as exc:
                raise BrokenPipeError(str(exc)) from exc
            del self.pending[:written]


async def _writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _wake, ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


class _Channel:
    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def wait_closed(self) -> None:
        await self.closed.wait()


class StdioProcess:
    """Our stdio as a session channel; SIGHUP (sshd's hang-up) closes it."""

    def __init__(self, command: str | None) -> None:
        self.command = command
        self.subsystem: str | None = None
        self.stdin = _Reader(self)
        self.stdout = _Writer(1)
        self.stderr = _Writer(2)
        self.channel = _Channel()
        self.resized = False
        self.wake: asyncio.Future[None] | None = None
        self.status: int = 0
        self.signal: str | None = None
        self._tty = os.isatty(0)

    def get_terminal_type(self) -> str | None:
        """TERM when sshd gave us a PTY."""
        return os.environ.get("TERM", "xterm") if self._tty else None

    def get_terminal_size(self) -> tuple[int, int, int, int]:
        """(cols, rows, xpix, ypix) of sshd's PTY."""
        if not self._tty:
            return 0, 0, 0, 0
        rows, cols, xpix, ypix = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
        return cols, rows, xpix, ypix

    def exit(self, status: int) -> None:
        """Remember the exit status for the process to return."""
        self.status = status
        self.channel.closed.set()

    def exit_with_signal(self, signal_name: str, *_: object) -> None:
        """Remember the signal the child died of."""
        self.signal, self.status = signal_name, 128 + signal.Signals[f"SIG{signal_name}"]
        self.channel.closed.set()

    def _winch(self) -> None:
        self.resized = True
        if self.wake is not None:
            _wake(self.wake)

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Non-blocking fds, raw mode on a PTY, SIGWINCH and SIGHUP handlers; all undone after."""
        loop = asyncio.get_running_loop()
        saved = termios.tcgetattr(0) if self._tty else None
        blocking = [os.get_blocking(fd) for fd in (0, 1, 2)]
        try:
            if saved is not None:
                tty.setraw(0)
            for fd in (0, 1, 2):
                os.set_blocking(fd, False)
            loop.add_signal_handler(signal.SIGWINCH, self._winch)
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self.channel.closed.set)
            yield
        finally:
            for fd, was in zip((0, 1, 2), blocking, strict=True):
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, was)
            for writer in (self.stdout, self.stderr):
                writer.flush_now()  # blocking again: whatever is left goes out
            if saved is not None:
                with contextlib.suppress(termios.error):
                    termios.tcsetattr(0, termios.TCSADRAIN, saved)
