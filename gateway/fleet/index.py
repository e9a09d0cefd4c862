"""The fleet's session index: each host pushes its own index's rows; any host answers for all.

The local SQLite index (``gateway.evidence.index``, rebuilt from the audit
chain) stays the source: a pusher copies every row whose last record is past
the mark it last pushed, by upsert on ``(host, id)``, and moves the mark only
once the database has them. A row pushed twice is one row; a row written
while the database was down is pushed when it answers again. Nothing is lost
and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from gateway import oplog
from gateway.evidence import query
from gateway.evidence.index import Index
from gateway.fleet.down import FleetDown
from gateway.fleet.link import Link
from gateway.textsafe import UNSAFE_LINE, visible

BATCH = 1000
MARK = "fleet_pushed"
COLUMNS = ("id", "principal", "action", "target", "container", "start", "end", "duration", "exit_status",
           "signal", "bytes_in", "bytes_out", "reason", "request", "approvers", "recording",
           "recording_sha256", "state", "first_seq", "last_seq")  # fmt: skip
QUOTED = ", ".join('"' + c + '"' for c in COLUMNS)
_UPSERT = (
    f"INSERT INTO fleet_sessions (host, {QUOTED}) VALUES ({', '.join(['%s'] * (len(COLUMNS) + 1))})"  # noqa: S608
    " ON CONFLICT (host, id) DO UPDATE SET "
    + ", ".join(f"{c!r} = excluded.{c!r}".replace("'", '"') for c in COLUMNS[1:])
)


class Pusher:
    """Copies this host's index rows to the fleet; the SQLite side runs on a thread of its own."""

    def __init__(self, link: Link, host: str, state: Path) -> None:
        self.link, self.host, self.state = link, host, state
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fleet-index")
        self._index: Index | None = None
        self.wake = asyncio.Event()

    def _pending(self) -> tuple[list[tuple[Any, ...]], int]:
        if self._index is None:
            self._index = Index(self.state)
        index = self._index
        index.catch_up()
        row = index.db.execute("SELECT v FROM meta WHERE k = ?", (MARK,)).fetchone()
        mark = int(row[0]) if row else -1
        rows = index.db.execute(
            f"SELECT {QUOTED} FROM sessions WHERE last_seq > ? ORDER BY last_seq LIMIT ?",  # noqa: S608
            (mark, BATCH),
        ).fetchall()
        return [tuple(r) for r in rows], mark

    def _moved(self, mark: int) -> None:
        assert self._index is not None
        with self._index.db:
            self._index.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (MARK, str(mark)))

    async def push(self) -> int:
        """Push what is new; how many rows (FleetDown when the database does not answer)."""
        loop = asyncio.get_running_loop()
        total = 0
        while True:
            rows, _ = await loop.run_in_executor(self._thread, self._pending)
            if not rows:
                return total

            async def upsert(conn: AsyncConnection[Any], rows: list[tuple[Any, ...]] = rows) -> None:
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.executemany(_UPSERT.encode(), [(self.host, *_typed(r)) for r in rows])

            await self.link.run(upsert)
            await loop.run_in_executor(self._thread, self._moved, int(rows[-1][-1]))
            total += len(rows)

    async def run(self, every: float = 0.5) -> None:
        """Push now and then, and at once when the database answers again."""
        while True:
            try:
                await self.push()
            except FleetDown:
                pass
            except Exception as exc:  # the local index busy or broken: try again later
                oplog.log().warning("fleet.index_push_failed", problem=f"{type(exc).__name__}: {exc}"[:200])
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), every)

    def close(self) -> None:
        """Stop the thread (and close the index on it)."""
        if self._index is not None:
            self._thread.submit(self._index.close)
        self._thread.shutdown(wait=True)


