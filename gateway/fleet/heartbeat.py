"""Which host runs what: each gateway's heartbeat row, and the drift ``fleet status`` marks.

A host whose policy digest differs from the majority's is marked ``policy
differs``; one not seen for ``STALE`` seconds is marked ``not seen``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

STALE = 30.0
EVERY = 5.0


@dataclass(frozen=True)
class Beat:
    """What one heartbeat says."""

    host: str
    version: str
    policy: str
    commit: str | None
    workers: int
    sessions_open: int
    started: float


async def beat(conn: AsyncConnection[Any], b: Beat) -> None:
    """Upsert this host's row, last seen now (the database's clock)."""
    await conn.execute(
        "INSERT INTO fleet_hosts VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s), now())"
        " ON CONFLICT (name) DO UPDATE SET version = excluded.version, policy = excluded.policy,"
        " commit = excluded.commit, workers = excluded.workers, sessions_open = excluded.sessions_open,"
        " started = excluded.started, last_seen = now()",
        (b.host, b.version, b.policy, b.commit, b.workers, b.sessions_open, b.started),
    )


async def hosts(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Every host's row with ``age`` (seconds since last seen) and ``marks`` (its drift)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT *, extract(epoch FROM now() - last_seen)::float AS age,"
        " extract(epoch FROM started)::float AS started_at FROM fleet_hosts ORDER BY name"
    )
    return mark(list(await cur.fetchall()))


def mark(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each row's ``marks``: the policy that differs from the majority's, a host not seen lately."""
    live = [r for r in rows if float(r["age"]) <= STALE]
    counts = Counter(str(r["policy"]) for r in (live or rows))
    majority = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0] if counts else None
    for row in rows:
        marks = []
        if majority is not None and row["policy"] != majority:
            marks.append("policy differs")
        if float(row["age"]) > STALE:
            marks.append(f"not seen for {int(float(row['age']))}s")
        row["marks"] = marks
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """``gateway fleet status``'s table."""
    header = ("host", "version", "policy", "commit", "workers", "sessions", "last seen", "drift")
    cells = [header]
    for r in rows:
        cells.append((str(r["name"]), str(r["version"]), str(r["policy"])[:12], str(r["commit"] or "-")[:12],
                      str(r["workers"]), str(r["sessions_open"]), f"{float(r['age']):.0f}s ago",
                      "; ".join(r["marks"]) or "ok"))  # fmt: skip
    widths = [max(len(c[k]) for c in cells) for k in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in cells
    )


def mismatched(rows: list[dict[str, Any]]) -> int:
    """How many hosts run a policy other than the majority's (``gateway_fleet_policy_mismatch``)."""
    return sum(1 for r in rows if "policy differs" in r["marks"])


def now() -> float:
    """Unix time (the heartbeat's start stamp)."""
    return time.time()
