"""The catalogue: every audit event name and every refusal kind, each written here once.

The chain writer, the index, metrics and the docs' table
(``docs/AUDIT-EVENTS.md``, made by ``python -m gateway.events``) all use these.
``AuditLog.emit`` takes an ``Event``, so a new record type cannot be written
without being listed, and described, here. Both are ``StrEnum``: a record
carries the plain string (``"request.deny"``), as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypedDict, cast, get_type_hints


class Event(StrEnum):
    """An audit record's ``event``."""

    SERVER_START = "server.start"
    SERVER_DRAIN = "server.drain"
    SERVER_STOP = "server.stop"
    WORKER_EXITED = "worker.exited"
    POLICY_SNAPSHOT = "policy.snapshot"
    POLICY_RELOAD = "policy.reload"
    POLICY_RELOAD_FAILED = "policy.reload_failed"
    CONNECTION_OPEN = "connection.open"
    CONNECTION_REFUSED = "connection.refused"
    CONNECTION_CLOSE = "connection.close"
    AUTH_ACCEPT = "auth.accept"
    AUTH_REJECT = "auth.reject"
    DOOR_REFUSED = "door.refused"
    REQUEST_ALLOW = "request.allow"
    REQUEST_DENY = "request.deny"
    REQUEST_FILED = "request.filed"
    REQUEST_APPROVED = "request.approved"
    REQUEST_DENIED = "request.denied"
    REQUEST_EXPIRED = "request.expired"
    REQUEST_COUNTED = "request.counted"
    REQUEST_UNTRUSTED = "request.untrusted"
    MODERATOR_JOINED = "moderator.joined"
    MODERATOR_LEFT = "moderator.left"
    SESSION_START = "session.start"
    SESSION_LIMIT = "session.limit"
    SESSION_END = "session.end"
    SESSION_INTERRUPTED = "session.interrupted"
    SESSIONS_EXPORT = "sessions.export"
    SIDEKICK_REAPED = "sidekick.reaped"
    AUDIT_RECOVERED = "audit.recovered"


EVENTS: dict[Event, str] = {
    Event.SERVER_START: "the gateway started listening (address, policy digest)",
    Event.SERVER_DRAIN: "a stop began: new sessions are refused while the open ones finish",
    Event.SERVER_STOP: "the gateway stopped",
    Event.WORKER_EXITED: "a worker process ended (its index, pid, status); the supervisor replaced it",
    Event.POLICY_SNAPSHOT: "the whole policy in force at start, in parts (for `audit grants`)",
    Event.POLICY_RELOAD: "a reload took effect: digests, who gained and lost what, keys added and removed",
    Event.POLICY_RELOAD_FAILED: "a reload was refused (the old policy stays; removed keys are still dropped)",
    Event.CONNECTION_OPEN: "a client connected (peer address; `door` marks the OpenSSH door)",
    Event.CONNECTION_REFUSED: "connections turned away before authentication, counted per source",
    Event.CONNECTION_CLOSE: "a connection ended (duration, and why when it was cut)",
    Event.AUTH_ACCEPT: "a key (or certificate) was accepted for a principal and an action",
    Event.AUTH_REJECT: "a key that is not in keys/ (or a bad certificate) was refused",
    Event.DOOR_REFUSED: "the OpenSSH door refused a request: no valid ticket, or a peer it does not trust",
    Event.REQUEST_ALLOW: "a request was allowed by a grant; fsynced before anything runs",
    Event.REQUEST_DENY: "a request was refused: `kind` (the catalogue below) and the reason",
    Event.REQUEST_FILED: "an access request waits for approvals (its id and what it asks for)",
    Event.REQUEST_APPROVED: "an approver approved a request",
    Event.REQUEST_DENIED: "an approver turned a request down",
    Event.REQUEST_EXPIRED: "a request was not approved in time",
    Event.REQUEST_COUNTED: "a fleet decision (given on `host`) passed its checks here (the host's signature,"
    " this policy) and counts",
    Event.REQUEST_UNTRUSTED: "a fleet decision row failed its checks (bad signature, a host not in"
    " fleet.yaml, a principal this policy does not allow): not counted",
    Event.MODERATOR_JOINED: "a moderator began watching a moderated session",
    Event.MODERATOR_LEFT: "a moderator stopped watching",
    Event.SESSION_START: "the action started (its recording, PTY, the process that runs it)",
    Event.SESSION_LIMIT: "a limit ended the session (idle, duration, recording size, moderators gone)",
    Event.SESSION_END: "the action ended: exit status or signal, bytes, duration, the recording's digest",
    Event.SESSION_INTERRUPTED: "found at start: a session cut by a crash, with its recording's digest",
    Event.SESSIONS_EXPORT: "sessions were exported: the export's id and its sessions (checked by `--bundle`)",
    Event.SIDEKICK_REAPED: "sidekicks left by a killed gateway were removed at start",
    Event.AUDIT_RECOVERED: "the first record after a crash tore the last line (the torn bytes)",
}


