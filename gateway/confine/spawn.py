"""The gateway's side of the spawner (``zygote.py``): reach it, ask it for confined children.

The spawner is either the gateway's own child (started on first use, and
again if it died), or, with ``serve --spawner PATH``, a daemon started apart
(the shipped unit's ``ExecStartPre=+``, outside the unit's sandbox, so that
the shells it starts carry their container's confinement and not the
unit's), reached on its socket.

Each request gets its own SOCK_SEQPACKET control socket; the child's two
processes report on it (B's host pid, the PTY master, ``ready`` or a
refusal, then the wait status). ``Confined`` is the child as the bridge
sees it: ``pid``, ``returncode`` and ``wait()``, like an asyncio process.
A profile request's P answers on its own the same way (``profile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.errors import Refusal
from gateway.events import RefusalKind
from gateway.fdwait import wait_fd

ZYGOTE = Path(__file__).resolve().with_name("zygote.py")
START_SECONDS = 5.0
SEND_SECONDS = 5.0


def daemon_command(path: Path | str, zygote: Path = ZYGOTE) -> list[str]:
    """The spawner as a daemon of its own, listening on *path* (what the unit's ExecStartPre=+ runs)."""
    return [sys.executable, "-I", "-S", str(zygote), "--listen", str(path)]


def unanswered(path: Path | str) -> str | None:
    """Why no spawner answers at *path* (a local connect: at once, or refused at once); None if one does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
        probe.setblocking(False)
        try:
            probe.connect(str(path))
        except OSError as exc:
            return exc.strerror or type(exc).__name__
    return None


def daemon_pid(path: Path | str) -> int:
    """The pid of the spawner serving at *path* (its SO_PEERCRED), or 0 when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return 0
        pid, _uid, _gid = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return int(pid)


class SpawnerError(Exception):
    """The spawner could not be reached or did not answer."""


class Spawner:
    """One spawner connection per gateway process: its own child, or the daemon at ``path``."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._owner = 0
        self._lock = asyncio.Lock()
        #: the daemon's socket (``serve --spawner``); None: the gateway starts its own
        self.path: str | None = None

    async def _ready(self) -> socket.socket:
        async with self._lock:
            alive = self.path is not None or (self._proc is not None and self._proc.returncode is None)
            if self._sock is not None and self._owner == os.getpid() and alive:
                return self._sock
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self.path is not None:
                return self._connect(self.path)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-S", str(ZYGOTE), str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                )  # fmt: skip
            finally:
                theirs.close()
            ours.setblocking(False)
            self._sock, self._owner = ours, os.getpid()
            return ours

    def _connect(self, path: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(path)  # a local listener: at once, or refused at once
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"the spawner at {path}: {exc.strerror}") from None
        sock.setblocking(False)
        self._sock, self._owner = sock, os.getpid()
        return sock

    async def _ask(self, request: dict[str, Any], fds: list[int]) -> socket.socket:
        """Send one request with its own control socket first; that socket (OSError if not sent)."""
        sock = await self._ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            await _send(sock, json.dumps(request).encode(), [theirs.fileno(), *fds])
        except OSError:
            ours.close()
            if self._sock is sock:  # a daemon restarted, a child gone: the next request reconnects
                self._sock = None
                sock.close()
            raise
        finally:
            theirs.close()
        return ours

    async def profile(self, pid: int, pidfd: int) -> dict[str, Any]:
        """The container process's bounding set, no_new_privs and seccomp programs, read by the spawner."""
        try:
            control = await self._ask({"profile": pid}, [pidfd])
        except OSError as exc:
            raise SpawnerError(f"spawner: {exc}") from None
        reply = Confined(control)
        try:
            got = await reply.message()
        finally:
            reply.close()
        if got is None:
            raise SpawnerError("the spawner's reader ended without an answer")
        message, _fds = got
        if not isinstance(message.get("profile"), dict):
            raise SpawnerError(str(message.get("error", "no answer")))
        return dict(message["profile"])

    async def spawn(self, request: dict[str, Any], fds: list[int]) -> Confined:
        """Send one request with *fds* (namespaces, cgroup.procs, stdio); the child, started.

        Raises Refusal when the child refused (its line and reason) or did not start.
        """
        try:
            ours = await self._ask(request, fds)
        except OSError as exc:
            raise _failed(f"spawner: {exc}") from None
        child = Confined(ours)
        try:
            await asyncio.wait_for(child.started(), START_SECONDS)
        except TimeoutError:
            child.close()
            raise _failed("the child did not start in time") from None
        except BaseException:
            child.close()
            raise
        return child

    async def close(self) -> None:
        """Stop the spawner (its children live on until their sessions end)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None and self._proc.returncode is None and self._owner == os.getpid():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 2)


async def _send(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    """One request: at once when the socket has room (nearly always), else when it has."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SEND_SECONDS
    while True:
        try:
            socket.send_fds(sock, [data], fds)
            return
        except BlockingIOError:
            await asyncio.wait_for(wait_fd(sock.fileno(), write=True), max(deadline - loop.time(), 0))


def _failed(reason: str) -> Refusal:
    return Refusal(
        "gateway: could not confine the session; nothing was run", reason=reason, kind=RefusalKind.ACTION
    )


class Confined:
    """A child started by the spawner: its pid, its PTY master if any, its end."""

    def __init__(self, control: socket.socket) -> None:
        control.setblocking(False)
        self._control = control
        self.pid = 0
        self.master: int | None = None
        self.returncode: int | None = None
        self._ready = False

    async def message(self) -> tuple[dict[str, Any], list[int]] | None:
        """The next message and its descriptors; None at the end of the stream."""
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._control, 1 << 20, 1)
            except BlockingIOError:
                await wait_fd(self._control.fileno(), write=False)
                continue
            except OSError:
                return None
            if not data:
                return None
            try:
                message = json.loads(data)
            except ValueError:
                message = {}
            return (message if isinstance(message, dict) else {}), fds

    async def _handle(self) -> bool:
        """Take one message; False at the end of the stream."""
        got = await self.message()
        if got is None:
            if self.returncode is None:
                self.returncode = -9  # A is gone without a word: killed with the session
            return False
        message, fds = got
        if "pty" in message and fds and self.master is None:
            self.master = fds.pop(0)
            os.set_blocking(self.master, False)
        for fd in fds:
            os.close(fd)
        if "pid" in message:
            self.pid = int(message["pid"])
        elif "ready" in message:
            self._ready = True
        elif "exit" in message:
            self.returncode = os.waitstatus_to_exitcode(int(message["exit"]))
        elif "refuse" in message:
            raise Refusal(
                f"gateway: {message['refuse']}",
                reason=str(message.get("reason", "")),
                kind=RefusalKind.ACTION,
            )
        elif "error" in message:
            raise _failed(str(message["error"]))
        return True

    async def started(self) -> None:
        """Until B is about to exec and its pid is known; Refusal if it refused or died."""
        while not (self._ready and self.pid):
            if not await self._handle():
                raise _failed("the child ended before it started")

    async def wait(self) -> int:
        """The child's returncode (negative: the signal that killed it), as asyncio gives."""
        with contextlib.suppress(Refusal):
            while self.returncode is None and await self._handle():
                pass
        self._control.close()
        return self.returncode if self.returncode is not None else -9

    def close(self) -> None:
        """Drop the control socket and the master (after a refusal)."""
        self._control.close()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None


SPAWNER = Spawner()
