"""A SQLite index of sessions and their events, always rebuildable from the audit log."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.audit import store
from gateway.events import Event, Record, as_record
from gateway.textsafe import UNSAFE_LINE

#: the cells of a session's ``sessions list`` line, made by SQLite whenever its row changes (so a list of
#: 100,000 sessions is a scan, not 100,000 rows of formatting): id, start, duration, principal, action,
#: target, container, exit, bytes, approval
CELLS = (
    "id", "replace(substr(start, 1, 19), 'T', ' ')",
    "CASE WHEN duration IS NULL THEN '-' ELSE printf('%.1fs', duration) END",
    "coalesce(principal, '-')", "coalesce(action, '-')", "coalesce(target, '-')",
    "coalesce(substr(container, 1, 12), '-')",
    "CASE WHEN state != 'ended' THEN state WHEN signal IS NOT NULL THEN 'sig ' || signal"
    " ELSE coalesce(CAST(exit_status AS TEXT), '-') END",
    "coalesce(bytes_in, 0) || '/' || coalesce(bytes_out, 0)",
    "CASE WHEN request IS NULL THEN '-' ELSE request || ' by ' || coalesce(approvers, '-') END",
)  # fmt: skip
CELL_COLUMNS = tuple(f"cell{k}" for k in range(len(CELLS)))
#: 1 when a cell holds a line end, a control character or a bidi override (the list escapes that row's
#: cells then); worked out when the row changes, as the cells are
UNSAFE_COLUMN = "unsafe"
_SET_CELLS = (
    "UPDATE sessions SET "  # noqa: S608 - fixed expressions
    + ", ".join(f"{c} = {e}" for c, e in zip(CELL_COLUMNS, CELLS, strict=True))
    + f", {UNSAFE_COLUMN} = unsafe({' || char(32) || '.join(CELLS)})"
    + " WHERE id = ?"
)  # fmt: skip
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, session_id TEXT NOT NULL, channel INTEGER NOT NULL,
  start TEXT NOT NULL, end TEXT, duration REAL, principal TEXT, action TEXT, target TEXT,
  container TEXT, exit_status INTEGER, signal TEXT, bytes_in INTEGER, bytes_out INTEGER,
  recording TEXT, state TEXT NOT NULL, pid INTEGER,
  reason TEXT, request TEXT, approvers TEXT, recording_sha256 TEXT, first_seq INTEGER, last_seq INTEGER,
  """
    + ", ".join(f"{c} TEXT" for c in CELL_COLUMNS)
    + f", {UNSAFE_COLUMN} INTEGER"
    + """);
CREATE INDEX IF NOT EXISTS sessions_last_seq ON sessions(last_seq);
CREATE INDEX IF NOT EXISTS sessions_start ON sessions(start);
CREATE INDEX IF NOT EXISTS sessions_list ON sessions(start, """
    + ", ".join((*CELL_COLUMNS, UNSAFE_COLUMN))
    + """);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, session_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_session ON events(session_id);
"""
)
ENDINGS = (Event.SESSION_END, Event.SESSION_INTERRUPTED)


def session_key(session_id: str, channel: int) -> str:
    """The id Charlotte types: the connection's id, with ``.N`` for a second channel."""
    return session_id if channel == 1 else f"{session_id}.{channel}"


