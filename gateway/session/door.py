"""The front door every transport calls: the connection's records, the login split, every refusal.

``gateway serve``'s SSH server (``auth.py``) and the OpenSSH door
(``dispatch/main.py``) keep only what is theirs (keys, tickets, descriptors);
what a connection is, how a login names an action, and how a refusal is
counted, recorded and said are here, once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gateway import metrics
from gateway.command import printable
from gateway.confine.warm import WARMER
from gateway.errors import AuditUnavailable
from gateway.events import Event, RefusalKind

if TYPE_CHECKING:
    from gateway.policy import Policy
    from gateway.runtime import Runtime


class Connection(Protocol):
    """One client connection, whichever transport brought it."""

    rt: Runtime
    session_id: str
    #: the action the login (or the door's first word) names
    action: str
    #: who the key belongs to, once authenticated
    principal: str | None
    #: "host:port" of the client, and the host alone (for ``from:`` rules)
    peer: str
    peer_host: str
    #: the target named in the login (``ssh ACTION+TARGET@HOST``), if any
    login_target: str | None
    #: monotonic time the connection opened
    opened: float

    def audit(self, event: Event, *, durable: bool = False, **fields: Any) -> None:
        """An audit event tied to the connection."""


def split_login(login: str) -> tuple[str, str | None]:
    """``ACTION`` or ``ACTION+TARGET`` -> (action, target), made printable."""
    action, plus, target = printable(login).partition("+")
    return action, (target or None) if plus else None


def opened(conn: Connection, **fields: Any) -> None:
    """``connection.open``; without an audit log nothing will run anyway (the allow record gates it)."""
    with contextlib.suppress(AuditUnavailable):
        conn.audit(Event.CONNECTION_OPEN, **fields)


def accepted(conn: Connection, **fields: Any) -> None:
    """``auth.accept`` for the connection's principal and action; a login that names a container shell
    readies the cgroup lock its child will take (``confine.warm``), while the session is decided."""
    with contextlib.suppress(AuditUnavailable):
        conn.audit(
            Event.AUTH_ACCEPT,
            principal=conn.principal,
            action=conn.action,
            target=conn.login_target,
            **fields,
        )
    if may_enter(conn.rt.policy, conn.principal, conn.action):
        WARMER.soon()


def may_enter(policy: Policy, principal: str | None, action: str | None = None) -> bool:
    """Whether this login may start a shell in a container (``via: nsenter``): the action it names, or,
    with none named yet (sshd's key lookup), any action granted to *principal* (worked out at load)."""
    if action:
        spec = policy.actions.get(action)
        return spec is not None and spec.enters
    return principal in policy.enters


def refused(conn: Connection, kind: RefusalKind, **fields: Any) -> None:
    """The one ``request.deny`` writer and refusal counter; never raises (refusing anyway)."""
    metrics.REFUSALS.labels(metrics.kind_label(kind)).inc()
    with contextlib.suppress(AuditUnavailable):
        conn.audit(Event.REQUEST_DENY, kind=kind, principal=conn.principal, action=conn.action, **fields)


def unknown_key(emit: Callable[..., None], fingerprint: str, **fields: Any) -> None:
    """``auth.reject`` for a key that is not in keys/ (*emit*: a connection's, or the log's own)."""
    with contextlib.suppress(AuditUnavailable, OSError):
        emit(Event.AUTH_REJECT, fingerprint=fingerprint[:128], reason="unknown key", **fields)


def closed(conn: Connection, error: str | None = None) -> None:
    """``connection.close`` with the connection's duration."""
    with contextlib.suppress(AuditUnavailable):
        conn.audit(Event.CONNECTION_CLOSE, duration=round(time.monotonic() - conn.opened, 3), error=error)


def turned_away(conn: Connection, reason: str) -> None:
    """Count every turned-away connection; record the first per source and minute."""
    metrics.TURNED_AWAY.labels(metrics.turn_away_label(reason)).inc()
    if conn.rt.limits.refusals.note(conn.peer_host, reason):
        refused(conn, RefusalKind.CONNECTION_LIMIT, reason=reason, source=conn.peer_host)


def key_failed(conn: Connection, fingerprint: str) -> None:
    """An unknown key: recorded, counted, and repeated failures throttle the source."""
    conn.rt.limits.failed(conn.peer_host)
    metrics.AUTH_FAILURES.inc()
    unknown_key(conn.audit, fingerprint, action=conn.action)


def certificate_refused(conn: Connection, cert: Any, reason: str) -> None:
    """``auth.reject`` for a user certificate (its CA's fingerprint and key id)."""
    with contextlib.suppress(AuditUnavailable):
        conn.audit(
            Event.AUTH_REJECT,
            fingerprint=cert.signing_key.get_fingerprint("sha256"),
            action=conn.action,
            reason=reason,
            key_id=getattr(cert, "_key_id", None),
        )


def left_unauthenticated(conn: Connection, *, failures: int, stalled: bool) -> None:
    """A connection that never logged in ended: its slot back, and a penalty if it failed or stalled."""
    conn.rt.limits.authenticated(conn.peer_host)
    if stalled or failures:
        conn.rt.limits.penalise(conn.peer_host, stalled=stalled)
