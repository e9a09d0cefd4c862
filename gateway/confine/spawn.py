"""The gateway's side of the spawner (``zygote.py``): start it once, ask it for confined children.

Each request gets its own SOCK_SEQPACKET control socket; the child's two
processes report on it (B's host pid, the PTY master, ``ready`` or a
refusal, then the wait status). ``Confined`` is the child as the bridge
sees it: ``pid``, ``returncode`` and ``wait()``, like an asyncio process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
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


class Spawner:
    """One spawner process per gateway process, started on first use and again if it died."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._owner = 0
        self._lock = asyncio.Lock()

    async def _ready(self) -> socket.socket:
        async with self._lock:
            alive = self._proc is not None and self._proc.returncode is None and self._owner == os.getpid()
            if self._sock is not None and alive:
                return self._sock
            if self._sock is not None:
                self._sock.close()
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

    async def spawn(self, request: dict[str, Any], fds: list[int]) -> Confined:
        """Send one request with *fds* (namespaces, cgroup.procs, stdio); the child, started.

        Raises Refusal when the child refused (its line and reason) or did not start.
        """
        sock = await self._ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            data = json.dumps(request).encode()
            await _send(sock, data, [theirs.fileno(), *fds])
        except OSError as exc:
            ours.close()
            raise _failed(f"spawner: {exc}") from None
        finally:
            theirs.close()
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
        if self._proc is not None and self._proc.returncode is None:
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

    async def _message(self) -> tuple[dict[str, Any], list[int]] | None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._control, 65536, 1)
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
        got = await self._message()
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