def _typed(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """SQLite's loose values as the columns' types (a signal may be a number or a name)."""
    values = list(row)
    signal = COLUMNS.index("signal")
    values[signal] = None if values[signal] is None else str(values[signal])
    return tuple(values)


async def list_rows(link: Link, filters: query.Filters) -> list[dict[str, Any]]:
    """The fleet's sessions matching *filters*, oldest first, each with its host."""
    where, params = query.where(filters, "%s")

    async def fetch(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT * FROM fleet_sessions {where} ORDER BY start, host".encode(), params)  # noqa: S608
        return list(await cur.fetchall())

    return await link.run(fetch)


# The table is made by the server, aligned and joined into one text (100,000 rows: one value to fetch,
# not 2 million cells to convert); the columns and their order are ``sessions list``'s own. The database
# is not trusted with Charlotte's terminal either: when the text holds a control character (or a cell held
# a line break: more lines than rows), it is made again with every text cell through fleet_safe().
_CELLS = (
    "{safe}(host)", "{safe}(id)", "{safe}(replace(substr(start, 1, 19), 'T', ' '))",
    "CASE WHEN duration IS NULL THEN '-' ELSE to_char(duration, 'FM999999990.0') || 's' END",
    "{safe}(coalesce(principal, '-'))", "{safe}(coalesce(action, '-'))", "{safe}(coalesce(target, '-'))",
    "{safe}(coalesce(substr(container, 1, 12), '-'))",
    "CASE WHEN state <> 'ended' THEN {safe}(state) WHEN signal IS NOT NULL THEN 'sig ' || {safe}(signal)"
    " ELSE exit_status::text END",
    "coalesce(bytes_in, 0) || '/' || coalesce(bytes_out, 0)",
    "CASE WHEN request IS NULL THEN '-'"
    " ELSE {safe}(request) || ' by ' || {safe}(coalesce(approvers, '-')) END",
)  # fmt: skip
_TABLE = (
    "WITH cells AS (SELECT row_number() OVER (ORDER BY start, host) AS n, "  # noqa: S608 - fixed text
    + ", ".join(f"{cell} AS c{k}" for k, cell in enumerate(_CELLS))
    + " FROM fleet_sessions {where}), every AS (SELECT 0::bigint AS n, "
    + ", ".join(f"%s::text AS c{k}" for k in range(len(_CELLS)))
    + " UNION ALL SELECT n, "
    + ", ".join(f"coalesce(c{k}, '-')" for k in range(len(_CELLS)))
    + " FROM cells), widths AS (SELECT "
    + ", ".join(f"max(length(c{k})) AS w{k}" for k in range(len(_CELLS)))
    + " FROM every) SELECT count(*), string_agg(rtrim("
    + " || '  ' || ".join(f"rpad(c{k}, w{k})" for k in range(len(_CELLS)))
    + "), E'\\n' ORDER BY n) FROM every, widths"
)


async def list_table(link: Link, filters: query.Filters) -> str:
    """``sessions list``'s table over the fleet: the host column, then the columns of one host's."""
    where, params = query.where(filters, "%s")
    header = ["host", *query.COLUMNS]

    async def fetch(conn: AsyncConnection[Any]) -> str:
        for safe in ("", "fleet_safe"):
            body = _TABLE.replace("{safe}", safe).replace("{where}", where)
            row = await (await conn.execute(body.encode(), [*params, *header])).fetchone()
            rows, text = (int(row[0]), str(row[1] or "")) if row else (0, "")
            if text.count("\n") == rows - 1 and not UNSAFE_LINE.search(text):
                break
        return text + "\n"

    return await link.run(fetch)


async def find(link: Link, session: str) -> list[dict[str, Any]]:
    """The fleet's rows for ``ID`` or ``ID.N`` (one per host that has it)."""
    query.checked_id(session)

    async def fetch(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM fleet_sessions WHERE id = %s ORDER BY host", (session,))
        return list(await cur.fetchall())

    return await link.run(fetch)


def elsewhere(rows: list[dict[str, Any]]) -> str:
    """``sessions show`` of a session another host holds: where it ran and how to fetch its recording."""
    lines = []
    for r in rows:
        outcome = str(r["state"])
        if outcome == "ended":
            outcome = f"sig {r['signal']}" if r["signal"] is not None else f"exit {r['exit_status']}"
        what = f"{r['principal']} {r['action']} {r['target'] or ''}".rstrip()
        host, sid = r["host"], r["id"]
        lines += [
            f"session {sid} ran on host {host}: {what}, {r['start']} - {r['end'] or 'open'}, {outcome},"
            f" {r['bytes_in'] or 0}/{r['bytes_out'] or 0} bytes",
            f"  request: {r['request'] or '-'}  approvers: {r['approvers'] or '-'}"
            f"  reason: {r['reason'] or '-'}",
            f"  records: seq {r['first_seq']}-{r['last_seq']} of {host}'s chain",
            f"  recording: {r['recording'] or '-'} (sha256 {r['recording_sha256'] or 'not yet known'})"
            f" is on host {host}: fetch it with ssh audit@{host} sessions show {sid}"
            f" (or sessions export {sid})",
        ]
    return "".join(visible(line) + "\n" for line in lines)
