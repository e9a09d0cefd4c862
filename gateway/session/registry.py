"""The live sessions of one gateway process: a typed registry, for the drain and /healthz."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Protocol


class Live(Protocol):
    """What the server needs of a live session."""

    def notify(self, line: str) -> None:
        """One line on the client's stderr."""


class LiveSessions:
    """Sessions that are running now; ``quiet`` is set whenever the last one ends."""

    def __init__(self) -> None:
        self._live: set[Live] = set()
        self._quiet: asyncio.Event | None = None

    @property
    def quiet(self) -> asyncio.Event:
        """Set while no session runs (created on first use, inside the event loop)."""
        if self._quiet is None:
            self._quiet = asyncio.Event()
            if not self._live:
                self._quiet.set()
        return self._quiet

    def add(self, session: Live) -> None:
        """A session started."""
        self._live.add(session)
        self.quiet.clear()

    def discard(self, session: Live) -> None:
        """A session ended."""
        self._live.discard(session)
        if not self._live:
            self.quiet.set()

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Live]:
        return iter(list(self._live))

    async def wait_quiet(self, seconds: float) -> bool:
        """Wait (bounded) until no session runs; True if none does."""
        try:
            await asyncio.wait_for(self.quiet.wait(), seconds)
        except TimeoutError:
            return False
        return True
