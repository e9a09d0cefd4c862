"""sshd's end of a session (three descriptors) in the shape of an asyncssh process.

The runners see one transport-neutral channel (``actions.base.Channel``); the
asyncssh server process satisfies it, and so does this: sshd's stdin, stdout
and stderr, either our own (the in-process door) or received over the door
socket by ``gateway serve`` (``door_server``). Resizes and the hang-up are
told to it (``resized()``, ``hang_up()``) by whoever hears of them: signal
handlers in-process, control messages on the door socket.
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
from collections.abc import Callable, Iterator

from gateway.channel import Break, Handler, Pumping, Received, Resize, Signal, clamped
from gateway.environment import REASON, checked_reason
from gateway.fdwait import wait_fd

CHUNK = 65536
EVENTS_LIMIT = 64


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
            except OSError:
                return
            del self.pending[:written]

    def backlog(self) -> int:
        """Bytes sshd's descriptor has not taken yet."""
        return len(self.pending)

    async def drain(self) -> None:
        while self.pending:
            try:
                written = os.write(self.fd, self.pending)
            except BlockingIOError:
                await wait_fd(self.fd, write=True)
                continue
            except OSError as exc:
                raise BrokenPipeError(str(exc)) from exc
            del self.pending[:written]


class FdProcess:
    """Three descriptors from sshd as a session channel."""

    def __init__(
        self,
        command: str | None,
        fds: tuple[int, int, int] = (0, 1, 2),
        term: str | None = None,
        reason: str | None = None,
        env: dict[str, str] | None = None,
        size: tuple[int, int, int, int] | None = None,
    ):
        self.command = command
        checked = checked_reason(reason) if reason else None
        self._env = {**(env or {}), **({REASON: checked} if checked else {})}
        self.subsystem: str | None = None
        self.fds = fds
        self.stdout = _Writer(fds[1])
        self.stderr = _Writer(fds[2])
        self.closed = asyncio.Event()
        self.resize_pending = False
        #: signals and breaks the client asked for (the monitor's network workers pass them on)
        self.events: list[Signal | Break] = []
        self.wake: asyncio.Future[None] | None = None
        #: while pumping: hands on a resize, a signal or a break told meanwhile
        self.nudge: Callable[[], None] | None = None
        self.status: int = 0
        self.signal: str | None = None
        self.exited = False
        #: a terminal told, not read from a PTY: a network worker's PTY session, over a socket
        self._size = size
        self._tty = size is not None or os.isatty(fds[0])
        self._term = (term or "xterm") if self._tty else None

    async def receive(self, n: int = CHUNK, /) -> Received:
        """Bytes from sshd, or the resize it told the door of; ``b""`` at EOF or on an error."""
        fd = self.fds[0]
        while True:
            if self.resize_pending:
                self.resize_pending = False
                return Resize(*clamped(self.get_terminal_size()))
            if self.events:
                return self.events.pop(0)
            try:
                return os.read(fd, n)
            except BlockingIOError:
                pass
            except OSError:
                return b""
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.wake = ready
            try:
                await wait_fd(fd, ready=ready)
            finally:
                self.wake = None

    async def pump(self, handler: Handler, /) -> None:
        """Hand *handler* what sshd passes on, from a reader callback (``_Pump``)."""
        await _Pump(self, handler).run()

    async def wait_closed(self) -> None:
        """Return once the client has gone (sshd's side hung up, or the session ended)."""
        await self.closed.wait()

    @property
    def env(self) -> dict[str, str]:
        """Of the client's environment only GATEWAY_REASON crosses sshd's door (its AcceptEnv); a network
        worker's sessions also have the locale the client sent (``environment.accepted_var``)."""
        return self._env

    def get_terminal_type(self) -> str | None:
        """TERM when sshd gave the session a PTY."""
        return self._term

    def get_terminal_size(self) -> tuple[int, int, int, int]:
        """(cols, rows, xpix, ypix) of sshd's PTY, read from the descriptor itself."""
        if not self._tty:
            return 0, 0, 0, 0
        if self._size is not None:
            return self._size
        try:
            raw = fcntl.ioctl(self.fds[0], termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            return 0, 0, 0, 0
        rows, cols, xpix, ypix = struct.unpack("HHHH", raw)
        return cols, rows, xpix, ypix

    def exit(self, status: int) -> None:
        """Remember the exit status for the caller to return (the first one: as an SSH channel's)."""
        if not self.exited:
            self.exited, self.status = True, status
        self.closed.set()

    def exit_with_signal(self, signal_name: str, *_: object) -> None:
        """Remember the signal the child died of (unless an exit status was given first)."""
        if not self.exited:
            self.exited = True
            self.signal, self.status = signal_name, 128 + signal.Signals[f"SIG{signal_name}"]
        self.closed.set()

    def resized(self, size: tuple[int, int, int, int] | None = None) -> None:
        """sshd's PTY changed size (SIGWINCH reached the door), or the client's terminal did (*size*)."""
        if size is not None and self._size is not None:
            self._size = size
        self.resize_pending = True
        self._woken()

    def asked(self, event: Signal | Break) -> None:
        """The client asked for a signal or sent a break (told over the control socket)."""
        if len(self.events) < EVENTS_LIMIT:
            self.events.append(event)
        self._woken()

    def _woken(self) -> None:
        if self.wake is not None:
            _wake(self.wake)
        if self.nudge is not None:
            asyncio.get_running_loop().call_soon(self.nudge)

    def hang_up(self) -> None:
        """The client went away (SIGHUP reached the door, or the door itself is gone)."""
        self.closed.set()

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Non-blocking descriptors and raw mode on a PTY; both undone after.

        Raw mode is set with TCSANOW: the default TCSAFLUSH would throw away
        what the user typed (or piped into ``ssh -tt``) before the switch.
        """
        saved = termios.tcgetattr(self.fds[0]) if self._tty and self._size is None else None
        blocking = [os.get_blocking(fd) for fd in self.fds]
        try:
            if saved is not None:
                tty.setraw(self.fds[0], termios.TCSANOW)
            for fd in self.fds:
                os.set_blocking(fd, False)
            yield
        finally:
            for fd, was in zip(self.fds, blocking, strict=True):
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, was)
            for writer in (self.stdout, self.stderr):
                writer.flush_now()  # blocking again: whatever is left goes out
            if saved is not None:
                with contextlib.suppress(termios.error):
                    termios.tcsetattr(self.fds[0], termios.TCSADRAIN, saved)


class _Pump(Pumping):
    """A process's input handed on from a reader callback: no task switch, no future and no reader added
    and removed per read (``channel.Pumping``)."""

    def __init__(self, process: FdProcess, handler: Handler) -> None:
        self.process = process
        self.loop = asyncio.get_running_loop()
        self.reading = False
        self._handler, self._pumped = handler, self.loop.create_future()

    async def run(self) -> None:
        assert self._pumped is not None
        self._unpause()  # and what was there before
        try:
            await self._pumped
        finally:
            self._handler = None
            self._pause()
            if self._resuming is not None:
                self._resuming.cancel()

    def step(self) -> None:
        process = self.process
        while self.reading and self._handler is not None:
            if process.resize_pending:
                process.resize_pending = False
                self._take(Resize(*clamped(process.get_terminal_size())))
            elif process.events:
                self._take(process.events.pop(0))
            else:
                try:
                    data = os.read(process.fds[0], CHUNK)
                except BlockingIOError:
                    return
                except OSError:
                    data = b""
                self._take(data)
                return

    def _finish(self, error: BaseException | None) -> None:
        super()._finish(error)
        self._pause()

    def _pause(self) -> bool:
        if self.reading:
            self.loop.remove_reader(self.process.fds[0])
            self.reading, self.process.nudge = False, None
        return True

    def _unpause(self) -> None:
        if not self.reading and self._handler is not None:
            self.loop.add_reader(self.process.fds[0], self.step)
            self.reading, self.process.nudge = True, self.step
        self.step()


@contextlib.contextmanager
def signals_attached(process: FdProcess) -> Iterator[None]:
    """In-process: SIGWINCH resizes, SIGHUP and SIGTERM hang up; undone after."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGWINCH, process.resized)
    for sig in (signal.SIGHUP, signal.SIGTERM):
        loop.add_signal_handler(sig, process.hang_up)
    try:
        yield
    finally:
        for sig in (signal.SIGWINCH, signal.SIGHUP, signal.SIGTERM):
            loop.remove_signal_handler(sig)