# ---------------------------------------------------------------- payloads
#
# Each event's fields, typed, next to its name: ``AuditLog.emit`` checks every
# record against them (``check``) and the readers (index, grants, verify, the
# bundle, the fleet listing) read ``Record``s, so a field that is misspelt or
# of the wrong type fails where it is written, and mypy sees what is read.


class Context(TypedDict, total=False):
    """What a connection's or session's records carry, whatever the event."""

    session_id: str
    peer: str
    door: str
    worker: int
    channel: int
    principal: str | None
    action: str
    target: str | None
    args: list[str] | None
    container: str
    image: str


class ServerStart(TypedDict, total=False):
    """``server.start``."""

    listen: str
    policy: str
    workers: int


class ServerDrain(TypedDict, total=False):
    """``server.drain``."""

    sessions: int | list[str]
    seconds: float


class Empty(TypedDict, total=False):
    """An event with no fields of its own."""


class WorkerExited(TypedDict, total=False):
    """``worker.exited``."""

    worker: int
    pid: int
    replaced_by: int
    status: int
    signal: str | int | None
    released: dict[str, float]


class PolicySnapshot(TypedDict, total=False):
    """``policy.snapshot``."""

    policy: str
    part: int
    parts: int
    facts: list[list[str]]


class PolicyReload(TypedDict, total=False):
    """``policy.reload`` and ``policy.reload_failed``."""

    why: str | None
    policy: str
    previous: str
    removed_keys: list[str]
    added_keys: list[str]
    changes: dict[str, Any]
    errors: list[str]


class ConnectionRefused(TypedDict, total=False):
    """``connection.refused``."""

    source: str
    reason: str | None
    count: int


class ConnectionClose(TypedDict, total=False):
    """``connection.close``."""

    duration: float
    error: str | None


class Auth(TypedDict, total=False):
    """``auth.accept`` and ``auth.reject``."""

    fingerprint: str
    reason: str | None
    key_id: str


class DoorRefused(TypedDict, total=False):
    """``door.refused``."""

    uid: int
    reason: str | None
    socket: str
    request: str
    principal: str | None
    claimed_principal: str
    claimed_connection: str


class RequestDecision(TypedDict, total=False):
    """``request.allow`` and ``request.deny`` (with the refusal's own fields)."""

    grant: str
    policy: str
    decided_policy: str
    privileged: bool
    reason: str | None
    request: str
    approvers: list[str]
    moderation: str
    moderators: list[str]
    kind: str
    limit: int
    destination: str
    listen: str
    name: str
    unit: int
    source: str


class RequestChange(TypedDict, total=False):
    """``request.filed``, ``.approved``, ``.denied``, ``.expired``."""

    request: str
    reason: str | None
    needs: str
    by: str
    met: bool
    why: str | None
    requester: str
    host: str
    verdict: str
    problem: str


class Moderator(TypedDict, total=False):
    """``moderator.joined`` and ``moderator.left``."""

    moderation: str
    moderated_session: str
    requester: str


