"""One forced command, decided and run by the same Session as `serve` runs.

``run_door_session`` is the door's whole request: it is what ``gateway serve``
runs for a session handed over its door socket, and what ``gateway dispatch``
runs in-process when no daemon answers. Either way: one decision path, one
audit path, one recording path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import PurePath
from typing import Any

from gateway.command import MAX_COMMAND, has_control, printable
from gateway.dispatch.stdio import FdProcess, signals_attached
from gateway.errors import AuditUnavailable, Refusal
from gateway.runtime import Runtime
from gateway.session import Session
from gateway.settings import Settings

USAGE = "gateway: usage: ssh USER@HOST ACTION [TARGET] [ARGS...]"
SUBSYSTEM_PROGRAMS = ("sftp-server", "internal-sftp")


class DispatchConnection:
    """The connection sshd already authenticated: what Session needs from it."""

    def __init__(self, rt: Runtime, principal: str, action: str, ssh_connection: str) -> None:
        self.rt = rt
        self.session_id = secrets.token_hex(8)
        self.principal: str | None = principal
        self.username = action
        self.login_target: str | None = None
        client = ssh_connection.split()
        self.peer_host = client[0] if client else ""
        self.peer = f"{client[0]}:{client[1]}" if len(client) >= 2 else ""
        self.opened = time.monotonic()

    def audit(self, event: str, *, durable: bool = False, **fields: Any) -> None:
        """An audit event tied to this connection, marked as coming through OpenSSH."""
        self.rt.audit.emit(
            event, durable=durable, session_id=self.session_id, peer=self.peer, door="openssh", **fields
        )


def split(original: str | None) -> tuple[str, str]:
    """SSH_ORIGINAL_COMMAND -> (action, the rest); Refusal for what is never dispatched."""
    if original is None or not original.strip():
        raise Refusal(USAGE, reason="plain login (no command)", kind="usage")
    if len(original) > MAX_COMMAND or has_control(original):
        raise Refusal(
            "gateway: control characters are not allowed in the command",
            reason="control characters",
            kind="command",
        )
    first, _, rest = original.strip().partition(" ")
    if PurePath(first).name in SUBSYSTEM_PROGRAMS:
        raise Refusal(
            "gateway: subsystems (sftp) are not available",
            reason=f"subsystem {printable(first)}",
            kind="subsystem",
        )
    if first == "scp":
        raise Refusal("gateway: scp is not available", reason="legacy scp", kind="scp")
    return printable(first), rest  # the rest is parsed (and refused if need be) by the Session


async def run_door_session(
    rt: Runtime, principal: str, original: str | None, ssh_connection: str, process: FdProcess
) -> None:
    """Decide and run one door request on *process*; its status ends up in ``process.status``."""
    try:
        action, rest = split(original)
    except Refusal as refusal:
        _refuse(DispatchConnection(rt, principal, "", ssh_connection), process, refusal)
        return
    conn = DispatchConnection(rt, principal, action, ssh_connection)
    if principal not in rt.keys.principals:
        unknown = Refusal(f"gateway: {action}: permission denied", reason="unknown principal", kind="action")
        _refuse(conn, process, unknown)
        return
    with contextlib.suppress(AuditUnavailable):
        conn.audit("connection.open")
        conn.audit("auth.accept", principal=principal, action=action)
    process.command = rest or None
    try:
        await Session(conn, process, 1).run()
    finally:
        with contextlib.suppress(AuditUnavailable):
            conn.audit("connection.close", duration=round(time.monotonic() - conn.opened, 3))


async def dispatch(settings: Settings, principal: str) -> int:
    """In-process: run one forced command to its end; the exit status for sshd (128+N for a signal)."""
    rt = Runtime.start(settings)
    process = FdProcess(None, term=os.environ.get("TERM"), reason=os.environ.get("GATEWAY_REASON"))
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    try:
        with process.attached(), signals_attached(process):
            await run_door_session(rt, principal, original, os.environ.get("SSH_CONNECTION", ""), process)
    finally:
        await rt.engine.close()
        rt.audit.close()
    return process.status


def _refuse(conn: DispatchConnection, process: FdProcess, refusal: Refusal) -> None:
    with contextlib.suppress(AuditUnavailable):
        conn.audit(
            "request.deny",
            kind=refusal.kind,
            reason=refusal.reason,
            principal=conn.principal,
            action=conn.username,
        )
    newline = "\r\n" if process.get_terminal_type() else "\n"
    process.stderr.write((refusal.public + newline).encode())
    process.exit(1)
