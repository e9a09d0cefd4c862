"""What the rest of the gateway knows of a fleet database that does not answer (no psycopg here)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from gateway.errors import Refusal
from gateway.events import RefusalKind

CONNECT_SECONDS = 3
UNAVAILABLE = "gateway: approvals are unavailable: the fleet database does not answer"


class FleetDown(Exception):
    """The fleet database does not answer (or its schema is not this gateway's)."""


class Full(Exception):
    """No fleet slot is free; the message says which limit."""


def unavailable() -> Refusal:
    """The one-line refusal of a gated or moderated grant while the database does not answer."""
    return Refusal(UNAVAILABLE, reason="the fleet database does not answer", kind=RefusalKind.APPROVAL)


def with_timeout(dsn: str) -> str:
    """*dsn* with a connect timeout unless it has one (a dead server must not hold a query for minutes)."""
    if "connect_timeout" in dsn:
        return dsn
    if "://" in dsn:
        return dsn + ("&" if "?" in dsn else "?") + f"connect_timeout={CONNECT_SECONDS}"
    return f"{dsn} connect_timeout={CONNECT_SECONDS}"


def why(exc: BaseException) -> str:
    """An error's class and first line, for the log (never the connection string)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]


#: ``STATE/fleet-member``: written by a ``serve --fleet`` (the host's name, never the connection string),
#: removed by a ``serve`` without it; a process that runs sessions on this state without the fleet (the
#: in-process OpenSSH door, when no daemon answers) refuses gated grants rather than file them where no
#: approver of the fleet would see them
MEMBER_MARK = "fleet-member"


def mark_member(state: Path, host: str | None) -> None:
    """Say (or, with None, unsay) that this state directory's gateway is in a fleet."""
    path = state / MEMBER_MARK
    with contextlib.suppress(OSError):
        if host is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(host + "\n")


def in_fleet(state: Path) -> bool:
    """Whether this state directory's gateway said it is in a fleet."""
    return (state / MEMBER_MARK).exists()