class Index:
    """The index file under the state directory."""

    def __init__(self, state: Path, *, in_memory: bool = False) -> None:
        self.state = state
        self.path = state / "index.sqlite"
        self.db = sqlite3.connect(":memory:" if in_memory else self.path)
        self.db.row_factory = sqlite3.Row
        self.db.create_function("unsafe", 1, _unsafe, deterministic=True)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(sessions)")}
        if columns and UNSAFE_COLUMN not in columns:  # an index from an older gateway: derived, rebuild
            self.db.executescript(
                "DROP TABLE IF EXISTS sessions; DROP TABLE IF EXISTS events; DELETE FROM meta;"
            )
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def _position(self) -> tuple[str, int, int]:
        row = self.db.execute("SELECT v FROM meta WHERE k = 'position'").fetchone()
        if row is None:
            return "", 0, 0
        data = json.loads(row[0])
        return data["file"], data["offset"], data["seq"]

    def catch_up(self) -> int:
        """Index every record written since the last call; return how many."""
        name, offset, seq = self._position()
        files = store.log_files(self.state / "audit")
        names = [f.name for f in files]
        if name and name not in names:
            self._reset()
            name, offset, seq = "", 0, 0
        count = 0
        with self.db:
            for path in files:
                if name and path.name < name:
                    continue
                start = offset if path.name == name else 0
                for end, record in _records(path, start):
                    self._add(record)
                    count += 1
                    name, offset, seq = path.name, end, record.get("seq", seq)
            position = json.dumps({"file": name, "offset": offset, "seq": seq})
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('position', ?)", (position,))
        return count

    def _reset(self) -> None:
        with self.db:
            for table in ("meta", "sessions", "events"):
                self.db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    def add_records(self, records: Iterator[Record]) -> None:
        """Index *records* (a collector's copy of a host's chain, say) in one transaction."""
        with self.db:
            for record in records:
                self._add(record)

    def _add(self, record: Record) -> None:
        session_id = record.get("session_id")
        if not session_id:
            return
        self.db.execute(
            "INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
            (record.get("seq"), session_id, json.dumps(record)),
        )
        event, channel = record.get("event"), int(record.get("channel") or 1)
        key = session_key(session_id, channel)
        if event == Event.SESSION_START:
            allow = self._allow(session_id, channel)
            self.db.execute(
                "INSERT OR REPLACE INTO sessions (id, session_id, channel, start, principal, action, target,"
                " container, recording, state, pid, reason, request, approvers, first_seq, last_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                (key, session_id, channel, record.get("ts"), record.get("principal"), record.get("action"),
                 record.get("target"), record.get("container"), record.get("recording"), record.get("pid"),
                 *allow, record.get("seq"), record.get("seq")),
            )  # fmt: skip
            self.db.execute(_SET_CELLS, (key,))
        elif event in ENDINGS:
            self.db.execute(
                "UPDATE sessions SET end = ?, duration = ?, exit_status = ?, signal = ?, bytes_in = ?,"
                " bytes_out = ?, state = ?, recording_sha256 = ?, last_seq = ? WHERE id = ?",
                (record.get("ts"), record.get("duration"), record.get("exit_status"), record.get("signal"),
                 record.get("bytes_in"), record.get("bytes_out"),
                 "ended" if event == Event.SESSION_END else "interrupted", record.get("recording_sha256"),
                 record.get("seq"), key),
            )  # fmt: skip
            self.db.execute(_SET_CELLS, (key,))

    def _allow(self, session_id: str, channel: int) -> tuple[str | None, str | None, str | None]:
        """The reason, request (or moderation) and approvers (or moderators) of this session's allow."""
        rows = self.db.execute(
            "SELECT record FROM events WHERE session_id = ? ORDER BY seq DESC LIMIT 8", (session_id,)
        )
        for (text,) in rows:
            allow = as_record(json.loads(text))
            if (
                allow is not None
                and allow.get("event") == Event.REQUEST_ALLOW
                and int(allow.get("channel") or 1) == channel
            ):
                people = allow.get("approvers") or allow.get("moderators")
                return (
                    allow.get("reason"),
                    allow.get("request") or allow.get("moderation"),
                    ",".join(people) if isinstance(people, list) else None,
                )
        return None, None, None

    def open_sessions(self) -> list[sqlite3.Row]:
        """Sessions with a start and no end."""
        return list(self.db.execute("SELECT * FROM sessions WHERE state = 'open'"))

    def events(self, session_id: str) -> list[dict[str, Any]]:
        """Every record of a connection, in chain order."""
        rows = self.db.execute("SELECT record FROM events WHERE session_id = ? ORDER BY seq", (session_id,))
        return [json.loads(r[0]) for r in rows]


def _unsafe(text: str | None) -> int:
    return int(text is not None and ("\n" in text or UNSAFE_LINE.search(text) is not None))


def _records(path: Path, offset: int) -> Iterator[tuple[int, Record]]:
    with path.open("rb") as f:
        f.seek(offset)
        position = offset
        for raw in f:
            if not raw.endswith(b"\n"):
                return  # a torn or half-written line: index it next time, once complete
            position += len(raw)
            with contextlib.suppress(ValueError):
                record = as_record(json.loads(raw))
                if record is not None:
                    yield position, record
