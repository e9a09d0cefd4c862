"""Admission limits: sessions in total and per principal, unauthenticated connections,
and a per-source throttle after repeated authentication failures.

Pure bookkeeping on the event loop; each refusal is audited by the caller.
"""

from __future__ import annotations

import time
from collections import Counter, deque

from gateway.settings import Settings

FAILURE_WINDOW = 60.0


class Limits:
    """Counters shared by every connection of one gateway process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = 0
        self.per_principal: Counter[str] = Counter()
        self.unauthenticated = 0
        self._failures: dict[str, deque[float]] = {}

    def admit_connection(self, source: str) -> str | None:
        """None to accept a new connection, or why it is refused."""
        if self.throttled(source):
            return f"too many authentication failures from {source}"
        if self.unauthenticated >= self.settings.max_unauthenticated:
            return "too many unauthenticated connections"
        self.unauthenticated += 1
        return None

    def authenticated(self) -> None:
        """A connection finished authentication."""
        self.unauthenticated = max(0, self.unauthenticated - 1)

    def failed(self, source: str) -> None:
        """An authentication failure from *source*."""
        self._failures.setdefault(source, deque()).append(time.monotonic())

    def throttled(self, source: str) -> bool:
        """Whether *source* failed too often in the last minute."""
        recent = self._failures.get(source)
        if not recent:
            return False
        cutoff = time.monotonic() - FAILURE_WINDOW
        while recent and recent[0] < cutoff:
            recent.popleft()
        if not recent:
            del self._failures[source]
            return False
        return len(recent) >= self.settings.auth_failure_limit

    def admit_session(self, principal: str) -> str | None:
        """None to start a session for *principal*, or why it is refused."""
        if self.sessions >= self.settings.max_sessions:
            return "the gateway is at its session limit"
        if self.per_principal[principal] >= self.settings.max_sessions_per_principal:
            return f"{principal} is at the per-principal session limit"
        self.sessions += 1
        self.per_principal[principal] += 1
        return None

    def release_session(self, principal: str) -> None:
        """A session admitted by admit_session ended."""
        self.sessions -= 1
        self.per_principal[principal] -= 1
        if self.per_principal[principal] <= 0:
            del self.per_principal[principal]
