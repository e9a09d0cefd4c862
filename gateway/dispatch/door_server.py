"""The daemon's side of the door: ``gateway serve --door-socket PATH --keys-socket PATH``.

Two unix sockets (mode 0600), each for one account and one request; peers
must be root or that account (SO_PEERCRED). ``wire`` has the format.

- the **keys socket** (owned by ``--keys-user``, sshd's
  ``AuthorizedKeysCommandUser``): ``keyline FINGERPRINT PROGRAM``, the
  authorized_keys line for one key from the policy in force, whose
  ``command=`` carries a fresh single-use ticket bound to the key's principal
  and to the connection's sshd monitor, the asking process's parent
  (``dispatch.tickets``, ``dispatch.peers``); an unknown key gets an empty
  ``line`` and an ``auth.reject`` audit record, as `serve` records one.
- the **door socket** (owned by ``--door-user``, the account sshd runs the
  forced command as): ``session PRINCIPAL COMMAND CONNECTION TERM TICKET``
  with three descriptors (SCM_RIGHTS), sshd's stdin, stdout and stderr. The
  principal is the ticket's and the peer address is read from the monitor's
  TCP socket: a door-account peer without a live ticket, with another
  principal's, or not running below the ticket's sshd monitor gets
  ``refused`` and a ``door.refused`` record, and nothing runs. Otherwise the daemon answers
  ``accepted``, runs the very same Session as for its own SSH clients
  (``run_door_session``), hears ``winch`` and ``hangup`` meanwhile, and ends
  with ``status N SIGNAL``. A door that goes away is a hang-up.

The door account therefore cannot claim a principal, a source or a key: only
the keys account can have tickets minted, and only sshd reads its answers.
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
from gateway.channel import Break, Signal
from gateway.command import printable
from gateway.confine.warm import WARMER
from gateway.dispatch import peers, wire
from gateway.dispatch.main import Origin, run_door_session
from gateway.dispatch.stdio import FdProcess
from gateway.dispatch.tickets import TicketBook
from gateway.errors import AuditUnavailable, ConfigError
from gateway.events import Event
from gateway.fdwait import wait_fd
from gateway.policy import Policy
from gateway.runtime import Runtime
from gateway.session.door import may_enter, split_login, unknown_key
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


def peer_cred(conn: socket.socket) -> tuple[int, int]:
    """The connecting process's pid and uid (SO_PEERCRED)."""
    pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return int(pid), int(uid)


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


REFUSED = (
    "gateway: the door refused this session; nothing was run"
    " (connect through sshd with a key it authenticates; see deploy/OPENSSH.md)"
)


