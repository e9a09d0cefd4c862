"""Session limits across the fleet: one PostgreSQL session advisory lock per slot.

A principal limited to N sessions has N slots, ``(hashtext('principal:NAME'),
0..N-1)``; the fleet's ``max_sessions`` has its own N. A session takes the
first free slot of each (``pg_try_advisory_lock``, one round trip) on this
process's own connection and gives it back when it ends. Nothing expires:
when a gateway dies, the server ends its connection and frees its locks with
it, so no lease outlives its holder and no burst is refused by a dead one.
(A transaction-mode pgbouncer would break this: the slots need a direct
connection.)

When the database does not answer, ``take`` raises FleetDown and the session
runs under the host's own limits only.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from gateway.fleet.down import CONNECT_SECONDS, FleetDown, Full, why
from gateway.fleet.link import QUERY_SECONDS

#: the candidates are the slots this connection does not hold already: advisory locks are re-entrant
#: within one connection, and every session of this process shares it
_TAKE = "SELECT k FROM unnest(%s::int[]) AS k WHERE pg_try_advisory_lock(hashtext(%s), k) LIMIT 1"
TOTAL = "fleet:max_sessions"


@dataclass(frozen=True)
class Slot:
    """Slots one session holds, on the connection of generation ``generation``."""

    held: tuple[tuple[str, int], ...]
    generation: int


class Slots:
    """This process's slot connection."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: AsyncConnection[Any] | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        #: the slots this connection holds, by key
        self._mine: dict[str, set[int]] = {}

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        conn: AsyncConnection[Any] = await asyncio.wait_for(
            AsyncConnection.connect(self._dsn, autocommit=True), CONNECT_SECONDS + 1
        )
        self._conn, self._mine = conn, {}  # a new connection holds nothing
        self._generation += 1
        return conn

    async def take(self, principal: str, per_principal: int | None, total: int | None) -> Slot:
        """A slot of each limit (Full when one has none free; FleetDown when nobody answers)."""
        wanted = [(f"principal:{principal}", per_principal, "per principal"), (TOTAL, total, "in the fleet")]
        held: list[tuple[str, int]] = []
        async with self._lock:
            try:
                async with asyncio.timeout(QUERY_SECONDS):
                    conn = await self._connection()
                    for key, limit, what in wanted:
                        if limit is None:
                            continue
                        mine = self._mine.setdefault(key, set())
                        free = [k for k in range(limit) if k not in mine]
                        row = await (await conn.execute(_TAKE, (free, key))).fetchone() if free else None
                        if row is None:
                            await self._give(conn, held)
                            raise Full(f"{limit} sessions {what}")
                        held.append((key, int(row[0])))
                        mine.add(int(row[0]))
            except Full:
                raise
            except Exception as exc:  # any failure to reach the database: FleetDown
                self._conn = None
                raise FleetDown(why(exc)) from None
            return Slot(tuple(held), self._generation)

    async def give(self, slot: Slot) -> None:
        """Give the slots back (nothing to do if their connection has gone: the server freed them)."""
        async with self._lock:
            if slot.generation != self._generation or self._conn is None or self._conn.closed:
                return
            with contextlib.suppress(Exception):
                async with asyncio.timeout(QUERY_SECONDS):
                    await self._give(self._conn, list(slot.held))

    async def _give(self, conn: AsyncConnection[Any], held: list[tuple[str, int]]) -> None:
        for key, k in held:
            self._mine.get(key, set()).discard(k)
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s), %s)", (key, k))

    async def close(self) -> None:
        """Close the connection (the server frees every slot it held)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