class SessionRecord(TypedDict, total=False):
    """``session.start``, ``.limit``, ``.end``, ``.interrupted``."""

    recording: str | None
    pty: bool
    pid: int
    reason: str | None
    exit_status: int | None
    signal: str | int | None
    error: str | None
    duration: float
    bytes_in: int
    bytes_out: int
    recording_size: int
    recording_sha256: str
    stream_sha256: str
    stream_size: int
    sidekick: str
    exec: str
    ended_processes: int
    request: str
    moderation: str


class SessionsExport(TypedDict, total=False):
    """``sessions.export``."""

    export: str
    sessions: int | list[str]
    by: str


class SidekickReaped(TypedDict, total=False):
    """``sidekick.reaped``."""

    count: int


class AuditRecovered(TypedDict, total=False):
    """``audit.recovered``."""

    torn_file: str
    torn_bytes: int


PAYLOADS: dict[Event, type] = {
    Event.SERVER_START: ServerStart,
    Event.SERVER_DRAIN: ServerDrain,
    Event.SERVER_STOP: Empty,
    Event.WORKER_EXITED: WorkerExited,
    Event.POLICY_SNAPSHOT: PolicySnapshot,
    Event.POLICY_RELOAD: PolicyReload,
    Event.POLICY_RELOAD_FAILED: PolicyReload,
    Event.CONNECTION_OPEN: Empty,
    Event.CONNECTION_REFUSED: ConnectionRefused,
    Event.CONNECTION_CLOSE: ConnectionClose,
    Event.AUTH_ACCEPT: Auth,
    Event.AUTH_REJECT: Auth,
    Event.DOOR_REFUSED: DoorRefused,
    Event.REQUEST_ALLOW: RequestDecision,
    Event.REQUEST_DENY: RequestDecision,
    Event.REQUEST_FILED: RequestChange,
    Event.REQUEST_APPROVED: RequestChange,
    Event.REQUEST_DENIED: RequestChange,
    Event.REQUEST_EXPIRED: RequestChange,
    Event.REQUEST_COUNTED: RequestChange,
    Event.REQUEST_UNTRUSTED: RequestChange,
    Event.MODERATOR_JOINED: Moderator,
    Event.MODERATOR_LEFT: Moderator,
    Event.SESSION_START: SessionRecord,
    Event.SESSION_LIMIT: SessionRecord,
    Event.SESSION_END: SessionRecord,
    Event.SESSION_INTERRUPTED: SessionRecord,
    Event.SESSIONS_EXPORT: SessionsExport,
    Event.SIDEKICK_REAPED: SidekickReaped,
    Event.AUDIT_RECOVERED: AuditRecovered,
}


class Record(
    Context, ServerStart, ServerDrain, WorkerExited, PolicySnapshot, PolicyReload, ConnectionRefused,
    ConnectionClose, Auth, DoorRefused, RequestDecision, RequestChange, Moderator, SessionRecord,
    SessionsExport, SidekickReaped, AuditRecovered, total=False,
):  # fmt: skip
    """A record as the readers see it: any event's fields, typed, with the chain's own."""

    event: str
    ts: str
    seq: int
    prev: str
    mac: str


def as_record(found: object) -> Record | None:
    """A parsed JSON line as a Record (readers see typed fields), or None when it is not an object."""
    return cast(Record, found) if isinstance(found, dict) else None


def _runtime_types(hint: object) -> tuple[type, ...]:
    """``str | None`` -> (str, NoneType); ``list[str]`` -> (list,); ``Any`` -> (object,)."""
    if hint is Any:
        return (object,)
    args = getattr(hint, "__args__", None)
    origin = getattr(hint, "__origin__", None)
    if origin is None and args:  # a union
        return tuple(t for a in args for t in _runtime_types(a))
    found = origin if origin is not None else hint
    if found is float:
        return (float, int)
    return (found,) if isinstance(found, type) else (object,)


_CONTEXT = {name: _runtime_types(h) for name, h in get_type_hints(Context).items()}
_FIELDS: dict[Event, dict[str, tuple[type, ...]]] = {
    event: {**_CONTEXT, **{name: _runtime_types(h) for name, h in get_type_hints(payload).items()}}
    for event, payload in PAYLOADS.items()
}


class PayloadError(TypeError):
    """A record that does not fit its event's payload: a bug where it is written."""


