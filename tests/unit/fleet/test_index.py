"""The fleet's session index: pushed once however often, and listed safely whatever the rows say."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg

from gateway.evidence.query import Filters
from gateway.fleet.index import Pusher, list_table
from gateway.fleet.link import Link


def _chain(state: Path, sessions: int) -> None:
    """An audit file with *sessions* started and ended sessions (the index reads only these fields)."""
    (state / "audit").mkdir(parents=True, exist_ok=True)
    lines, seq = [], 0
    for k in range(sessions):
        sid = f"{k:016x}"
        for event in ("session.start", "session.end"):
            seq += 1
            lines.append(json.dumps({"event": event, "seq": seq, "session_id": sid, "channel": 1,
                                     "ts": f"2026-12-05T10:00:{k:02d}.000000Z", "principal": "betty",
                                     "action": "memory", "exit_status": 0}))  # fmt: skip
    (state / "audit" / "audit-2026-12-05-000.jsonl").write_text("\n".join(lines) + "\n")


async def test_pushing_twice_counts_each_session_once(dsn: str, tmp_path: Path) -> None:
    _chain(tmp_path, 3)
    link = Link(dsn)
    await link.start()
    pusher = Pusher(link, "a", tmp_path)
    try:
        assert await pusher.push() == 3
        assert await pusher.push() == 0
        db = sqlite3.connect(tmp_path / "index.sqlite")  # the mark lost: everything is pushed again
        db.execute("DELETE FROM meta WHERE k = 'fleet_pushed'")
        db.commit()
        db.close()
        assert await pusher.push() == 3
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT id, state, last_seq FROM fleet_sessions ORDER BY id").fetchall()
        assert rows == [(f"{k:016x}", "ended", 2 * k + 2) for k in range(3)]
    finally:
        pusher.close()
        await link.close()


async def test_a_row_written_to_trouble_a_terminal_is_listed_harmless(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for host, principal in (("a", "betty"), ("b\x1b[2J", "eve\nforged  line"), ("c", "\u202eyttab")):
            conn.execute("INSERT INTO fleet_sessions (host, id, principal, start, state) VALUES"
                         " (%s, '0123456789abcdef', %s, '2026-12-05T10:00:00Z', 'ended')", (host, principal))  # fmt: skip
    link = Link(dsn)
    await link.start()
    try:
        table = await list_table(link, Filters())
        only_a = await list_table(link, Filters(host="a"))
    finally:
        await link.close()
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].split()[:2] == ["host", "id"], table
    assert "\x1b" not in table and "\u202e" not in table and "eve?forged" in table
    assert len(only_a.splitlines()) == 2 and only_a.splitlines()[1].startswith("a ")
