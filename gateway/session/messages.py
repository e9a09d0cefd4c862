"""What a session tells the client: one line each, never an internal detail.

An unknown target and a target that is not granted get the same words, so
names cannot be probed. The detail goes to the audit log instead.
"""

from __future__ import annotations

from gateway.command import Command
from gateway.errors import ContainerNotFound, DockerUnavailable, Refusal
from gateway.policy import DenyCode

REFUSED_STATUS = 1
ENGINE_DOWN = "gateway: the Docker engine is not reachable; try again later"
AUDIT_DOWN = "gateway: the audit log is unavailable; nothing was run"

#: the refusal of an sftp subsystem request, on every door
SFTP_UNAVAILABLE = "gateway: sftp is not available"


def newline(pty: bool) -> str:
    """A terminal in raw mode needs CR LF."""
    return "\r\n" if pty else "\n"


def denied(action: str, target: str | None) -> str:
    """The permission-denied line (the same for unknown and ungranted targets)."""
    where = f"{action} {target}" if target else action
    return f"gateway: {where}: permission denied"


def deny_line(code: DenyCode, action: str, command: Command) -> str:
    """The line for a policy denial."""
    if code is DenyCode.NEEDS_TARGET:
        return f"gateway: {action} needs a target: ssh {action}@HOST TARGET"
    if code is DenyCode.TAKES_NO_TARGET:
        return f"gateway: {action} takes no arguments"
    if code is DenyCode.NO_ARGS:
        return f"gateway: {action} {command.target}: extra arguments are not allowed"
    return denied(action, command.target)


def failure(exc: Exception, action: str) -> tuple[str, str]:
    """(the client's line, the audit detail) for an action that failed while running."""
    if isinstance(exc, Refusal):
        return exc.public, exc.reason
    if isinstance(exc, DockerUnavailable):
        return ENGINE_DOWN, str(exc)
    if isinstance(exc, ContainerNotFound):
        return f"gateway: {action}: the container is gone", "container vanished"
    if isinstance(exc, OSError):
        return f"gateway: {action}: could not start the action", f"os error: {exc.strerror}"
    return f"gateway: {action}: the action failed", f"{type(exc).__name__}: {exc}"
