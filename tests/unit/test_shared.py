"""The shared table: what one forked process counts, another sees; a full table fails closed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.shared import ZERO, SharedTable, TableFull


def _add(values: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return values[0] + 1, 0.0, 0.0, 0.0


def _never(_key: str, _values: object) -> bool:
    return False


def test_forked_processes_share_counts_under_the_lock(tmp_path: Path) -> None:
    table = SharedTable(slots=64)
    table.lock_at(tmp_path / "lock")
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            for _ in range(250):
                table.update("sessions", _add, _never)
            os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    assert table.get("sessions")[0] == 1000


def test_zeroed_records_are_reused_and_a_full_table_fails_closed(tmp_path: Path) -> None:
    table = SharedTable(slots=8)
    for k in range(8):
        table.update(f"k{k}", _add, _never)
    with pytest.raises(TableFull):
        table.update("one-more", _add, _never)
    table.update("k3", lambda _v: ZERO, _never)  # released: its record is free again
    table.update("one-more", _add, _never)
    assert table.get("one-more")[0] == 1 and table.get("k3") == ZERO
    table.update("another", _add, lambda key, _v: key == "k5")  # the sweep makes room
    assert table.get("another")[0] == 1 and table.get("k5") == ZERO
