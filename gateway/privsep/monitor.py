"""The monitor: the privileged half, which believes only what it can check.

``serve --net-user ACCOUNT`` binds the port, starts one network worker
(``privsep.net``) with the listening socket, closes its own copy, and answers
the worker's questions (``privsep.link``); see docs/security.md. Per worker:

- every exchange hash it signs is remembered (bounded); a signature over a
  hash is the only way a hash becomes a connection's session identifier;
- a client's signature is verified here, over a session identifier this
  monitor signed and no other connection claimed, with the key or
  certificate and the login parsed from the signed request itself; only then
  is the connection's principal named, and audited (``auth.accept``);
- a session request is run only for the principal authenticated on that
  connection; anything else (no such connection, not authenticated, another
  principal) is refused with one line and a ``door.refused`` record, and
  nothing runs. An admitted request is the door's: decided, audited, run and
  recorded by ``dispatch.main.run_door_session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from typing import Any

import asyncssh
from asyncssh.packet import SSHPacket, String
from asyncssh.public_key import decode_ssh_certificate, decode_ssh_public_key

from gateway import metrics, oplog
from gateway.auth import certificate_principal
from gateway.command import printable
from gateway.dispatch import wire
from gateway.dispatch.door_server import REFUSED, serve_session
from gateway.dispatch.main import Origin
from gateway.environment import accepted_var, helper_env
from gateway.errors import AuditUnavailable, ConfigError
from gateway.events import Event, RefusalKind
from gateway.fdwait import wait_fd
from gateway.hostkey import load_or_create_host_key
from gateway.privsep.link import PACKET
from gateway.runtime import Runtime
from gateway.session import door
from gateway.settings import NET_USER
from gateway.tasks import Tasks

MSG_USERAUTH_REQUEST = 50
MAX_SIGNED = 8192
MAX_CONNECTIONS = 20000
MAX_HASH = 64  # SHA-512
START_SECONDS = 30.0


class NetConnection:
    """One of the worker's connections as the monitor knows it (``session.door.Connection``)."""

    def __init__(self, rt: Runtime, host: str, port: int) -> None:
        self.rt = rt
        self.session_id = secrets.token_hex(8)
        self.peer_host, self.peer = host, f"{host}:{port}"
        self.connection = f"{host} {port}"
        self.action = ""
        self.login_target: str | None = None
        self.principal: str | None = None
        self.fingerprint: str | None = None
        self.identifier: bytes | None = None
        self.opened = time.monotonic()
        self.rejected: set[str] = set()
        self.failures = 0
        self.unauthenticated = True
        self.sessions = 0
        #: a certificate's force-command, and whether it permits a PTY (a plain key does)
        self.forced: str | None = None
        self.pty = True

    def audit(self, event: Event, *, durable: bool = False, **fields: Any) -> None:
        """An audit event tied to this connection."""
        self.rt.audit.emit(event, durable=durable, session_id=self.session_id, peer=self.peer, **fields)


def _userauth(msg: bytes) -> tuple[str, bytes]:
    """The login and key blob of a signed ``publickey`` request; ValueError for anything else."""
    packet = SSHPacket(msg)
    if packet.get_byte() != MSG_USERAUTH_REQUEST:
        raise ValueError("not a userauth request")
    user = packet.get_string()
    if packet.get_string() != b"ssh-connection" or packet.get_string() != b"publickey":
        raise ValueError("not a publickey request for ssh-connection")
    if not packet.get_boolean():
        raise ValueError("no signature in the request")
    packet.get_string()  # the signature algorithm: the signature names it, and verify checks it
    key_data = packet.get_string()
    packet.check_end()
    return user.decode("utf-8", "replace"), key_data


def _decode_key(key_data: bytes) -> tuple[asyncssh.SSHKey, Any | None]:
    """(the key that signs, the certificate or None); ValueError for what is neither."""
    try:
        cert = decode_ssh_certificate(key_data)
    except (asyncssh.KeyImportError, ValueError):
        cert = None
    if cert is not None:
        return cert.key, cert
    try:
        return decode_ssh_public_key(key_data), None
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not a key: {exc}") from exc


