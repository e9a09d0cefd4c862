"""Syslog framing, and the collector-side verification on hand-made collections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.audit import chain
from gateway.audit.collected import verify_host
from gateway.audit.syslog import Destination, frame
from gateway.errors import ConfigError
from gateway.events import Event

LINE = b'{"event":"session.start","seq":3,"ts":"2026-11-27T10:00:00.123456Z"}'


def test_frame_is_octet_counted_rfc5424_with_the_line_verbatim() -> None:
    framed = frame(LINE, msgid="session.start", ts="2026-11-27T10:00:00.123456Z", hostname="web host/7")
    length, _, message = framed.partition(b" ")
    assert int(length) == len(message)
    assert message == b"<86>1 2026-11-27T10:00:00.123456Z web_host/7 gateway - session.start - " + LINE


def test_checkpoint_timestamps_and_bad_fields() -> None:
    framed = frame(b"{}", msgid="", ts=0, hostname="")
    assert b" 1970-01-01T00:00:00Z - gateway - - - {}" in framed


@pytest.mark.parametrize("url", ["udp://h:514", "tcp://h", "tls://:1", "tcp://h:1/x", "h:1"])
def test_bad_destinations(url: str) -> None:
    with pytest.raises(ConfigError):
        Destination.parse(url)


def _chain(key: bytes, count: int) -> list[bytes]:
    lines, prev, k = [], chain.GENESIS, key
    for seq in range(1, count + 1):
        line = chain.seal({"event": "x", "ts": "t"}, seq=seq, prev=prev, key=k)
        lines.append(line.encode())
        prev, k = chain.digest(line), chain.evolve(k)
    return lines


def _collect(tmp_path: Path, lines: list[bytes]) -> Path:
    host = tmp_path / "host-a"
    host.mkdir()
    (host / "audit.jsonl").write_bytes(b"".join(x + b"\n" for x in lines))
    return host


def test_duplicates_are_accepted_and_gaps_reported_apart(tmp_path: Path) -> None:
    key = b"k" * 32
    lines = _chain(key, 6)
    report = verify_host(_collect(tmp_path, [*lines[:2], lines[1], *lines[4:]]), key, None)
    assert report.intact and report.duplicates == 1
    assert report.gaps == [(3, 4)]
    assert report.last_seq == 6


def test_two_different_records_for_one_seq_is_tampering(tmp_path: Path) -> None:
    key = b"k" * 32
    lines = _chain(key, 3)
    forged = json.loads(lines[1])
    forged["event"] = "forged"
    report = verify_host(_collect(tmp_path, [*lines, json.dumps(forged).encode()]), key, None)
    assert report.kind == "edited"


def test_a_wrong_mac_is_caught_with_k0(tmp_path: Path) -> None:
    lines = _chain(b"k" * 32, 3)
    report = verify_host(_collect(tmp_path, lines), b"x" * 32, None)
    assert report.kind == "edited" and "MAC" in report.detail


def test_a_mixed_stream_with_checkpoints_and_syslog_headers_is_intact(tmp_path: Path) -> None:
    """A SIEM export: one file per host, records and checkpoints interleaved, a header before each."""
    from gateway.audit import AuditLog, checkpoint  # noqa: PLC0415
    from gateway.audit.store import log_files  # noqa: PLC0415

    directory = tmp_path / "state" / "audit"
    log = AuditLog(directory)
    signer = checkpoint.signing_key(directory)
    for k in range(6):
        log.emit(Event.SIDEKICK_REAPED, count=k)
        if k % 2:
            checkpoint.write_checkpoint(directory, signer)
    log.close()
    records = [x for p in log_files(directory) for x in p.read_bytes().splitlines()]
    marks = (directory / "checkpoints.jsonl").read_bytes().splitlines()
    mixed = []
    for k, line in enumerate(records):
        mixed.append(b"2026-11-30T10:00:00Z web1 gateway-audit: " + line)
        if k % 2 and marks:
            mixed.append(b"2026-11-30T10:00:00Z web1 gateway-audit: " + marks.pop(0))
    host = tmp_path / "collected" / "web1"
    host.mkdir(parents=True)
    (host / "siem-export.log").write_bytes(b"\n".join(mixed) + b"\n")
    key = bytes.fromhex((directory / "initial.key").read_text())
    report = verify_host(host, key, checkpoint.load_public(directory / "checkpoint.pub"))
    assert report.intact, report.detail
    assert report.records == len(records) and report.checkpoints >= 1
    edited = (host / "siem-export.log").read_bytes().replace(b'"count":2', b'"count":9', 1)
    (host / "siem-export.log").write_bytes(edited)
    assert not verify_host(host, key, None).intact


def test_several_files_in_any_order_are_one_host(tmp_path: Path) -> None:
    """Rotated or split files, named in no useful order, checkpoints in a file of their own or mixed in."""
    from gateway.audit import AuditLog, checkpoint  # noqa: PLC0415
    from gateway.audit.store import log_files  # noqa: PLC0415

    directory = tmp_path / "state" / "audit"
    log = AuditLog(directory)
    signer = checkpoint.signing_key(directory)
    for k in range(9):
        log.emit(Event.SIDEKICK_REAPED, count=k)
        checkpoint.write_checkpoint(directory, signer)
    log.close()
    records = [x for p in log_files(directory) for x in p.read_bytes().splitlines()]
    marks = (directory / "checkpoints.jsonl").read_bytes().splitlines()
    host = tmp_path / "collected" / "web1"
    host.mkdir(parents=True)
    (host / "z-first.log").write_bytes(b"\n".join(records[:3] + marks[:2]) + b"\n")
    (host / "a-last.log").write_bytes(b"\n".join(records[6:]) + b"\n")
    (host / "m-middle.log").write_bytes(b"\n".join(records[3:6]) + b"\n")
    (host / "signed.jsonl").write_bytes(b"\n".join(marks[2:]) + b"\n")
    key = bytes.fromhex((directory / "initial.key").read_text())
    public = checkpoint.load_public(directory / "checkpoint.pub")
    report = verify_host(host, key, public)
    assert report.intact and not report.gaps, report.summary()
    assert report.records == len(records) and report.checkpoints == len(marks)
    (host / "m-middle.log").write_bytes(
        (host / "m-middle.log").read_bytes().replace(b'"count":4', b'"count":7')
    )
    assert not verify_host(host, key, public).intact
    (host / "m-middle.log").unlink()
    gapped = verify_host(host, key, public)
    assert gapped.intact and gapped.gaps  # a missing file is a gap, not tampering
