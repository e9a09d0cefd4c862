"""The SSHServer subclass: one per connection. Key -> principal, deny by default.

Every hook that could open something (forwarding, tunnels, extra sessions)
refuses it and writes a ``request.deny`` audit event naming what it was.
"""

from __future__ import annotations

import secrets
import time
from ipaddress import ip_address
from typing import Any

import asyncssh
from asyncssh.public_key import CERT_TYPE_USER

from gateway import metrics, sshfast
from gateway.events import Event, RefusalKind
from gateway.forwarding import RefusesForwarding, prohibited
from gateway.runtime import Runtime
from gateway.session import Session, door
from gateway.ssh_channel import GatewayProcess, SSHChannel
from gateway.sshfast import install_lean_channel, install_lean_receive, install_lean_sends
from gateway.sshhooks import (
    install_certificate_hook,
    install_kex_hooks,
    install_quickack,
    install_refusal_hooks,
    set_certificate_options,
)

SFTP_VERSION = 3  # unused: no sftp_factory is ever given


class GatewayServer(RefusesForwarding, asyncssh.SSHServer):
    """Authentication and channel policy for one SSH connection."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.session_id = secrets.token_hex(8)
        self.peer = ""
        self.peer_host = ""
        self.action = ""
        self.login_target: str | None = None
        self.principal: str | None = None
        self.fingerprint: str | None = None
        self._conn: asyncssh.SSHServerConnection | None = None
        self.opened = time.monotonic()
        self._sessions = 0
        self._lean = False
        self._rejected: set[str] = set()
        self._unauthenticated = False
        self._turned_away = False
        self._failures = 0

    # ----------------------------------------------------------- audit helpers

    def audit(self, event: Event, *, durable: bool = False, **fields: Any) -> None:
        """An audit event tied to this connection."""
        self.rt.audit.emit(event, durable=durable, session_id=self.session_id, peer=self.peer, **fields)

    def refused(self, kind: RefusalKind, **fields: Any) -> None:
        """Record a refused protocol request; never raises."""
        door.refused(self, kind, **fields)

    # ----------------------------------------------------------- lifecycle

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        """Admit the connection (per-source shares, penalties) and remember its peer."""
        self._conn = conn
        self.rt.connections.add(conn)
        install_certificate_hook(conn, self._validate_certificate)
        install_kex_hooks(conn, self.rt.algorithms.offer)
        parts = self.rt.settings.lean_parts if self.rt.settings.lean_path else ()
        self._lean = bool(parts) and sshfast.available(conn)
        if self._lean:  # serve --no-lean-path: asyncssh's own packet path only
            if "send" in parts:
                install_lean_sends(conn)
            if "receive" in parts:
                install_lean_receive(conn)
        install_quickack(conn)  # wraps the lean data_received for the handshake
        host, port = (conn.get_extra_info("peername") or ("?", 0))[:2]
        self.peer_host = str(host)
        self.peer = f"{host}:{port}"
        refused = (
            "the gateway is shutting down"
            if self.rt.draining
            else self.rt.limits.admit_connection(self.peer_host)
        )
        if refused is not None:
            self._turn_away(refused)
            conn.close()
            return
        metrics.CONNECTIONS.inc()
        self._unauthenticated = True
        settings = self.rt.settings
        door.opened(self, worker=settings.worker if settings.workers > 1 else None)

    def _turn_away(self, reason: str) -> None:
        """Count every turned-away connection; audit the first per source and minute."""
        self._turned_away = True
        door.turned_away(self, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        """Record the end of the connection; one that never logged in may earn a penalty."""
        if self._turned_away:
            if self._conn is not None:
                self.rt.connections.discard(self._conn)
            return  # counted and summarised by _turn_away: one record per source per minute
        if self._unauthenticated:
            self._unauthenticated = False
            stalled = isinstance(exc, asyncssh.ConnectionLost) and "timeout" in str(exc).lower()
            door.left_unauthenticated(self, failures=self._failures, stalled=stalled)
        if self._conn is not None:
            self.rt.connections.discard(self._conn)
        door.closed(self, str(exc) if exc else None)

    # ----------------------------------------------------------- authentication

    def begin_auth(self, username: str) -> bool:
        """Authentication is always required (False would let anyone in).

        The login name is the action; ``ACTION+TARGET`` also names the target,
        for clients that cannot send a command (PuTTY sessions, paramiko's
        ``invoke_shell``, editors' terminals).
        """
        self.action, self.login_target = door.split_login(username)
        return True

    def public_key_auth_supported(self) -> bool:
        """Public keys are the only way in."""
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Map the key's fingerprint to its principal; unknown keys are rejected."""
        fingerprint = key.get_fingerprint("sha256")
        principal = self.rt.keys.principal_for(fingerprint)
        if principal is None:
            if fingerprint not in self._rejected:
                self._rejected.add(fingerprint)
                self.refused_auth(fingerprint)
            return False
        self.principal, self.fingerprint = principal, fingerprint
        return True

    async def _validate_certificate(self, username: str, cert: Any) -> asyncssh.SSHKey | None:
        """A user certificate: trusted CA, valid now, our principal in it, its source-address."""
        principal, reason = certificate_principal(self.rt, cert, self.peer_host)
        if reason is not None:
            door.certificate_refused(self, cert, reason)
            return None
        self.principal, self.fingerprint = principal, cert.key.get_fingerprint("sha256")
        if self._conn is not None:
            set_certificate_options(self._conn, dict(cert.options))
        key: asyncssh.SSHKey = cert.key
        return key

    def refused_auth(self, fingerprint: str) -> None:
        """Record an unknown key; repeated failures throttle the source."""
        self._failures += 1
        door.key_failed(self, fingerprint)

    def auth_completed(self) -> None:
        """Record which principal got in, with which key."""
        if self._unauthenticated:
            self._unauthenticated = False
            self.rt.limits.authenticated(self.peer_host)
        door.accepted(self, fingerprint=self.fingerprint)

    # ----------------------------------------------------------- channels

    def session_requested(self) -> Any:
        """A session channel with the refusal hooks in place, run by session.Session."""
        if self._conn is None:
            return False
        if self._sessions >= self.rt.settings.max_sessions_per_connection:
            self.refused(RefusalKind.SESSION_LIMIT, limit=self.rt.settings.max_sessions_per_connection)
            raise prohibited("gateway: too many sessions on this connection")
        self._sessions += 1
        chan = self._conn.create_server_channel(encoding=None)
        install_refusal_hooks(chan, self.refused)
        if self._lean and "channel" in self.rt.settings.lean_parts and sshfast.channel_ready(chan):
            install_lean_channel(chan)
        number = self._sessions

        async def start(process: asyncssh.SSHServerProcess[bytes]) -> None:
            assert isinstance(process, GatewayProcess)
            await Session(self, SSHChannel(process), number).run()

        return chan, GatewayProcess(start, None, SFTP_VERSION, False)


def certificate_principal(rt: Runtime, cert: Any, peer_host: str) -> tuple[str | None, str | None]:
    """A user certificate's principal, or why it is refused: trusted CA, valid now, our principal in it,
    its source-address allowing *peer_host*."""
    reason = None
    if cert.signing_key.get_fingerprint("sha256") not in rt.trusted_cas:
        reason = "certificate from an untrusted CA"
    else:
        try:
            cert.validate(CERT_TYPE_USER, None)  # type and validity period; principals below
        except ValueError as exc:
            reason = f"certificate not valid: {exc}"
    known = rt.keys.principals | {p for g in rt.policy.grants for p in g.principals}
    principal = next((p for p in cert.principals if p in known), None)
    if reason is None and principal is None:
        reason = "certificate names no principal in the policy"
    if reason is None and not _source_allowed(cert.options.get("source-address"), peer_host):
        reason = "certificate source-address does not allow this client"
    return (principal, None) if reason is None else (None, reason)


def _source_allowed(networks: Any, peer: str) -> bool:
    """The certificate's source-address option, when it has one."""
    if not networks:
        return True
    try:
        address = ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in networks)
