"""A local child bridged to the SSH channel: on a PTY, or on three pipes.

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

from gateway.actions.base import ActionContext, Exit
from gateway.actions.channel import CHUNK, client_input, drain, send, until_hangup
from gateway.tasks import Tasks

DRAIN_SECONDS = 5.0
KILL_GRACE = 1.0


async def run_local(ctx: ActionContext, argv: list[str], pass_fds: tuple[int, ...] = ()) -> Exit:
    """Run *argv* on this host with a clean environment, bridged to the client.

    *pass_fds* are inherited by the child (the pinned namespaces for nsenter).
    """
    if ctx.process.get_terminal_type() is not None:
        return await _run_pty(ctx, argv, pass_fds)
    return await _run_pipes(ctx, argv, pass_fds)


def set_winsize(fd: int, cols: int, rows: int, xpix: int = 0, ypix: int = 0) -> None:
    """TIOCSWINSZ; on a master the kernel sends SIGWINCH to the foreground group."""
    size = struct.pack("HHHH", max(rows, 1), max(cols, 1), xpix, ypix)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, size)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait_fd(fd: int, *, write: bool) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def _terminate(proc: asyncio.subprocess.Process, groups: list[int]) -> None:
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


async def _run_pty(ctx: ActionContext, argv: list[str], pass_fds: tuple[int, ...]) -> Exit:
    cols, rows, xpix, ypix = ctx.terminal_size()
    master, slave = pty.openpty()
    try:
        set_winsize(master, cols, rows, xpix, ypix)
        # setsid --ctty: a new session with the slave as controlling tty,
        # without preexec_fn (unsafe beside asyncio's watcher threads).
        proc = await asyncio.create_subprocess_exec(
            "setsid",
            "--ctty",
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=ctx.clean_env(),
            pass_fds=pass_fds,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    try:
        async with Tasks(f"pty:{ctx.session_id}") as tasks:
            out = tasks.spawn(_pty_out(ctx, master), "out")
            tasks.spawn(_pty_in(ctx, master, proc), "in")
            if not await until_hangup(ctx, tasks, [tasks.spawn(proc.wait(), "wait")]):
                await _terminate(proc, _pty_groups(master, proc))
            await drain([out], DRAIN_SECONDS)
    finally:
        os.close(master)
    return Exit.from_returncode(proc.returncode)


def _pty_groups(master: int, proc: asyncio.subprocess.Process) -> list[int]:
    groups = [proc.pid]
    with contextlib.suppress(OSError):
        groups.insert(0, os.tcgetpgrp(master))
    return groups


async def _pty_out(ctx: ActionContext, master: int) -> None:
    while True:
        try:
            data = os.read(master, CHUNK)
        except BlockingIOError:
            await _wait_fd(master, write=False)
            continue
        except OSError as exc:  # EIO: every slave descriptor is closed
            if exc.errno == errno.EIO:
                return
            raise
        if not data or not await send(ctx, data):
            return


async def _pty_in(ctx: ActionContext, master: int, proc: asyncio.subprocess.Process) -> None:
    async def resize(cols: int, rows: int, xpix: int, ypix: int) -> None:
        set_winsize(master, cols, rows, xpix, ypix)

    async def deliver(sig: signal.Signals) -> None:
        _killpg(_pty_groups(master, proc)[0], sig)  # the terminal's foreground group

    def echo_off() -> bool:
        # A password prompt: canonical mode with echo off. Line editors (readline,
        # ash) turn canonical mode off and echo by themselves: that is recorded.
        try:
            lflag = termios.tcgetattr(master)[3]
        except termios.error:
            return False
        return bool(lflag & termios.ICANON) and not lflag & termios.ECHO

    async for data in client_input(ctx, on_resize=resize, on_signal=deliver, echo_off=echo_off):
        if not await _write_all(master, data):
            return
    # a terminal has no half-close: the client's EOF is not forwarded


async def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _wait_fd(fd, write=True)
        except OSError:
            return False
    return True


# ---------------------------------------------------------------- pipes


async def _run_pipes(ctx: ActionContext, argv: list[str], pass_fds: tuple[int, ...]) -> Exit:
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=pipe,
        stdout=pipe,
        stderr=pipe,
        env=ctx.clean_env(),
        start_new_session=True,
        pass_fds=pass_fds,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    async with Tasks(f"pipes:{ctx.session_id}") as tasks:
        out = tasks.spawn(_copy_out(ctx, proc.stdout, stderr=False), "out")
        err = tasks.spawn(_copy_out(ctx, proc.stderr, stderr=True), "err")
        tasks.spawn(_feed_in(ctx, proc), "in")
        if not await until_hangup(ctx, tasks, [tasks.spawn(proc.wait(), "wait")]):
            await _terminate(proc, [proc.pid])
        await drain([out, err], DRAIN_SECONDS)
    return Exit.from_returncode(proc.returncode)


async def _copy_out(ctx: ActionContext, source: asyncio.StreamReader, *, stderr: bool) -> None:
    while data := await source.read(CHUNK):
        if not await send(ctx, data, stderr=stderr):
            return


async def _feed_in(ctx: ActionContext, proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None

    async def deliver(sig: signal.Signals) -> None:
        _killpg(proc.pid, sig)

    async for data in client_input(ctx, on_signal=deliver):
        try:
            proc.stdin.write(data)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return
    with contextlib.suppress(OSError):
        proc.stdin.close()  # without a PTY, the client's EOF is real
