"""Moderated sessions: a session that runs only while enough moderators watch it.

The session waits (``waiting for a moderator``) until ``needed`` different
eligible principals (never the requester) watch it, with ``ssh approve@HOST
watch R-ID`` or ``ssh audit@HOST sessions watch SESSION``. While it runs, the
moderators see its recording live; if they drop below the number needed the
session is ended, and any of them ends it at once with Ctrl-] (0x1d). The
board lives in the gateway process: both doors' sessions run there.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.policy.compiled import Need

STOP = b"\x1d"  # Ctrl-]


@dataclass
class Moderated:
    """One moderated session: who must watch, who watches, how to end it."""

    key: str
    session_id: str
    requester: str
    what: str
    need: Need
    watchers: dict[int, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    #: the recording, once the session runs (moderators follow it)
    recording: Path | None = None
    #: ends the running session with a reason (set when it starts)
    end: Callable[[str, str], None] | None = None

    def eligible(self, principal: str) -> bool:
        """A moderator: in the rule's set, and not the one being moderated."""
        return principal != self.requester and principal in self.need.approvers

    @property
    def moderators(self) -> list[str]:
        """The eligible principals watching now, each once."""
        return sorted({p for p in self.watchers.values() if self.eligible(p)})

    def enough(self) -> bool:
        """Whether enough moderators watch."""
        return len(self.moderators) >= self.need.needed

    def _poke(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class ModerationBoard:
    """The moderated sessions of this gateway process, by request id and by session id."""

    def __init__(self) -> None:
        self._by_key: dict[str, Moderated] = {}
        self._tokens = itertools.count(1)

    def open(self, session_id: str, requester: str, what: str, need: Need) -> Moderated:
        """A new moderated session, waiting for its moderators."""
        key = f"R-{secrets.token_hex(3).upper()}"
        while key in self._by_key:
            key = f"R-{secrets.token_hex(3).upper()}"
        found = Moderated(key, session_id, requester, what, need)
        self._by_key[key] = found
        return found

    def close(self, moderated: Moderated) -> None:
        """The session is over: its watchers are told."""
        moderated.finished.set()
        moderated._poke()
        self._by_key.pop(moderated.key, None)

    def find(self, name: str) -> Moderated | None:
        """By request id (``R-…``) or by session id."""
        found = self._by_key.get(name.upper())
        if found is not None:
            return found
        return next((m for m in self._by_key.values() if m.session_id == name), None)

    def join(self, moderated: Moderated, principal: str) -> int:
        """A watcher arrives; a token to leave with."""
        token = next(self._tokens)
        moderated.watchers[token] = principal
        moderated._poke()
        return token

    def leave(self, moderated: Moderated, token: int) -> None:
        """A watcher leaves; the session ends if too few remain (``session.conditions``)."""
        moderated.watchers.pop(token, None)
        moderated._poke()
