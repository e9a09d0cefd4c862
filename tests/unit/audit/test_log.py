"""The audit log: sealed canonical JSON lines, linked, MACed, failing closed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.audit import AuditLog, chain
from gateway.audit.store import log_files, read_state
from gateway.errors import AuditUnavailable
from gateway.events import Event


def _lines(directory: Path) -> list[str]:
    return [line for f in log_files(directory) for line in f.read_text().splitlines()]


def test_records_are_sealed_and_continue_after_restart(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.emit(Event.SIDEKICK_REAPED, count=1)
    log.emit(Event.CONNECTION_CLOSE, durable=True, error=None)
    log.close()
    again = AuditLog(tmp_path)
    again.emit(Event.SERVER_STOP)
    again.close()
    lines = _lines(tmp_path)
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["sidekick.reaped", "connection.close", "server.stop"]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == chain.GENESIS
    for before, after in zip(lines, records[1:], strict=False):
        assert after["prev"] == chain.digest(before)
    assert "error" not in records[1]
    key = bytes.fromhex((tmp_path / "initial.key").read_text().strip())
    for record in records:
        assert chain.mac_ok(key, record)
        key = chain.evolve(key)
    for name in ("initial.key", "chain.state", log_files(tmp_path)[0].name):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == "0o600"


def test_the_state_holds_only_the_current_key(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    for i in range(5):
        log.emit(Event.SIDEKICK_REAPED, count=i)
    log.close()
    k0 = bytes.fromhex((tmp_path / "initial.key").read_text().strip())
    state = read_state(tmp_path)
    assert state is not None and state.key == chain.evolve(k0, 5).hex()
    raw = (tmp_path / "chain.state").read_bytes()
    for older in range(5):  # not K_0, nor any key before the current one (the old slot is wiped)
        assert chain.evolve(k0, older).hex().encode() not in raw


def test_a_torn_state_write_leaves_the_previous_state(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.emit(Event.SERVER_STOP)
    log.close()
    path = tmp_path / "chain.state"
    before = read_state(tmp_path)
    raw = bytearray(path.read_bytes())
    free = 512 if raw.startswith(b"gateway") else 0  # the slot the next write goes to
    raw[free : free + 100] = b"gateway-chain-state 1\n{half a state".ljust(100, b"\0")  # died mid-write
    path.write_bytes(bytes(raw))
    assert read_state(tmp_path) == before
    again = AuditLog(tmp_path)
    again.emit(Event.SERVER_STOP)  # and the chain goes on from it
    again.close()
    after = read_state(tmp_path)
    assert before is not None and after is not None and after.seq == before.seq + 1


def test_two_writers_share_one_chain(tmp_path: Path) -> None:
    one, two = AuditLog(tmp_path), AuditLog(tmp_path)
    for i in range(10):
        (one if i % 2 else two).emit(Event.SIDEKICK_REAPED, count=i)
    one.close()
    two.close()
    assert [json.loads(line)["seq"] for line in _lines(tmp_path)] == list(range(1, 11))


def test_unwritable_log_raises(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.emit(Event.SERVER_STOP)
    log.close()
    path = log_files(tmp_path)[0]
    path.unlink()
    path.mkdir()  # a directory where the file should be
    with pytest.raises(AuditUnavailable):
        log.emit(Event.SERVER_STOP)
    log.close()