class Monitor:
    """Answers one network worker."""

    def __init__(
        self,
        rt: Runtime,
        sock: socket.socket,
        port: int,
        worker_uid: int,
        listener: socket.socket | None,
        host_key: asyncssh.SSHKey,
    ) -> None:
        self.rt = rt
        #: the bound port, until the worker (locked down) takes it
        self.listener = listener
        self.sock = sock
        self.port = port
        self.uid = worker_uid
        self.host_key = asyncssh.load_keypairs([host_key])[0]
        self.signed: OrderedDict[bytes, str] = OrderedDict()
        self.connections: dict[str, NetConnection] = {}
        self.ready = asyncio.Event()
        self.tasks = Tasks("monitor")

    # the conversation
    async def run(self) -> None:
        """Answer until the worker goes away."""
        try:
            while True:
                await wait_fd(self.sock.fileno())
                try:
                    data, fds, _flags, _addr = socket.recv_fds(self.sock, PACKET, 8)
                except BlockingIOError:
                    continue
                if not data:
                    return
                kept: list[int] = []
                try:
                    found = wire.decode(data)
                    reply = self._answer(found[0] if found else [], fds, kept)
                except Exception as exc:  # anything a worker sends: answered, never the monitor's end
                    reply = ("no", "malformed")
                    self._forged(f"a request the monitor cannot read ({type(exc).__name__})", [])
                finally:
                    for fd in fds:
                        if fd not in kept:
                            with contextlib.suppress(OSError):
                                os.close(fd)
                if reply == ("listen",) and self.listener is not None:
                    socket.send_fds(self.sock, [wire.encode("ok")], [self.listener.fileno()])
                    self.listener.close()
                    self.listener = None
                    continue
                self.sock.send(wire.encode(*reply))
        finally:
            if self.listener is not None:
                self.listener.close()
            await self.tasks.cancel_all()

    def _answer(self, request: list[str], fds: list[int], kept: list[int]) -> tuple[str, ...]:  # noqa: PLR0911 - one per request
        name, args = (request[0], request[1:]) if request else ("", [])
        if name == "sign" and len(args) == 1 and not fds:
            return self._sign(bytes.fromhex(args[0]))
        if name == "open" and not args and len(fds) == 1:
            return self._open(fds[0])
        if name == "listen" and not args and not fds and self.listener is not None:
            return ("listen",)
        if name == "ready" and not args:
            self.ready.set()
            return ("ok",)
        conn = self.connections.get(args[0]) if args else None
        if name == "session" and len(args) == 6 and len(fds) in (2, 4):
            return self._session(conn, args, fds, kept)
        if conn is None:
            self._forged(f"{printable(name[:32])} for a connection this worker did not open", args)
            return ("no", "no such connection")
        if name == "key" and len(args) == 3 and not fds:
            return self._key(conn, args[1], bytes.fromhex(args[2]))
        if name == "auth" and len(args) == 4 and not fds:
            return self._auth(conn, *(bytes.fromhex(a) for a in args[1:]))
        if name == "refused" and len(args) == 3 and not fds:
            return self._refused(conn, args[1], args[2])
        if name == "closed" and len(args) == 2 and not fds:
            return self._closed(conn, args[1])
        self._forged(f"not a request the monitor takes: {printable(name[:32])}", args)
        return ("no", "not a request the monitor takes")

    def _forged(self, reason: str, args: list[str], **fields: str) -> None:
        """``door.refused``: what the worker asked for that no client authenticated."""
        with contextlib.suppress(AuditUnavailable):
            self.rt.audit.emit(
                Event.DOOR_REFUSED,
                durable=False,
                uid=self.uid,
                socket="monitor",
                reason=reason,
                claimed_connection=printable(args[0][:64]) if args else "",
                **fields,
            )

    # the host key
    def _sign(self, data: bytes) -> tuple[str, ...]:
        if not data or len(data) > MAX_HASH:
            self._forged("a signature asked for over something that is not an exchange hash", [])
            return ("no", "not an exchange hash")
        self.signed[data] = ""
        while len(self.signed) > MAX_SIGNED:
            self.signed.popitem(last=False)
        return ("sig", self.host_key.sign(data).hex())

    # connections
    def _open(self, fd: int) -> tuple[str, ...]:
        with socket.socket(fileno=os.dup(fd)) as sock:
            tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
            if not tcp or sock.getsockname()[1] != self.port:
                self._forged("a connection that is not on the gateway's port", [])
                return ("no", "not a connection on the gateway's port")
            host, port = sock.getpeername()[:2]
        if len(self.connections) >= MAX_CONNECTIONS:
            return ("no", "too many connections")
        conn = NetConnection(self.rt, str(host), int(port))
        refused = (
            "the gateway is shutting down"
            if self.rt.draining
            else self.rt.limits.admit_connection(conn.peer_host)
        )
        if refused is not None:
            door.turned_away(conn, refused)
            return ("no", refused)
        self.connections[conn.session_id] = conn
        metrics.CONNECTIONS.inc()
        settings = self.rt.settings
        door.opened(conn, worker=settings.worker if settings.workers > 1 else None)
        return ("ok", conn.session_id)

    def _closed(self, conn: NetConnection, error: str) -> tuple[str, ...]:
        del self.connections[conn.session_id]
        if conn.identifier is not None:
            self.signed.pop(conn.identifier, None)
        if conn.unauthenticated:
            door.left_unauthenticated(conn, failures=conn.failures, stalled="timeout" in error.lower())
        door.closed(conn, printable(error[:200]) or None)
        return ("ok",)

    def _refused(self, conn: NetConnection, kind: str, fields: str) -> tuple[str, ...]:
        try:
            known = RefusalKind(kind)
            parsed = json.loads(fields)
        except ValueError:
            self._forged("a refusal report the monitor cannot read", [conn.session_id])
            return ("no", "unreadable")
        items = dict(parsed).items() if isinstance(parsed, dict) else ()
        clean = {str(k)[:32]: v if isinstance(v, int) else printable(str(v)[:200]) for k, v in items}
        door.refused(conn, known, **clean)
        return ("ok",)

    # authentication
    def _principal(self, conn: NetConnection, key: asyncssh.SSHKey, cert: Any | None) -> str | None:
        """The key's principal (or the certificate's), or None (audited once per key)."""
        if cert is not None:
            principal, reason = certificate_principal(self.rt, cert, conn.peer_host)
            if reason is not None:
                door.certificate_refused(conn, cert, reason)
            return principal
        fingerprint = key.get_fingerprint("sha256")
        principal = self.rt.keys.principal_for(fingerprint)
        if principal is None and fingerprint not in conn.rejected:
            conn.rejected.add(fingerprint)
            conn.failures += 1
            door.key_failed(conn, fingerprint)
        return principal

    def _key(self, conn: NetConnection, login: str, key_data: bytes) -> tuple[str, ...]:
        """May this key try (no signature yet)?"""
        conn.action, conn.login_target = door.split_login(login)
        key, cert = _decode_key(key_data)
        return ("ok",) if self._principal(conn, key, cert) is not None else ("no",)

    def _auth(self, conn: NetConnection, identifier: bytes, msg: bytes, signature: bytes) -> tuple[str, ...]:
        """The client's signature, checked here over a session identifier this monitor signed."""
        bound = self.signed.get(identifier)
        if bound is None or bound not in ("", conn.session_id) or conn.identifier not in (None, identifier):
            self._forged(
                "authentication over a session identifier the monitor did not sign for it", [conn.session_id]
            )
            return ("no",)
        login, key_data = _userauth(msg)
        key, cert = _decode_key(key_data)
        conn.action, conn.login_target = door.split_login(login)
        if not key.verify(String(identifier) + msg, signature):
            self._forged("a signature that does not verify", [conn.session_id])
            return ("no",)
        principal = self._principal(conn, key, cert)
        if principal is None:
            return ("no",)
        self.signed[identifier] = conn.session_id
        conn.identifier = identifier
        if cert is not None:
            options = dict(cert.options)
            forced = options.get("force-command")
            conn.forced = str(forced) if forced is not None else None
            conn.pty = bool(options.get("permit-pty"))
        conn.principal, conn.fingerprint = principal, key.get_fingerprint("sha256")
        if conn.unauthenticated:
            conn.unauthenticated = False
            self.rt.limits.authenticated(conn.peer_host)
        door.accepted(conn, fingerprint=conn.fingerprint)
        return ("ok", principal)

    # sessions
    def _session(
        self, conn: NetConnection | None, args: list[str], fds: list[int], kept: list[int]
    ) -> tuple[str, ...]:
        """Run one session channel for the connection's own principal; anything else refused."""
        _conn_id, claimed, command, term, environment, size = args
        claims = {"claimed_principal": printable(claimed[:64])}
        if conn is None:
            self._forged("a session on a connection this worker did not open", args, **claims)
        elif conn.principal is None:
            self._forged("a session on a connection where no one authenticated", args, **claims)
        elif claimed != conn.principal:
            self._forged(
                "a session for a principal who did not authenticate on that connection", args, **claims
            )
        elif conn.sessions >= self.rt.settings.max_sessions_per_connection:
            self._forged("more sessions than a connection may have", args, **claims)
        else:
            conn.sessions += 1
            if conn.forced is not None:
                command = conn.forced  # as sshd and asyncssh honour a certificate's force-command
            if not conn.pty:
                term, size = "", ""
            control, streams = fds[0], fds[1:] * 3 if len(fds) == 2 else fds[1:]
            kept += fds
            request = (conn.principal, command, conn.connection, conn.action)
            env = _accepted(environment)
            origin = Origin(conn.session_id, conn.action, conn.login_target)
            self.tasks.spawn(
                self._run(control, (streams[0], streams[1], streams[2]), request, (term, size), env, origin),
                "session",
            )
            return ("ok",)
        return ("refused", REFUSED)

    async def _run(
        self,
        control: int,
        streams: tuple[int, int, int],
        request: tuple[str, str, str, str],
        terminal: tuple[str, str],
        env: dict[str, str],
        origin: Origin,
    ) -> None:
        with socket.socket(fileno=control) as sock:
            sock.setblocking(False)
            try:
                term, size = terminal
                await serve_session(self.rt, sock, request, streams, term, [], b"", origin, env, size)
            except OSError as exc:
                oplog.log().warning("session failed", error=str(exc))
            finally:
                for fd in set(streams):
                    with contextlib.suppress(OSError):
                        os.close(fd)


