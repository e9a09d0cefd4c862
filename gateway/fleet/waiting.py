"""Moderated sessions waiting anywhere in the fleet, listed by ``ssh approve@ANY-HOST``.

The host that runs a moderated session publishes it while it waits and
withdraws it when it starts or ends; everything else (who watches, the
count, the ``moderator.*`` records) stays with that host. Another host only
lists it, with the command that joins it where it runs.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from gateway.fleet.link import Link
from gateway.moderation import Moderated


async def publish(link: Link, host: str, moderated: Moderated) -> None:
    """*moderated* waits on *host*."""

    async def insert(conn: AsyncConnection[Any]) -> None:
        await conn.execute(
            "INSERT INTO fleet_waiting VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (host, key) DO NOTHING",
            (host, moderated.key, moderated.requester, moderated.what, moderated.need.describe(),
             json.dumps(sorted(moderated.need.approvers)), moderated.opened),
        )  # fmt: skip

    await link.run(insert)


async def withdraw(link: Link, host: str, key: str) -> None:
    """It waits no longer (it runs, or it ended)."""

    async def delete(conn: AsyncConnection[Any]) -> None:
        await conn.execute("DELETE FROM fleet_waiting WHERE host = %s AND key = %s", (host, key))

    await link.run(delete)


async def for_moderator(link: Link, principal: str, not_host: str) -> list[dict[str, Any]]:
    """What *principal* may moderate on the other hosts, oldest first."""

    async def fetch(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT * FROM fleet_waiting WHERE host <> %s AND requester <> %s AND moderators ? %s"
            " ORDER BY since",
            (not_host, principal, principal),
        )
        return list(await cur.fetchall())

    return await link.run(fetch)


def line(row: dict[str, Any]) -> str:
    """One listing line, with the command that joins it on its own host."""
    return (
        f"{row['key']}  {row['requester']}  {row['what']}  on {row['host']}  waiting for a moderator"
        f"  needs {row['needs']} watching  join: ssh approve@{row['host']} watch {row['key']}"
    )


def json_line(row: dict[str, Any]) -> str:
    """The same as JSON."""
    fields = {"id": row["key"], "kind": "moderation", "requester": row["requester"], "what": row["what"],
              "host": row["host"], "state": "waiting", "needs": f"{row['needs']} watching",
              "watch": f"ssh approve@{row['host']} watch {row['key']}"}  # fmt: skip
    return json.dumps(fields, sort_keys=True)
