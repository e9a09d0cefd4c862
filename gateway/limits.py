"""Admission limits: sessions in total and per principal, unauthenticated connections
(in total and per source, like OpenSSH's MaxStartups and PerSourceMaxStartups), a
per-source throttle after repeated authentication failures, and growing per-source
penalties for sources that keep failing or stalling (like PerSourcePenalties).

Pure bookkeeping on the event loop. Turned-away connections are summarised for
the audit log: the first from a source in a minute is recorded at once, the rest
of that minute as one record with a count (see ``Refusals``).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway import shared
from gateway.settings import Settings
from gateway.shared import SharedTable, TableFull, Values

FAILURE_WINDOW = 60.0
#: seconds of penalty per event, as OpenSSH's PerSourcePenalties defaults
PENALTY_AUTHFAIL = 5.0
PENALTY_STALLED = 10.0
#: a source is turned away only once its penalty exceeds this (a few mistakes are free)
PENALTY_MIN = 15.0
PENALTY_MAX = 600.0
SUMMARY_WINDOW = 60.0


class Refusals:
    """Turned-away connections per (source, reason), summarised once a minute, for every worker at once.

    The first of a minute is recorded at once (``note`` is True for it, in
    whichever worker it happens); the rest are counted in the shared table and
    written as one record with the count once the minute is over, by the first
    worker that notices (``due``; taking the count zeroes it, under the lock).
    """

    def __init__(self, table: SharedTable | None = None) -> None:
        self.table = table or SharedTable(slots=4096)
        #: the (source, reason) pairs this process has seen, by their table key
        self.known: dict[str, tuple[str, str]] = {}

    def _key(self, source: str, reason: str) -> str:
        key = REFUSED + hashlib.sha256(f"{source}\0{reason}".encode()).hexdigest()[:40]
        self.known[key] = (source, reason)
        return key

    def note(self, source: str, reason: str) -> bool:
        """Count one; True when it is the first of its minute (record it now)."""
        now, fresh = time.monotonic(), False

        def change(values: Values) -> Values:
            nonlocal fresh
            if values[1] == 0.0:  # nothing this minute yet
                fresh = True
                return 0.0, now, 0.0, 0.0
            return values[0] + 1, values[1], 0.0, 0.0

        try:
            self.table.update(self._key(source, reason), change, _expired)
        except TableFull:
            return True  # no room to count: record each one rather than lose it
        return fresh

    def due(self, *, everything: bool = False) -> list[tuple[str, str, int]]:
        """(source, reason, count after the first) for every minute that has ended."""
        now, out = time.monotonic(), []
        for key, pair in list(self.known.items()):
            taken = self.table.take(key, lambda v: everything or now - v[1] >= SUMMARY_WINDOW)
            if taken is not None:
                del self.known[key]
                if taken[0]:
                    out.append((*pair, int(taken[0])))
        return out


def _penalised(values: Values, seconds: float, now: float) -> Values:
    """A source's penalty (score, at, blocked_until, blocks) after *seconds* more, draining in real time."""
    score, at, blocked_until, blocks = values
    score = max(0.0, score - (now - at)) + seconds
    if score > PENALTY_MIN:
        # Each new block of the same source lasts longer: score, doubled per earlier block.
        duration = min(PENALTY_MAX, score * (2**blocks))
        return 0.0, now, max(blocked_until, now + duration), blocks + 1
    return score, now, blocked_until, blocks


@dataclass
class _Penalty:
    """One source's penalty as a record (the shared table keeps the same four numbers)."""

    score: float = 0.0
    at: float = field(default_factory=time.monotonic)
    blocked_until: float = 0.0
    blocks: int = 0

    def add(self, seconds: float, now: float) -> None:
        values = _penalised((self.score, self.at, self.blocked_until, float(self.blocks)), seconds, now)
        self.score, self.at, self.blocked_until, self.blocks = values[0], values[1], values[2], int(values[3])


def _expired(key: str, values: Values) -> bool:
    """Records that may be dropped to make room: a failure window or a penalty that is over."""
    now = time.monotonic()
    if key.startswith(FAILURES):
        return now - values[1] > FAILURE_WINDOW
    if key.startswith(PENALTY):
        return values[2] < now and values[0] - (now - values[1]) <= 0
    if key.startswith(REFUSED):  # a summary its worker never wrote (it is gone)
        return now - values[1] > 2 * SUMMARY_WINDOW
    return False


SESSIONS, PRINCIPAL, UNAUTH, UNAUTH_FROM = "sessions", "principal:", "unauth", "unauth-from:"
FAILURES, PENALTY, REFUSED = "failures:", "penalty:", "refused:"