def _accepted(environment: str) -> dict[str, str]:
    """The client's environment as the worker passed it (JSON), each variable checked again here."""
    try:
        parsed = json.loads(environment) if environment else {}
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    env = {}
    for name, value in list(parsed.items())[:64]:
        accepted = accepted_var(str(name).encode(), str(value).encode())
        if accepted is not None:
            env[accepted[0]] = accepted[1]
    return env


def account(name: str) -> tuple[int, int]:
    """The network workers' account: (uid, gid), the default one made if missing; ConfigError for root or
    another name that does not exist."""
    if name == NET_USER:
        _make(name)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"--net-user {name}: no such account (create it: useradd --system --no-create-home"
            f" --shell /usr/sbin/nologin {name})"
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise ConfigError(f"--net-user {name}: the network workers' account must not be root's")
    return entry.pw_uid, entry.pw_gid


def _make(name: str) -> None:
    """A system account with no home, no shell and no password, unless it exists (useradd's own)."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--user-group", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        raise ConfigError(f"cannot make the account {name} for the network workers: {made.stderr.strip()}")
    oplog.log().info("made the network workers' account", account=name)


class Separated:
    """The listening port as a monitor holds it: a network worker and its monitor (asyncssh's acceptor
    shape: ``get_port``, ``close``, ``wait_closed``); ``ended`` is set if the worker ends by itself."""

    def __init__(self, rt: Runtime, *, reuse_port: bool) -> None:
        settings = rt.settings
        assert settings.net_user is not None
        uid, gid = account(settings.net_user)
        host = settings.listen.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Bound, not listening: no root process ever listens on the port. The worker asks for it once it
        # is locked down (``listen``), listens itself, and this copy is closed.
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, settings.listen.port))
        except OSError:
            listener.close()
            raise
        self.port = int(listener.getsockname()[1])
        host_key = load_or_create_host_key(settings.state)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {
            "link_fd": theirs.fileno(),
            "uid": uid,
            "gid": gid,
            "host_key": host_key.export_public_key().decode(),
            "ciphers": rt.algorithms.ciphers,
            "macs": rt.algorithms.macs,
            "kex": rt.algorithms.kex,
            "lean": settings.lean_parts if settings.lean_path else (),
            "max_sessions": settings.max_sessions_per_connection,
            "login_timeout": settings.login_timeout,
            "log_format": settings.log_format,
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.privsep.net", json.dumps(config)],
                pass_fds=(theirs.fileno(),),
                env=helper_env(),
                cwd="/",
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            listener.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.monitor = Monitor(rt, ours, self.port, uid, listener, host_key)
        self.ended = asyncio.Event()
        self.closing = self.failed = False
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="monitor")

    async def _serve(self) -> None:
        try:
            await self.monitor.run()
        finally:
            self.ended.set()
            if not self.closing:  # the worker died (or closed its end): this gateway process stops, failed
                self.failed = True
                oplog.log().error("the network worker ended", pid=self.process.pid)
                os.kill(os.getpid(), signal.SIGTERM)

    async def started(self) -> None:
        """Wait for the worker to serve; ConfigError if it ends or does not come up."""
        ready = asyncio.ensure_future(self.monitor.ready.wait())
        ended = asyncio.ensure_future(self.ended.wait())
        await asyncio.wait((ready, ended), timeout=START_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (ready, ended):
            waiter.cancel()
        if not self.monitor.ready.is_set():
            self.closing = True
            self.process.kill()
            raise ConfigError("the network worker did not start (see its error above)")

    def get_port(self) -> int:
        """The bound port."""
        return self.port

    def close(self) -> None:
        """Stop accepting (SIGUSR1: the worker closes its listening socket); its connections go on."""
        self.closing = True
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGUSR1)

    async def wait_closed(self) -> None:
        """Nothing to wait for: the worker stops accepting at once."""

    async def stop(self) -> None:
        """End the worker (after the drain): its connections end, and so do their sessions."""
        self.closing = True
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        await asyncio.to_thread(self.process.wait)
        await self._task
