"""The daemon's side of the door: ``gateway serve --door-socket PATH``.

A unix socket (mode 0600, owned by ``--door-user`` when given), whose peers
must be root or that user (SO_PEERCRED). Two requests (``wire`` has the format):

- ``session``: the first message comes with three descriptors (SCM_RIGHTS):
  sshd's stdin, stdout and stderr. The daemon answers ``accepted``, runs the
  very same Session as for its own SSH clients on them
  (``run_door_session``), hears ``winch`` and ``hangup`` meanwhile, and ends
  with ``status N SIGNAL``. A door that goes away is a hang-up.
- ``keyline``: the authorized_keys line for one fingerprint, from the policy
  in force (sshd's ``AuthorizedKeysCommand``); an unknown key gets an empty
  ``line`` and an ``auth.reject`` audit record, as `serve` records one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
import sys
from pathlib import Path

from gateway import oplog
from gateway.authorized_keys import Door, key_line
from gateway.dispatch import wire
from gateway.dispatch.main import run_door_session
from gateway.dispatch.stdio import FdProcess
from gateway.errors import AuditUnavailable, ConfigError
from gateway.fdwait import wait_fd
from gateway.runtime import Runtime
from gateway.tasks import Tasks

_UCRED = struct.Struct("3i")


def default_program() -> str:
    """How sshd runs the gateway unless told otherwise: this Python, -S, the door launcher."""
    return f"{sys.executable} -S {Path(__file__).resolve().parents[1] / 'door.py'}"


def bind(path: Path, owner: int | None) -> socket.socket:
    """The listening socket: a stale socket file is replaced, anything else is refused."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        path.chmod(0o600)
        if owner is not None:
            os.chown(path, owner, -1)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on the door socket {path}: {exc.strerror}") from exc
    return sock


def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid (SO_PEERCRED)."""
    _pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return int(uid)


async def _first_message(conn: socket.socket) -> tuple[list[str] | None, bytes, list[int]]:
    """The request, what came after it, and any descriptors that came with it."""
    data, fds = b"", list[int]()
    while True:
        found = wire.decode(data)  # ValueError for garbage: the caller drops the connection
        if found is not None:
            return found[0], found[1], fds
        await wait_fd(conn.fileno())
        try:
            chunk, got, _flags, _addr = socket.recv_fds(conn, 4096, 3)
        except BlockingIOError:
            continue
        fds += got
        if not chunk or len(data) > wire.LIMIT:
            return None, b"", fds
        data += chunk


class DoorServer:
    """Accepts door connections and serves each one."""

    def __init__(self, runtime: Runtime, path: Path, door_uid: int | None) -> None:
        self.rt = runtime
        self.path = path
        self.allowed = {0} | ({door_uid} if door_uid is not None else set())
        self.sock = bind(path, door_uid)
        self.tasks = Tasks("door")

    async def run(self) -> None:
        """Accept until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                conn, _ = await loop.sock_accept(self.sock)
                self.tasks.spawn(self._serve(conn), "conn")
        finally:
            self.sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            await self.tasks.cancel_all()

    async def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.setblocking(False)
            uid = peer_uid(conn)
            if uid not in self.allowed:
                with contextlib.suppress(AuditUnavailable):
                    self.rt.audit.emit("door.refused", uid=uid, reason="peer not allowed")
                return
            fds: list[int] = []
            try:
                request, rest, fds = await _first_message(conn)
                if request is not None and request[:1] == ["session"] and len(request) == 5 and len(fds) == 3:
                    await self._session(conn, request[1:], (fds[0], fds[1], fds[2]), rest)
                elif request is not None and request[:1] == ["keyline"] and len(request) == 3 and not fds:
                    await self._keyline(conn, request[1], request[2])
            except (ValueError, OSError) as exc:
                oplog.log().warning("door request failed", error=str(exc))
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    async def _keyline(self, conn: socket.socket, fingerprint: str, program: str) -> None:
        fingerprint = fingerprint[:128]
        settings = self.rt.settings
        program = program or settings.door_program or default_program()
        door = Door(program, settings.policies, settings.keys, settings.state, settings.door_socket)
        try:
            line = key_line(self.rt.policy, self.rt.keys, fingerprint, door)
        except ConfigError:
            line = None
        if line is None:
            with contextlib.suppress(AuditUnavailable):
                self.rt.audit.emit(
                    "auth.reject", fingerprint=fingerprint, reason="unknown key", door="openssh"
                )
        await _send(conn, "line", line or "")

    async def _session(
        self, conn: socket.socket, fields: list[str], fds: tuple[int, int, int], rest: bytes
    ) -> None:
        principal, command, connection, term = fields
        process = FdProcess(None, fds, term=term or None)
        await _send(conn, "accepted")
        async with Tasks("door-session") as tasks:
            tasks.spawn(_control(conn, process, rest), "control")
            with process.attached():
                await run_door_session(self.rt, principal, command or None, connection, process)
        await _send(conn, "status", str(process.status), process.signal or "")


async def _send(conn: socket.socket, *fields: str) -> None:
    with contextlib.suppress(OSError):
        await asyncio.get_running_loop().sock_sendall(conn, wire.encode(*fields))


async def _control(conn: socket.socket, process: FdProcess, pending: bytes) -> None:
    """``winch`` and ``hangup`` from the door; its going away (or garbage) is a hang-up."""
    loop = asyncio.get_running_loop()
    buffer = pending
    while True:
        try:
            found = wire.decode(buffer)
        except ValueError:
            found, buffer = None, b"\0" * (wire.LIMIT + 1)
        if found is not None:
            message, buffer = found
            if message == ["winch"]:
                process.resized()
            elif message == ["hangup"]:
                process.hang_up()
            continue
        try:
            chunk = await loop.sock_recv(conn, 1024)
        except OSError:
            chunk = b""
        if not chunk or len(buffer) > wire.LIMIT:
            process.hang_up()
            return
        buffer += chunk
