"""What the rest of the gateway knows of a fleet database that does not answer (no psycopg here)."""

from __future__ import annotations

from gateway.errors import Refusal
from gateway.events import RefusalKind

UNAVAILABLE = "gateway: approvals are unavailable: the fleet database does not answer"


class FleetDown(Exception):
    """The fleet database does not answer (or its schema is not this gateway's)."""


def unavailable() -> Refusal:
    """The one-line refusal of a gated or moderated grant while the database does not answer."""
    return Refusal(UNAVAILABLE, reason="the fleet database does not answer", kind=RefusalKind.APPROVAL)
