"""verify names the first bad record and its kind; a torn tail is a crash, not tampering."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gateway.audit import AuditLog
from gateway.audit.store import log_files
from gateway.audit.verify import verify
from gateway.events import Event


def _make(tmp_path: Path, count: int = 8) -> tuple[Path, bytes]:
    directory = tmp_path / "audit"
    log = AuditLog(directory)
    for i in range(count):
        log.emit(Event.SIDEKICK_REAPED, count=i, durable=i % 3 == 0)
    log.close()
    return directory, bytes.fromhex((directory / "initial.key").read_text().strip())


def _lines(directory: Path) -> tuple[Path, list[str]]:
    path = log_files(directory)[0]
    return path, path.read_text().splitlines(keepends=True)


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


def test_intact(tmp_path: Path) -> None:
    directory, key = _make(tmp_path)
    report = verify(directory, key)
    assert report.intact
    assert (report.records, report.last_seq) == (8, 8)


def test_wrong_key_is_not_intact(tmp_path: Path) -> None:
    directory, _ = _make(tmp_path)
    assert verify(directory, b"\0" * 32).kind == "edited"


def test_edited(tmp_path: Path) -> None:
    directory, key = _make(tmp_path)
    path, lines = _lines(directory)
    lines[3] = lines[3].replace('"count":3', '"count":33')
    _write(path, lines)
    report = verify(directory, key)
    assert (report.kind, report.where) == ("edited", f"{path.name}:4")


def test_deleted(tmp_path: Path) -> None:
    directory, key = _make(tmp_path)
    path, lines = _lines(directory)
    del lines[4]
    _write(path, lines)
    report = verify(directory, key)
    assert (report.kind, report.where) == ("deleted", f"{path.name}:5")


def test_deleted_at_the_end(tmp_path: Path) -> None:
    directory, key = _make(tmp_path)
    path, lines = _lines(directory)
    _write(path, lines[:-2])
    assert verify(directory, key).kind == "deleted"


def test_reordered(tmp_path: Path) -> None:
    directory, key = _make(tmp_path)
    path, lines = _lines(directory)
    lines[4], lines[5] = lines[5], lines[4]
    _write(path, lines)
    report = verify(directory, key)
    assert (report.kind, report.where) == ("reordered", f"{path.name}:5")


@pytest.mark.parametrize("renumber", [False, True])
def test_inserted(tmp_path: Path, renumber: bool) -> None:
    directory, key = _make(tmp_path)
    path, lines = _lines(directory)
    forged = json.loads(lines[3])
    forged["count"] = 999
    forged["seq"] = 4
    forged["prev"] = hashlib.sha256(lines[2].rstrip("\n").encode()).hexdigest()
    rest = lines[3:]
    if renumber:
        rest = [json.dumps({**json.loads(r), "seq": json.loads(r)["seq"] + 1}) + "\n" for r in rest]
    _write(path, [*lines[:3], json.dumps(forged) + "\n", *rest])
    report = verify(directory, key)
    assert (report.kind, report.where) == ("inserted", f"{path.name}:4")


def test_truncated_tail_is_a_crash(tmp_path: Path) -> None:
    directory, key = _make(tmp_path)
    path, lines = _lines(directory)
    _write(path, [*lines[:-1], lines[-1][:20]])
    report = verify(directory, key)
    assert report.kind == "truncated"


def test_chain_continues_after_a_torn_tail(tmp_path: Path) -> None:
    directory, key = _make(tmp_path)
    path, lines = _lines(directory)
    _write(path, [*lines[:-1], lines[-1][:20]])
    log = AuditLog(directory)
    log.emit(Event.SIDEKICK_REAPED, count=1)
    log.close()
    report = verify(directory, key)
    assert report.intact, report
    assert report.notes
    records = [
        json.loads(line)
        for f in log_files(directory)
        for line in f.read_text().splitlines()
        if line.endswith("}")
    ]
    assert [r["event"] for r in records[-2:]] == ["audit.recovered", "sidekick.reaped"]


def test_recording_digest(tmp_path: Path) -> None:
    state = tmp_path
    (state / "recordings").mkdir()
    cast = state / "recordings" / "x.cast"
    cast.write_text("original\n")
    log = AuditLog(state / "audit")
    log.emit(
        "session.end",
        recording="recordings/x.cast",
        recording_sha256=hashlib.sha256(b"original\n").hexdigest(),
    )
    log.close()
    key = bytes.fromhex((state / "audit" / "initial.key").read_text().strip())
    assert verify(state / "audit", key).intact
    cast.write_text("altered\n")
    assert verify(state / "audit", key).kind == "recording"


def test_signed_checkpoints_catch_a_cut_chain(tmp_path: Path) -> None:
    from gateway.audit import checkpoint  # noqa: PLC0415

    directory, key = _make(tmp_path)
    signer = checkpoint.signing_key(directory)
    assert checkpoint.write_checkpoint(directory, signer) is not None
    assert checkpoint.write_checkpoint(directory, signer) is None  # nothing new to sign
    public = checkpoint.load_public(directory / "checkpoint.pub")
    assert verify(directory, key, public).intact
    path, lines = _lines(directory)
    _write(path, lines[:-3])
    (directory / "chain.state").unlink()  # the attacker also removes the local state
    report = verify(directory, key, public)
    assert report.kind == "truncated-tail"
    assert report.exit_status == 1
    assert "checkpoint names seq" in report.detail


@pytest.mark.parametrize("damage", [b'{"seq": 3, "mac": "ab"}', b"{not json", b'{"seq": "x"}'])
def test_a_damaged_state_is_a_verdict_not_a_traceback(tmp_path: Path, damage: bytes) -> None:
    directory, key = _make(tmp_path)
    (directory / "chain.state").write_bytes(damage)
    report = verify(directory, key)
    assert report.kind == "bad-state"
    assert "chain state cannot be read" in report.detail
