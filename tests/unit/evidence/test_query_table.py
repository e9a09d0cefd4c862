"""`sessions list`'s table made by SQLite: the same text as escaping each cell, and safe when it is not."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.evidence import query
from gateway.evidence.index import CELL_COLUMNS, Index


def _index(tmp_path: Path, principals: list[str], minutes: list[int] | None = None) -> Index:
    (tmp_path / "audit").mkdir()
    lines, seq = [], 0
    for k, principal in enumerate(principals):
        for event, extra in (
            ("session.start", {}),
            ("session.end", {"exit_status": k % 3, "duration": 1.25}),
        ):
            seq += 1
            record = {"event": event, "seq": seq, "session_id": f"{k:016x}", "channel": 1, "principal": principal,
                      "ts": _ts(minutes[k] if minutes else k), "action": "memory", **extra}  # fmt: skip
            lines.append(json.dumps(record))
    (tmp_path / "audit" / "audit-2026-12-05-000.jsonl").write_text("\n".join(lines) + "\n")
    index = Index(tmp_path)
    index.catch_up()
    return index


def _ts(minute: int) -> str:
    return f"2026-12-05T{10 + minute // 60:02d}:{minute % 60:02d}:00.000000Z"


def _escaped(index: Index, more: list[tuple[str, ...]] | None = None) -> str:
    cells = index.db.execute(f"SELECT {', '.join(CELL_COLUMNS)} FROM sessions ORDER BY start").fetchall()  # noqa: S608
    return query.render([query.COLUMNS, *cells, *(more or [])])


def test_the_fast_table_is_the_escaped_one(tmp_path: Path) -> None:
    index = _index(tmp_path, ["betty", "dan", "a-much-longer-principal", "é-accent"])
    waiting = [
        ("ab" * 8, "2026-12-05 11:00:00", "-", "dan", "debug", "web1", "-", "waiting R-ABCDEF", "0/0", "x")
    ]
    try:
        assert query.list_table(index, query.Filters()) == _escaped(index)
        assert query.list_table(index, query.Filters(), waiting) == _escaped(index, waiting)
        only = query.list_table(index, query.Filters(principal="dan"))
        assert len(only.splitlines()) == 2 and " dan " in only.splitlines()[1]
    finally:
        index.close()


def test_a_cell_with_a_control_character_or_a_line_break_is_escaped(tmp_path: Path) -> None:
    index = _index(tmp_path, ["betty", "eve\x1b[2J", "mallory\nforged 1 2 3", "\u202eyttab"])
    try:
        table = query.list_table(index, query.Filters())
    finally:
        index.close()
    assert "\x1b" not in table and "\u202e" not in table and "\\x1b[2J" in table and "\\u202e" in table
    assert len(table.splitlines()) == 5 and "mallory\\x0aforged" in table


def test_the_table_is_in_start_order_whatever_the_log_order(tmp_path: Path) -> None:
    """SQLite joins the lines in one string (group_concat over the ordered rows): the order must hold."""
    minutes = [(k * 7919) % 600 for k in range(600)]  # every minute once, in a scrambled order
    index = _index(tmp_path, [f"p{k % 13}" for k in range(600)], minutes)
    try:
        table = query.list_table(index, query.Filters())
        assert table == _escaped(index)
        starts = [line.split("  ")[1] for line in table.splitlines()[1:]]
        assert starts == sorted(starts) and len(starts) == 600
    finally:
        index.close()


def test_no_session_and_a_filter_that_leaves_out_the_unsafe_row(tmp_path: Path) -> None:
    index = _index(tmp_path, ["betty", "eve\x1b[2J"])
    try:
        assert query.list_table(index, query.Filters(principal="nobody")) == "  ".join(query.COLUMNS) + "\n"
        only = query.list_table(index, query.Filters(principal="betty"))
        assert only.splitlines()[1].split()[4] == "betty" and "\\x1b" not in only
    finally:
        index.close()