def _add(delta: float, cap: float | None = None) -> Callable[[Values], Values]:
    """Add *delta* to a count (never below zero); with *cap*, refuse (raise _AtLimit) at the cap."""

    def change(values: Values) -> Values:
        if cap is not None and delta > 0 and values[0] >= cap:
            raise _AtLimit
        return max(0.0, values[0] + delta), 0.0, 0.0, 0.0

    return change


class _AtLimit(Exception):
    pass


def owner_prefix(worker: int) -> str:
    """The key prefix of worker *worker*'s share of each count."""
    return f"w{worker}|"


class Limits:
    """Counters every connection shares, across every worker process (``shared.table``)."""

    def __init__(self, settings: Settings, table: SharedTable | None = None) -> None:
        self.settings = settings
        self.table = table or shared.table()
        if settings.state.is_dir():
            self.table.lock_at(settings.state / "limits.lock")
        self.refusals = Refusals(self.table)
        #: this worker's prefix for its share of each count (none with a single process)
        self.owner = owner_prefix(settings.worker) if settings.workers > 1 else ""

    @property
    def sessions(self) -> int:
        """Sessions running now, in every worker."""
        return int(self.table.get(SESSIONS)[0])

    @property
    def unauthenticated(self) -> int:
        """Connections not yet authenticated, in every worker."""
        return int(self.table.get(UNAUTH)[0])

    def _count(self, key: str, delta: float, cap: float | None = None) -> bool:
        """Change a count; False when it is at *cap* (or no room is left: fail closed).

        With several workers each count also has an owner: this worker's share is kept beside it
        (``wN|KEY``), in the same lock, so a worker that dies can be given back (``release_owner``).
        """
        changes = [(key, _add(delta, cap))]
        if self.owner:
            changes.append((self.owner + key, _add(delta)))
        try:
            self.table.update_all(changes, _expired)
        except (_AtLimit, TableFull):
            return False
        return True

    def release_owner(self, worker: int) -> list[tuple[str, float]]:
        """What worker *worker* held (it is gone): taken off every count; (key, count) of each."""
        return self.table.release_owned(owner_prefix(worker))

    def admit_connection(self, source: str) -> str | None:
        """None to accept a new connection (it now holds a slot), or why it is refused."""
        now = time.monotonic()
        if self.table.get(PENALTY + source)[2] > now:
            return f"{source} is penalised for repeated failures or stalls"
        if self.throttled(source):
            return f"too many authentication failures from {source}"
        if not self._count(UNAUTH, 1, self.settings.max_unauthenticated):
            return "too many unauthenticated connections"
        if not self._count(UNAUTH_FROM + source, 1, self.settings.max_unauthenticated_per_source):
            self._count(UNAUTH, -1)
            return f"too many unauthenticated connections from {source}"
        return None

    def authenticated(self, source: str) -> None:
        """A connection admitted by admit_connection finished authentication (or went away)."""
        self._count(UNAUTH, -1)
        self._count(UNAUTH_FROM + source, -1)

    def penalise(self, source: str, *, stalled: bool) -> None:
        """A connection from *source* ended without logging in: failed keys, or a stall."""
        seconds, now = (PENALTY_STALLED if stalled else PENALTY_AUTHFAIL), time.monotonic()
        with contextlib.suppress(TableFull):  # no room even after the sweep: no penalty (limits still hold)
            self.table.update(PENALTY + source, lambda v: _penalised(v, seconds, now), _expired)

    def failed(self, source: str) -> None:
        """An authentication failure from *source* (counted in a window of FAILURE_WINDOW seconds)."""
        now = time.monotonic()

        def change(values: Values) -> Values:
            count, since = values[0], values[1]
            if now - since > FAILURE_WINDOW:
                count, since = 0.0, now
            return count + 1, since, 0.0, 0.0

        with contextlib.suppress(TableFull):
            self.table.update(FAILURES + source, change, _expired)

    def throttled(self, source: str) -> bool:
        """Whether *source* failed too often in the current window."""
        count, since, _, _ = self.table.get(FAILURES + source)
        if time.monotonic() - since > FAILURE_WINDOW:
            return False
        return count >= self.settings.auth_failure_limit

    def admit_session(self, principal: str) -> str | None:
        """None to start a session for *principal*, or why it is refused."""
        if not self._count(SESSIONS, 1, self.settings.max_sessions):
            return "the gateway is at its session limit"
        if not self._count(PRINCIPAL + principal, 1, self.settings.max_sessions_per_principal):
            self._count(SESSIONS, -1)
            return f"{principal} is at the per-principal session limit"
        return None

    def release_session(self, principal: str) -> None:
        """A session admitted by admit_session ended."""
        self._count(SESSIONS, -1)
        self._count(PRINCIPAL + principal, -1)
