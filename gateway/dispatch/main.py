"""``gateway dispatch --principal NAME``: one forced command, decided and run like `serve` does."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import PurePath
from typing import Any

from gateway.command import MAX_COMMAND, has_control, printable
from gateway.dispatch.stdio import StdioProcess
from gateway.errors import AuditUnavailable, Refusal
from gateway.runtime import Runtime
from gateway.session import Session
from gateway.settings import Settings

USAGE = "gateway: usage: ssh USER@HOST ACTION [TARGET] [ARGS...]"
SUBSYSTEM_PROGRAMS = ("sftp-server", "internal-sftp")


class DispatchConnection:
    """The connection sshd already authenticated: what Session needs from it."""

    def __init__(self, rt: Runtime, principal: str, action: str) -> None:
        self.rt = rt
        self.session_id = secrets.token_hex(8)
        self.principal: str | None = principal
        self.username = action
        client = os.environ.get("SSH_CONNECTION", "").split()
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


async def dispatch(settings: Settings, principal: str) -> int:
    """Run one forced command to its end; the exit status for sshd (128+N for a signal)."""
    rt = Runtime.start(settings)
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    try:
        action, rest = split(original)
    except Refusal as refusal:
        action, rest = "", ""
        conn = DispatchConnection(rt, principal, action)
        return _refuse(conn, refusal)
    conn = DispatchConnection(rt, principal, action)
    if principal not in rt.keys.principals:
        return _refuse(
            conn, Refusal(f"gateway: {action}: permission denied", reason="unknown principal", kind="action")
        )
    with contextlib.suppress(AuditUnavailable):
        conn.audit("connection.open")
        conn.audit("auth.accept", principal=principal, action=action)
    process = StdioProcess(rest or None)
    try:
        with process.attached():
            await Session(conn, process, 1).run()  # type: ignore[arg-type]
    finally:
        with contextlib.suppress(AuditUnavailable):
            conn.audit("connection.close", duration=round(time.monotonic() - conn.opened, 3))
        await rt.engine.close()
        rt.audit.close()
    return process.status


def _refuse(conn: DispatchConnection, refusal: Refusal) -> int:
    with contextlib.suppress(AuditUnavailable):
        conn.audit(
            "request.deny",
            kind=refusal.kind,
            reason=refusal.reason,
            principal=conn.principal,
            action=conn.username,
        )
    os.write(2, (refusal.public + "\n").encode())
    conn.rt.audit.close()
    return 1
