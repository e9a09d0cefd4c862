"""Admission limits: sessions in total and per principal, unauthenticated connections
(in total and per source, like OpenSSH's MaxStartups and PerSourceMaxStartups), a
per-source throttle after repeated authentication failures, and growing per-source
penalties for sources that keep failing or stalling (like PerSourcePenalties).

Pure bookkeeping on the event loop. Turned-away connections are summarised for
the audit log: the first from a source in a minute is recorded at once, the rest
of that minute as one record with a count (see ``Refusals``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from gateway.settings import Settings

FAILURE_WINDOW = 60.0
#: seconds of penalty per event, as OpenSSH's PerSourcePenalties defaults
PENALTY_AUTHFAIL = 5.0
PENALTY_STALLED = 10.0
#: a source is turned away only once its penalty exceeds this (a few mistakes are free)
PENALTY_MIN = 15.0
PENALTY_MAX = 600.0
SUMMARY_WINDOW = 60.0


@dataclass
class _Penalty:
    """A source's accrued penalty seconds, draining in real time, and its block."""

    score: float = 0.0
    at: float = field(default_factory=time.monotonic)
    blocked_until: float = 0.0
    blocks: int = 0

    def add(self, seconds: float, now: float) -> None:
        self.score = max(0.0, self.score - (now - self.at)) + seconds
        self.at = now
        if self.score > PENALTY_MIN:
            # Each new block of the same source lasts longer: score, doubled per earlier block.
            duration = min(PENALTY_MAX, self.score * (2**self.blocks))
            self.blocked_until = max(self.blocked_until, now + duration)
            self.blocks += 1
            self.score = 0.0


@dataclass
class Refusals:
    """Turned-away connections per (source, reason), summarised once a minute."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    first: dict[tuple[str, str], float] = field(default_factory=dict)

    def note(self, source: str, reason: str) -> bool:
        """Count one; True when it is the first of its minute (record it now)."""
        key = (source, reason)
        fresh = key not in self.first
        if fresh:
            self.first[key] = time.monotonic()
        else:
            self.counts[key] += 1
        return fresh

    def due(self, *, everything: bool = False) -> list[tuple[str, str, int]]:
        """(source, reason, count after the first) for every minute that has ended."""
        now, out = time.monotonic(), []
        for key, started in list(self.first.items()):
            if everything or now - started >= SUMMARY_WINDOW:
                del self.first[key]
                count = self.counts.pop(key, 0)
                if count:
                    out.append((*key, count))
        return out


class Limits:
    """Counters shared by every connection of one gateway process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = 0
        self.per_principal: Counter[str] = Counter()
        self.unauthenticated = 0
        self.per_source: Counter[str] = Counter()
        self.refusals = Refusals()
        self._failures: dict[str, deque[float]] = {}
        self._penalties: dict[str, _Penalty] = {}

    def admit_connection(self, source: str) -> str | None:
        """None to accept a new connection (it now holds a slot), or why it is refused."""
        penalty = self._penalties.get(source)
        now = time.monotonic()
        if penalty is not None and penalty.blocked_until > now:
            return f"{source} is penalised for repeated failures or stalls"
        if self.throttled(source):
            return f"too many authentication failures from {source}"
        if self.unauthenticated >= self.settings.max_unauthenticated:
            return "too many unauthenticated connections"
        if self.per_source[source] >= self.settings.max_unauthenticated_per_source:
            return f"too many unauthenticated connections from {source}"
        self.unauthenticated += 1
        self.per_source[source] += 1
        return None

    def authenticated(self, source: str) -> None:
        """A connection admitted by admit_connection finished authentication (or went away)."""
        self.unauthenticated = max(0, self.unauthenticated - 1)
        self.per_source[source] -= 1
        if self.per_source[source] <= 0:
            del self.per_source[source]

    def penalise(self, source: str, *, stalled: bool) -> None:
        """A connection from *source* ended without logging in: failed keys, or a stall."""
        now = time.monotonic()
        self._penalties.setdefault(source, _Penalty(at=now)).add(
            PENALTY_STALLED if stalled else PENALTY_AUTHFAIL, now
        )
        if len(self._penalties) > 4096:  # bounded: forget sources whose block is over
            for key in [k for k, p in self._penalties.items() if p.blocked_until < now and p.score == 0]:
                del self._penalties[key]

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