class DoorServer:
    """Accepts door and keys connections and serves each one."""

    def __init__(
        self, runtime: Runtime, path: Path, door_uid: int | None, keys_path: Path, keys_uid: int | None
    ) -> None:
        if door_uid is not None and door_uid != 0 and keys_uid == door_uid:
            raise ConfigError("--keys-user must not be the door user: the door account could mint tickets")
        self.rt = runtime
        self.paths = (path, keys_path)
        self.door_allowed = {0} | ({door_uid} if door_uid is not None else set())
        self.keys_allowed = {0} | ({keys_uid} if keys_uid is not None else set())
        self.sock = bind(path, door_uid)
        try:
            self.keys_sock = bind(keys_path, keys_uid)
        except ConfigError:
            self.sock.close()
            raise
        self.tickets = TicketBook()
        self.tasks = Tasks("door")

    async def run(self, *, unlink: bool = True) -> None:
        """Accept on both sockets until cancelled; then close them (and, with *unlink*, remove their files:
        a supervisor's worker leaves them to the supervisor, which keeps them across worker restarts)."""
        try:
            await asyncio.gather(self._accept(self.sock, keys=False), self._accept(self.keys_sock, keys=True))
        finally:
            self.close(unlink=unlink)
            await self.tasks.cancel_all()

    def close(self, *, unlink: bool = True) -> None:
        """Close both sockets; with *unlink*, remove their files."""
        for sock in (self.sock, self.keys_sock):
            sock.close()
        for path in self.paths if unlink else ():
            with contextlib.suppress(OSError):
                path.unlink()

    async def _accept(self, listener: socket.socket, *, keys: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            self.tasks.spawn(self._serve(conn, keys=keys), "conn")

    def _refused(self, uid: int, reason: str, **fields: str) -> None:
        record: dict[str, object] = {"uid": uid, "reason": reason, **fields}
        with contextlib.suppress(AuditUnavailable):
            self.rt.audit.emit(Event.DOOR_REFUSED, durable=False, **record)

    async def _serve(self, conn: socket.socket, *, keys: bool) -> None:
        with conn:
            conn.setblocking(False)
            pid, uid = peer_cred(conn)
            if uid not in (self.keys_allowed if keys else self.door_allowed):
                self._refused(uid, "peer not allowed", socket="keys" if keys else "door")
                return
            fds: list[int] = []
            try:
                request, rest, fds = await _first_message(conn)
                name = request[0] if request else ""
                if not keys and name == "session" and len(request or ()) in (6, 7) and len(fds) == 3:
                    assert request is not None
                    await self._session(conn, (pid, uid), request[1:], (fds[0], fds[1], fds[2]), rest)
                elif keys and name == "keyline" and len(request or ()) in (3, 4) and not fds:
                    assert request is not None
                    login = request[3] if len(request) == 4 else ""
                    await self._keyline(conn, (pid, uid), request[1], request[2], login)
                elif request is not None:
                    self._refused(uid, "not a request this socket takes", request=printable(name[:32]))
                    await _send(conn, "refused", REFUSED)
            except (ValueError, OSError) as exc:
                oplog.log().warning("door request failed", error=str(exc))
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    async def _keyline(
        self, conn: socket.socket, peer: tuple[int, int], fingerprint: str, program: str, login: str
    ) -> None:
        fingerprint, login = fingerprint[:128], printable(login[:64])
        settings = self.rt.settings
        program = program or settings.door_program or default_program()
        principal = self.rt.keys.principal_for(fingerprint)
        monitor = peers.sshd_monitor(peer[0])
        ticket = None
        if principal is not None and (monitor is not None or peer[1] == 0):
            ticket = self.tickets.mint(principal, fingerprint, monitor, login)
        door = Door(program, settings.policies, settings.keys, settings.state, settings.door_socket, ticket)
        try:
            line = key_line(self.rt.policy, self.rt.keys, fingerprint, door)
        except ConfigError:
            line = None
        if line is None:
            unknown_key(self.rt.audit.emit, fingerprint, door="openssh")
        elif may_enter(self.rt.policy, principal, _named_action(self.rt.policy, login)):
            WARMER.soon()  # sshd is about to authenticate a key that may open a container shell
        await _send(conn, "line", line or "")

    def _admit(
        self, peer: tuple[int, int], principal: str, connection: str, token: str
    ) -> tuple[str, str, str] | None:
        """The principal, peer and login the session runs as: the ticket's; None when refused (audited)."""
        pid, uid = peer
        if uid == 0 and not token:
            return principal, connection, ""  # root could do anything the daemon can
        ticket = self.tickets.redeem(token) if token else None
        claims = {
            "claimed_principal": printable(principal[:64]),
            "claimed_connection": printable(connection[:128]),
        }
        if ticket is None:
            self._refused(uid, "no valid ticket (missing, unknown, used or expired)", **claims)
        elif ticket.principal != principal:
            self._refused(uid, "the ticket is another principal's", principal=ticket.principal, **claims)
        elif ticket.monitor is None and uid != 0:
            self._refused(uid, "the ticket names no sshd connection", principal=ticket.principal, **claims)
        elif ticket.monitor is not None and not peers.below(pid, ticket.monitor):
            self._refused(
                uid,
                "not below the sshd connection the ticket was made for",
                principal=ticket.principal,
                **claims,
            )
        else:
            real = peers.connection(ticket.monitor) if ticket.monitor is not None else connection
            return ticket.principal, real, ticket.login
        return None

    async def _session(
        self,
        conn: socket.socket,
        peer: tuple[int, int],
        fields: list[str],
        fds: tuple[int, int, int],
        rest: bytes,
    ) -> None:
        claimed, command, claimed_connection, term, token, *extra = fields
        admitted = self._admit(peer, claimed, claimed_connection, token)
        if admitted is None:
            await _send(conn, "refused", REFUSED)
            return
        principal, connection, login = admitted
        await serve_session(self.rt, conn, (principal, command, connection, login), fds, term, extra, rest)


async def serve_session(
    rt: Runtime,
    conn: socket.socket,
    request: tuple[str, str, str, str],
    fds: tuple[int, int, int],
    term: str,
    extra: list[str],
    rest: bytes,
    net: Origin | None = None,
    env: dict[str, str] | None = None,
    size: str = "",
) -> None:
    """Run one admitted session (*request*: principal, command, connection, login) on *fds*: ``accepted``,
    ``winch`` and ``hangup`` heard meanwhile, then ``status N SIGNAL`` (the door's and the network
    worker's; *net*: where the worker's came from, *env*: its accepted environment, *size*: its
    terminal's ``COLS ROWS XPIX YPIX`` when the session has one, over a socket)."""
    principal, command, connection, login = request
    terminal = _size(size.split()) if size else None
    reason = extra[0] if extra else None
    process = FdProcess(None, fds, term=term or None, reason=reason, env=env, size=terminal)
    await _send(conn, "accepted")
    async with Tasks("door-session") as tasks:
        tasks.spawn(_control(conn, process, rest), "control")
        with process.attached():
            await run_door_session(rt, principal, command or None, connection, process, login, net)
    await _send(conn, "status", str(process.status), process.signal or "")


async def _send(conn: socket.socket, *fields: str) -> None:
    with contextlib.suppress(OSError):
        await asyncio.get_running_loop().sock_sendall(conn, wire.encode(*fields))


def _size(fields: list[str]) -> tuple[int, int, int, int] | None:
    """``COLS ROWS XPIX YPIX`` (a network worker's terminal), clamped; None unless four numbers."""
    if len(fields) != 4 or not all(f.isdigit() and len(f) < 8 for f in fields):
        return None
    cols, rows, xpix, ypix = (min(int(f), 65535) for f in fields)
    return cols, rows, xpix, ypix


async def _control(conn: socket.socket, process: FdProcess, pending: bytes) -> None:
    """``winch``, ``hangup``, ``signal NAME`` and ``break`` from the door (the last two only a network
    worker sends: sshd passes neither on); its going away (or garbage) is a hang-up."""
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
            elif message[:1] == ["winch"]:
                process.resized(_size(message[1:]))
            elif message == ["hangup"]:
                process.hang_up()
            elif message == ["break"]:
                process.asked(Break())
            elif (
                len(message) == 2 and message[0] == "signal" and message[1].isalnum() and len(message[1]) < 16
            ):
                process.asked(Signal(message[1]))
            continue
        try:
            chunk = await loop.sock_recv(conn, 1024)
        except OSError:
            chunk = b""
        if not chunk or len(buffer) > wire.LIMIT:
            process.hang_up()
            return
        buffer += chunk


def _named_action(policy: Policy, login: str) -> str | None:
    """The action a login names (an action's own account, ``ACTION+TARGET``), or None (the door account:
    the command's first word will name it)."""
    action = split_login(login)[0] if login else ""
    return action if action in policy.actions else None
