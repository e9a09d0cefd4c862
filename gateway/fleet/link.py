"""The link to the fleet's PostgreSQL: a small pool, a listener, and whether the database answers.

Every query goes through ``run``: when the database did not answer the last
check it fails at once (FleetDown) instead of waiting, and a query that fails
or takes longer than ``QUERY_SECONDS`` marks it down. A watcher asks every
second; when it answers again, everything that waited for it (the index
push, a waiting request's re-read) is told. Notifications (``LISTEN
gateway_fleet``) come on a connection of their own, reconnected when it
breaks; since NOTIFY is not durable, a reconnect counts as "something may
have changed" for every listener.

The connection string never reaches a log line or an audit record: errors are
reported by their class and the server's message, which never contains it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway import oplog
from gateway.fleet import schema
from gateway.fleet.down import CONNECT_SECONDS, FleetDown, why, with_timeout
from gateway.tasks import Tasks

CHANNEL = "gateway_fleet"
QUERY_SECONDS = 3.0
CHECK_EVERY = 1.0
T = TypeVar("T")
Query = Callable[[AsyncConnection[Any]], Awaitable[T]]


class Link:
    """One process's connections to the fleet database."""

    def __init__(self, dsn: str) -> None:
        logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # the watcher says it once, in oplog
        self._dsn = with_timeout(dsn)
        self.pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=4,
            open=False,
            timeout=QUERY_SECONDS,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
            name="gateway-fleet",
        )
        self.up = False
        self.problem = "not connected yet"
        self._tasks = Tasks("fleet-link")
        self._on_notify: list[Callable[[str], None]] = []
        self._on_up: list[Callable[[], None]] = []
        self._on_down: list[Callable[[], None]] = []
        self._answered = asyncio.Event()

    def on_notify(self, handler: Callable[[str], None]) -> None:
        """Call *handler(payload)* for every notification, and with ``""`` after a reconnect."""
        self._on_notify.append(handler)

    def on_up(self, handler: Callable[[], None]) -> None:
        """Call *handler()* each time the database answers again after not answering."""
        self._on_up.append(handler)

    def on_down(self, handler: Callable[[], None]) -> None:
        """Call *handler()* each time the database stops answering."""
        self._on_down.append(handler)

    async def start(self, first_wait: float = CONNECT_SECONDS) -> None:
        """Open the pool and the listener; wait a little for a first answer (none: start down)."""
        await self.pool.open(wait=False)
        self._tasks.spawn(self._watch(), "watch")
        self._tasks.spawn(self._listen(), "listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._answered.wait(), first_wait)

    async def close(self) -> None:
        """Stop the tasks and close every connection."""
        await self._tasks.cancel_all()
        with contextlib.suppress(Exception):
            await self.pool.close(timeout=1.0)

    async def run(self, query: Query[T]) -> T:
        """*query(conn)* on a pooled connection; FleetDown when the database does not answer."""
        if not self.up:
            raise FleetDown(self.problem)
        return await self._run(query)

    async def _run(self, query: Query[T], *, checking: bool = False) -> T:
        try:
            async with asyncio.timeout(QUERY_SECONDS), self.pool.connection() as conn:
                return await query(conn)
        except PoolTimeout as exc:
            if checking:  # the watcher waited for a connection the pool could not make: down
                self._down(why(exc))
                raise FleetDown(self.problem) from None
            raise FleetDown("every fleet connection of this process is busy") from None  # busy, not down
        except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
            self._down(why(exc))
            raise FleetDown(self.problem) from None
        except psycopg.Error as exc:  # the server answered, with an error (a missing grant, say): fail closed
            oplog.log().warning("fleet.query_failed", problem=why(exc))
            raise FleetDown(why(exc)) from None

    def _down(self, problem: str) -> None:
        was, self.up, self.problem = self.up, False, problem
        if was:
            oplog.log().warning("fleet.down", problem=problem)
            for handler in self._on_down:
                handler()

    async def _watch(self) -> None:
        """Ask every second; tell the waiters when the database answers again."""
        while True:
            try:
                await self._run(schema.check, checking=True)
            except schema.SchemaError as exc:
                self._down(str(exc))
            except FleetDown:
                pass
            except Exception as exc:  # any other database error: down, and keep watching
                self._down(why(exc))
            else:
                if not self.up:
                    self.up = True
                    if self._answered.is_set():  # the first answer is the start, not news
                        oplog.log().info("fleet.up")
                    self._answered.set()
                    for handler in self._on_up:
                        handler()
            await asyncio.sleep(CHECK_EVERY)

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; after every reconnect, tell each handler to re-read."""
        while True:
            try:
                conn = await asyncio.wait_for(
                    AsyncConnection.connect(self._dsn, autocommit=True), CONNECT_SECONDS + 1
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._tell("")  # what was sent while away is lost: re-read
                    async for note in conn.notifies():
                        self._tell(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: S110 - reconnected, never fatal (the watcher reports it down)
                pass
            await asyncio.sleep(0.5)

    def _tell(self, payload: str) -> None:
        for handler in self._on_notify:
            try:
                handler(payload)
            except Exception:  # one handler's bug must not stop the listener
                oplog.log().exception("fleet.notify_handler")


async def notify(conn: AsyncConnection[Any], payload: str) -> None:
    """NOTIFY the fleet (inside the caller's transaction, when there is one)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
