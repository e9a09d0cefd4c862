"""A child bridged to the SSH channel: on a PTY, or on three pipes.

``run_local`` starts a host command; ``shell`` starts a confined one in a
container (``confine.spawn``) and hands it to ``bridge_pty`` or
``bridge_pipes``: the same pumps either way.

``process.redirect()`` has no tap for the recorder and takes the descriptors
over, so the pumps are written out here, on top of ``channel``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pty
import signal
import struct
import termios
from typing import Protocol

from gateway.actions.base import ActionContext, Exit
from gateway.actions.channel import (
    CHUNK,
    CLIENT_SIGNALS,
    client_input,
    deliver,
    drain,
    drained,
    took,
    until_hangup,
)
from gateway.channel import Received, Resize, Signal
from gateway.tasks import Tasks

DRAIN_SECONDS = 5.0
KILL_GRACE = 1.0


class Child(Protocol):
    """A running child as the pumps see it: an asyncio process, or a confined one (``confine.spawn``)."""

    @property
    def pid(self) -> int:
        """Its host pid."""

    @property
    def returncode(self) -> int | None:
        """None while it runs."""

    async def wait(self) -> int:
        """Its returncode once it ended (negative for a signal)."""


async def run_local(ctx: ActionContext, argv: list[str]) -> Exit:
    """Run *argv* on this host with a clean environment, bridged to the client."""
    if ctx.process.get_terminal_type() is not None:
        return await _run_pty(ctx, argv)
    return await _run_pipes(ctx, argv)


def set_winsize(fd: int, cols: int, rows: int, xpix: int = 0, ypix: int = 0) -> None:
    """TIOCSWINSZ; on a master the kernel sends SIGWINCH to the foreground group."""
    size = struct.pack("HHHH", max(rows, 1), max(cols, 1), xpix, ypix)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, size)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _terminate(proc: Child, groups: list[int]) -> None:
    """HUP the child's process groups, then KILL them if they linger."""
    for sig in (signal.SIGHUP, signal.SIGKILL):
        for group in groups:
            _killpg(group, sig)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE)
        except TimeoutError:
            continue
        return


# ---------------------------------------------------------------- PTY


