"""The audit log: canonical JSON lines, linked by seq and prev, failing closed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gateway.audit import AuditLog
from gateway.audit.log import GENESIS
from gateway.errors import AuditUnavailable


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_are_linked_and_continue_after_restart(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.emit("a", x=1)
    log.emit("b", durable=True, y=None)
    log.close()
    again = AuditLog(tmp_path)
    again.emit("c")
    again.close()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["a", "b", "c"]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == GENESIS
    for before, after in zip(lines, records[1:], strict=False):
        assert after["prev"] == hashlib.sha256(before.encode()).hexdigest()
    assert "y" not in records[1]
    assert oct((tmp_path / "audit.jsonl").stat().st_mode & 0o777) == "0o600"


def test_unwritable_log_raises(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.emit("ok")
    log.close()
    (tmp_path / "audit.jsonl").unlink()
    (tmp_path / "audit.jsonl").mkdir()  # a directory where the file should be
    with pytest.raises(AuditUnavailable):
        log.emit("fails")
    log.close()