def check(event: str, fields: Mapping[str, object]) -> None:
    """Raise PayloadError unless *event* is catalogued and each of *fields* is one of its, typed right."""
    try:
        allowed = _FIELDS[Event(event)]
    except ValueError:
        raise PayloadError(f"{event!r} is not a catalogued event") from None
    for name, value in fields.items():
        types = allowed.get(name)
        if types is None:
            raise PayloadError(f"{event}: no field {name!r} (see events.{PAYLOADS[Event(event)].__name__})")
        if (value is not None and not isinstance(value, types)) or (
            isinstance(value, bool) and bool not in types
        ):
            raise PayloadError(f"{event}: {name} is a {type(value).__name__}, not {types[0].__name__}")


class RefusalKind(StrEnum):
    """What a refusal (``request.deny``'s ``kind``, and the metrics label) was about."""

    ACTION = "action"
    COMMAND = "command"
    USAGE = "usage"
    REASON = "reason"
    APPROVAL = "approval"
    SUBSYSTEM = "subsystem"
    SCP = "scp"
    ENV = "env"
    AGENT_FORWARDING = "agent-forwarding"
    X11_FORWARDING = "x11-forwarding"
    DIRECT_TCPIP = "direct-tcpip"
    TCPIP_FORWARD = "tcpip-forward"
    DIRECT_STREAMLOCAL = "direct-streamlocal"
    STREAMLOCAL_FORWARD = "streamlocal-forward"
    TUN = "tun"
    TAP = "tap"
    SESSION_LIMIT = "session-limit"
    CONNECTION_LIMIT = "connection-limit"
    AUDIT = "audit"


KINDS: dict[RefusalKind, str] = {
    RefusalKind.ACTION: "the action or target is not granted, does not exist, or is not running",
    RefusalKind.COMMAND: "the command: control characters, quoting, size, arguments the action does not take",
    RefusalKind.USAGE: "no action named (a plain login to the door account)",
    RefusalKind.REASON: "the grant asks for a reason and none (or one that does not match) was given",
    RefusalKind.APPROVAL: "the grant asks for approvals that did not come",
    RefusalKind.SUBSYSTEM: "a subsystem (sftp) was asked for",
    RefusalKind.SCP: "legacy scp (`scp -O`)",
    RefusalKind.ENV: "an environment variable other than the locale and GATEWAY_REASON",
    RefusalKind.AGENT_FORWARDING: "agent forwarding",
    RefusalKind.X11_FORWARDING: "X11 forwarding",
    RefusalKind.DIRECT_TCPIP: "a local forward or `ssh -W`",
    RefusalKind.TCPIP_FORWARD: "a remote forward",
    RefusalKind.DIRECT_STREAMLOCAL: "a Unix-socket forward",
    RefusalKind.STREAMLOCAL_FORWARD: "a remote Unix-socket forward",
    RefusalKind.TUN: "a tun device (`ssh -w`)",
    RefusalKind.TAP: "a tap device",
    RefusalKind.SESSION_LIMIT: "too many sessions (all, per principal, per connection), a full disk, a stop",
    RefusalKind.CONNECTION_LIMIT: "too many connections",
    RefusalKind.AUDIT: "the audit log cannot be written: nothing runs",
}


def table() -> str:
    """The docs' table (docs/AUDIT-EVENTS.md), from the catalogue."""
    lines = [
        "# Audit events and refusal kinds",
        "",
        "Made by `python -m gateway.events` from `gateway/events.py`; a test keeps the two equal.",
        "Every record also has `seq`, `ts`, `prev` and `mac`; session records carry `session_id`,",
        "`principal`, `action`, `channel` and, through sshd, `door: openssh`.",
        "",
        "| event | when |",
        "| --- | --- |",
        *(f"| `{event}` | {EVENTS[event]} |" for event in Event),
        "",
        "## Refusal kinds (`request.deny`'s `kind`, `gateway_refusals{kind}`)",
        "",
        "| kind | what was refused |",
        "| --- | --- |",
        *(f"| `{kind}` | {KINDS[kind]} |" for kind in RefusalKind),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(), end="")
