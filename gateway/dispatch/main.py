"""One forced command, decided and run by the same Session as `serve` runs.

``run_door_session`` is the door's whole request: it is what ``gateway serve``
runs for a session handed over its door socket, and what ``gateway dispatch``
runs in-process when no daemon answers. Either way: one decision path, one
audit path, one recording path.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from gateway.command import parse_command, printable
from gateway.dispatch.sftp_refusal import refuse_in_sftp
from gateway.dispatch.stdio import FdProcess, signals_attached
from gateway.errors import Refusal
from gateway.events import Event, RefusalKind
from gateway.runtime import Runtime
from gateway.session import Session, door, messages
from gateway.settings import Settings

USAGE = "gateway: usage: ssh USER@HOST ACTION [TARGET] [ARGS...]"
SUBSYSTEM_PROGRAMS = ("sftp-server", "internal-sftp")


@dataclass(frozen=True)
class Origin:
    """A session from one of the monitor's network workers (``privsep``): the connection the monitor
    opened and authenticated (and recorded), and what its login named, as on ``serve``'s own port."""

    session_id: str
    action: str
    target: str | None


class DispatchConnection:
    """The connection sshd already authenticated: what Session needs from it."""

    def __init__(
        self,
        rt: Runtime,
        principal: str,
        action: str,
        ssh_connection: str,
        door_name: str = "openssh",
        session_id: str | None = None,
    ) -> None:
        self.rt = rt
        self.door = door_name
        self.session_id = session_id or secrets.token_hex(8)
        self.principal: str | None = principal
        self.action = action
        self.login_target: str | None = None
        client = ssh_connection.split()
        self.peer_host = client[0] if client else ""
        self.peer = f"{client[0]}:{client[1]}" if len(client) >= 2 else ""
        self.opened = time.monotonic()

    def audit(self, event: Event, *, durable: bool = False, **fields: Any) -> None:
        """An audit event tied to this connection, marked as coming through OpenSSH (not the monitor's)."""
        door = {"door": self.door} if self.door else {}
        self.rt.audit.emit(
            event, durable=durable, session_id=self.session_id, peer=self.peer, **door, **fields
        )


def login_action(rt: Runtime, login: str) -> str | None:
    """The action a login names (``ssh debug@HOST`` through sshd), or None: the command's first word is.

    sshd's login is the account ``gateway openssh-setup`` made for an action;
    the door's own account (``--door-user``, ``gw``) names none.
    """
    if not login or login == rt.settings.door_user or login not in rt.policy.actions:
        return None
    return login


def subsystem_of(original: str | None) -> str | None:
    """sftp, when sshd ran a forced command for a subsystem request (it passes the subsystem's program)."""
    first = (original or "").strip().partition(" ")[0]
    return "sftp" if PurePath(first).name in SUBSYSTEM_PROGRAMS else None


def _legacy_scp(original: str | None) -> bool:
    """``scp -t PATH`` as the whole command: the Session refuses it, whichever the login."""
    return (original or "").lstrip().startswith("scp ")


def split(original: str | None) -> tuple[str, str]:
    """``ssh gw@HOST ACTION [TARGET] [ARGS]``: (action, the rest); Refusal for a plain login.

    Control characters and bad quoting in the rest are the Session's to refuse,
    as on the native port; the first word only has to be a word.
    """
    first, _, rest = (original or "").strip().partition(" ")
    if not first:
        raise Refusal(USAGE, reason="plain login (no command)", kind=RefusalKind.USAGE)
    parse_command(first)  # control characters, overlong: refused as on the native port
    return first, rest


async def run_door_session(
    rt: Runtime,
    principal: str,
    original: str | None,
    ssh_connection: str,
    process: FdProcess,
    login: str = "",
    net: Origin | None = None,
) -> None:
    """Decide and run one door request on *process*; its status ends up in ``process.status``.

    *net*: the request came from one of the monitor's network workers (``privsep``), which already
    recorded the connection's opening, authentication and end; its login names the action (and
    target) as on ``serve``'s own port, and stderr reaches the client, sftp's included.
    """
    action = net.action if net is not None else login_action(rt, login)
    process.subsystem = subsystem_of(original)
    if net is None:
        conn = DispatchConnection(rt, principal, action or "", ssh_connection)
    else:
        conn = DispatchConnection(rt, principal, action or "", ssh_connection, "", net.session_id)
        conn.login_target = net.target
    try:
        if process.subsystem is None and action is None and not _legacy_scp(original):
            first, original = split(original)
            conn.action = printable(first)
        if principal not in rt.keys.principals:
            line = f"gateway: {conn.action}: permission denied"
            raise Refusal(line, reason="unknown principal", kind=RefusalKind.ACTION)
    except Refusal as refusal:
        Session(conn, process, 1).refuse(refusal)
        return
    if net is None:
        door.opened(conn)
        door.accepted(conn)
    process.command = None if process.subsystem else (original or None)
    try:
        await Session(conn, process, 1).run()
        if process.subsystem == "sftp" and net is None:  # sshd drops a subsystem's stderr: say it in SFTP
            await refuse_in_sftp(process, messages.SFTP_UNAVAILABLE)
    finally:
        if net is None:
            door.closed(conn)


async def dispatch(settings: Settings, principal: str) -> int:
    """In-process: run one forced command to its end; the exit status for sshd (128+N for a signal)."""
    rt = Runtime.start(settings)
    process = FdProcess(None, term=os.environ.get("TERM"), reason=os.environ.get("GATEWAY_REASON"))
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    login = os.environ.get("LOGNAME", "")  # in-process runs as root, below sshd: its environment
    try:
        with process.attached(), signals_attached(process):
            connection = os.environ.get("SSH_CONNECTION", "")
            await run_door_session(rt, principal, original, connection, process, login)
    finally:
        await rt.engine.close()
        rt.audit.close()
    return process.status
