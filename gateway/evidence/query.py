"""Queries over the index: list and show, as rows and as text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.command import printable
from gateway.evidence.index import CELL_COLUMNS, UNSAFE_COLUMN, Index
from gateway.textsafe import visible

_SPAN = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
COLUMNS = (
    "id",
    "start",
    "duration",
    "principal",
    "action",
    "target",
    "container",
    "exit",
    "bytes",
    "approval",
)


class QueryError(ValueError):
    """A query argument that cannot be understood."""


def parse_time(text: str, now: datetime | None = None) -> str:
    """``1d``/``2h``/``30m`` ago, or an ISO date or time; returned as an ISO UTC string."""
    now = now or datetime.now(UTC)
    span = _SPAN.match(text)
    if span:
        moment = now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise QueryError(f"not a time: {text!r} (expected 1d, 2h, 30m or an ISO time)") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Filters:
    """What ``sessions list`` narrows by."""

    since: str | None = None
    until: str | None = None
    principal: str | None = None
    action: str | None = None
    target: str | None = None
    #: in a fleet's index, or a collector's copy of several hosts: one host's
    host: str | None = None


def where(filters: Filters, placeholder: str = "?") -> tuple[str, list[str]]:
    """The WHERE clause for *filters* and its parameters (``?`` for SQLite, ``%s`` for PostgreSQL);
    ``host`` only where rows have one (the fleet's index)."""
    clauses, params = [], []
    for column, op, value in (
        ("start", ">=", filters.since),
        ("start", "<=", filters.until),
        ("principal", "=", filters.principal),
        ("action", "=", filters.action),
        ("target", "=", filters.target),
        ("host", "=", filters.host),
    ):
        if value is not None:
            clauses.append(f"{column} {op} {placeholder}")
            params.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def list_sessions(index: Index, filters: Filters) -> list[dict[str, Any]]:
    """Sessions matching *filters*, oldest first."""
    clause, params = where(filters)
    rows = index.db.execute(f"SELECT * FROM sessions {clause} ORDER BY start", params)  # noqa: S608 - fixed columns
    return [dict(row) for row in rows]


def list_table(index: Index, filters: Filters, more: list[tuple[str, ...]] | None = None) -> str:
    """The ``sessions list`` table for *filters*, then *more* rows (sessions waiting for moderators).

    The cells were made when each row changed (``index.CELLS``); SQLite pads each line to the widths of
    the rows found. A line holding a control character or a bidi override takes the slow path: each
    cell escaped first.
    """
    clause, params = where(filters)
    most = ", ".join(f"max(length({c}))" for c in CELL_COLUMNS)
    found = index.db.execute(f"SELECT {most}, max({UNSAFE_COLUMN}) FROM sessions {clause}", params).fetchone()  # noqa: S608
    *longest, unsafe = found
    extra = [[visible(str(cell)) for cell in row] for row in more or []]
    widths = [max([len(name), int(most or 0), *(len(r[k]) for r in extra)])
              for k, (name, most) in enumerate(zip(COLUMNS, longest, strict=True))]  # fmt: skip
    if unsafe:
        cells = f"SELECT {', '.join(CELL_COLUMNS)} FROM sessions {clause} ORDER BY start"  # noqa: S608
        return _render([COLUMNS, *index.db.execute(cells, params).fetchall(), *(more or [])])
    padded = ", ".join(f"{w}, {c}" for w, c in zip(widths, CELL_COLUMNS, strict=True))
    line = "  ".join("%!-*s" for _ in CELL_COLUMNS)
    lines = f"SELECT rtrim(printf('{line}', {padded})) AS line FROM sessions {clause} ORDER BY start"  # noqa: S608
    # one string from SQLite, in the subquery's order (a co-routine feeds the aggregate row by row; SQLite
    # keeps a subquery's ORDER BY under an order-sensitive aggregate; tests/unit/evidence/test_query_table.py
    # checks)
    body = index.db.execute(f"SELECT group_concat(line, char(10)) FROM ({lines})", params).fetchone()[0]  # noqa: S608
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    head = fmt.format(*COLUMNS).rstrip()
    rows = [body] if body else []
    return "\n".join([head, *rows, *(fmt.format(*row).rstrip() for row in extra)]) + "\n"


def render(rows: list[Any]) -> str:
    """Rows as aligned columns."""
    return _render(rows)


def _render(rows: list[Any]) -> str:
    rows = [[visible(str(cell)) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*row).rstrip() for row in rows) + "\n"


def json_lines(rows: list[dict[str, Any]]) -> str:
    """One JSON object per session."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


SESSION_ID_RE = re.compile(r"([0-9a-f]{16})(?:\.[1-9][0-9]{0,5})?")


def checked_id(session: str) -> str:
    """The connection id of ``ID`` or ``ID.N``, matched exactly; QueryError for anything else."""
    match = SESSION_ID_RE.fullmatch(session)
    if match is None:
        raise QueryError(f"not a session id: {printable(session)!r}")
    return match.group(1)


def show(index: Index, session: str) -> list[dict[str, Any]]:
    """Every record of the connection behind *session* (``ID`` or ``ID.N``), in time order."""
    session_id = checked_id(session)
    events = index.events(session_id)
    if not events:
        raise QueryError(f"no session {session!r}")
    return events


def show_text(events: list[dict[str, Any]]) -> str:
    """One line per record: time, event, then the fields that matter."""
    skip = {"ts", "event", "mac", "prev", "session_id"}
    lines = []
    for e in events:
        fields = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(e.items()) if k not in skip)
        lines.append(f"{e['ts']}  {e['event']:<18} {fields}")
    return "\n".join(lines) + "\n"