async def _run_pty(ctx: ActionContext, argv: list[str]) -> Exit:
    cols, rows, xpix, ypix = ctx.terminal_size()
    master, slave = pty.openpty()
    try:
        set_winsize(master, cols, rows, xpix, ypix)
        # setsid --ctty: a new session with the slave as controlling tty,
        # without preexec_fn (unsafe beside asyncio's watcher threads).
        proc = await asyncio.create_subprocess_exec(
            "setsid", "--ctty", *argv, stdin=slave, stdout=slave, stderr=slave, env=ctx.clean_env()
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return await bridge_pty(ctx, master, proc)


async def bridge_pty(ctx: ActionContext, master: int, proc: Child) -> Exit:
    """Pump the client and the PTY *master* of *proc* until it ends (or the client leaves)."""
    try:
        async with Tasks(f"pty:{ctx.session_id}") as tasks:
            out = tasks.spawn(_pump_out(ctx, master), "out")
            tasks.spawn(_pty_in(ctx, master, proc), "in")
            if not await until_hangup(ctx, tasks, [tasks.spawn(proc.wait(), "wait")]):
                await _terminate(proc, _pty_groups(master, proc))
            await drain([out], DRAIN_SECONDS)
    finally:
        os.close(master)
    return Exit.from_returncode(proc.returncode)


def _pty_groups(master: int, proc: Child) -> list[int]:
    groups = [proc.pid]
    with contextlib.suppress(OSError):
        groups.insert(0, os.tcgetpgrp(master))
    return groups


#: pause reading the child once this much waits for the client's window
HIGH_WATER = 256 * 1024


async def _pump_out(ctx: ActionContext, fd: int, *, stderr: bool = False) -> None:
    """A non-blocking PTY master or pipe to the client, until EOF (EIO: every slave is closed).

    One reader stays registered on the event loop for the whole session: each
    readiness reads and sends at once, with no task woken and no reader added
    and removed per chunk (the hot path of every keystroke's echo). When the
    client's window is full, reading pauses until it drains.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sink = ctx.process.stderr if stderr else ctx.process.stdout
    resuming: list[asyncio.Task[None]] = []

    def finish(error: OSError | None = None) -> None:
        loop.remove_reader(fd)
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(None)

    def readable() -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            finish(None if exc.errno == errno.EIO else exc)
            return
        if not data or not deliver(ctx, data, stderr=stderr):
            finish()
        elif sink.backlog() > HIGH_WATER:
            loop.remove_reader(fd)
            resuming[:] = [loop.create_task(resume())]

    async def resume() -> None:
        if not await drained(ctx, stderr=stderr):
            finish()
        elif not done.done():
            loop.add_reader(fd, readable)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        for task in resuming:
            task.cancel()


async def _pty_in(ctx: ActionContext, master: int, proc: Child) -> None:
    into = _PtyInput(ctx, master, proc)
    try:
        await ctx.process.pump(into)
    finally:
        into.writer.close()
    # a terminal has no half-close: the client's EOF is not forwarded


class _PtyInput:
    """The client's input into a PTY master, handed over as it arrives (``Channel.pump``).

    A keystroke is recorded and written to the PTY from the transport's own
    callback, with no task woken for it. When the PTY's buffer is full, the
    client's input is held (the returned future) until the rest is written.
    """

    def __init__(self, ctx: ActionContext, master: int, proc: Child) -> None:
        self.ctx, self.master, self.proc = ctx, master, proc
        self.writer = _FdWriter(master)

    def __call__(self, received: Received) -> asyncio.Future[None] | None:
        if isinstance(received, bytes):
            if received and not self.writer.broken:
                took(self.ctx, received, echo_off=self.echo_off)
                return self.writer.write(received)
        elif isinstance(received, Resize):
            self.ctx.recorder.resize(received.cols, received.rows)
            set_winsize(self.master, received.cols, received.rows, received.xpix, received.ypix)
        elif isinstance(received, Signal) and received.name in CLIENT_SIGNALS:
            _killpg(_pty_groups(self.master, self.proc)[0], signal.Signals[f"SIG{received.name}"])
        return None

    def echo_off(self) -> bool:
        """A password prompt: canonical mode with echo off.

        Line editors (readline, ash) turn canonical mode off and echo by
        themselves: that is recorded.
        """
        try:
            lflag = termios.tcgetattr(self.master)[3]
        except termios.error:
            return False
        return bool(lflag & termios.ICANON) and not lflag & termios.ECHO


class _FdWriter:
    """Bytes into a non-blocking descriptor (a PTY master, a pipe), with no coroutine when it takes them.

    What the descriptor cannot take at once waits for it to be writable, and
    ``write`` returns a future done once all of it is written; nothing more is
    written meanwhile. ``broken`` once the descriptor fails (the child is gone).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""
        self.flushed: asyncio.Future[None] | None = None
        self.broken = False

    def write(self, data: bytes) -> asyncio.Future[None] | None:
        """Into the descriptor now; else a future done once all is written (or the descriptor broke)."""
        try:
            written = os.write(self.fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self.broken = True
            return None
        if written == len(data):
            return None
        loop = asyncio.get_running_loop()
        self.pending, self.flushed = data[written:], loop.create_future()
        loop.add_writer(self.fd, self._writable)
        return self.flushed

    def _writable(self) -> None:
        try:
            self.pending = self.pending[os.write(self.fd, self.pending) :]
        except BlockingIOError:
            return
        except OSError:
            self.broken, self.pending = True, b""
        if not self.pending:
            self.close()

    def close(self) -> None:
        """Stop waiting for the descriptor (it is about to be closed, or all is written)."""
        if self.flushed is not None:
            asyncio.get_running_loop().remove_writer(self.fd)
            if not self.flushed.done():
                self.flushed.set_result(None)
            self.flushed = None


# ---------------------------------------------------------------- pipes


class Pipes:
    """Three pipes for a child without a PTY: the child's ends and ours (non-blocking).

    Each end is closed once: a second close could hit a number reused meanwhile.
    """

    def __init__(self) -> None:
        (in_r, in_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
        self.child = (in_r, out_w, err_w)
        self.ours = (in_w, out_r, err_r)
        self._open = {*self.child, *self.ours}
        for fd in self.ours:
            os.set_blocking(fd, False)

    def _close(self, fds: tuple[int, ...]) -> None:
        for fd in fds:
            if fd in self._open:
                self._open.discard(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)

    def close_child(self) -> None:
        """Once the child holds its ends."""
        self._close(self.child)

    def close_stdin(self) -> None:
        """The client's EOF: the child reads to its end."""
        self._close(self.ours[:1])

    def close(self) -> None:
        """Every descriptor still open."""
        self._close((*self.child, *self.ours))


async def _run_pipes(ctx: ActionContext, argv: list[str]) -> Exit:
    pipes = Pipes()
    try:
        stdin, stdout, stderr = pipes.child
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=stdin, stdout=stdout, stderr=stderr, env=ctx.clean_env(), start_new_session=True
        )
    except BaseException:
        pipes.close()
        raise
    pipes.close_child()
    return await bridge_pipes(ctx, pipes, proc)


async def bridge_pipes(ctx: ActionContext, pipes: Pipes, proc: Child) -> Exit:
    """Pump the client and *proc*'s three pipes until it ends (or the client leaves)."""
    _, stdout, stderr = pipes.ours
    try:
        async with Tasks(f"pipes:{ctx.session_id}") as tasks:
            out = tasks.spawn(_pump_out(ctx, stdout), "out")
            err = tasks.spawn(_pump_out(ctx, stderr, stderr=True), "err")
            tasks.spawn(_feed_in(ctx, pipes, proc), "in")
            if not await until_hangup(ctx, tasks, [tasks.spawn(proc.wait(), "wait")]):
                await _terminate(proc, [proc.pid])
            await drain([out, err], DRAIN_SECONDS)
    finally:
        pipes.close()
    return Exit.from_returncode(proc.returncode)


async def _feed_in(ctx: ActionContext, pipes: Pipes, proc: Child) -> None:
    async def deliver(sig: signal.Signals) -> None:
        _killpg(proc.pid, sig)

    writer = _FdWriter(pipes.ours[0])
    try:
        async for data in client_input(ctx, on_signal=deliver):
            waiting = writer.write(data)
            if waiting is not None:
                await waiting
            if writer.broken:
                return
    finally:
        writer.close()
    pipes.close_stdin()  # without a PTY, the client's EOF is real
