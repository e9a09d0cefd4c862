"""The collector's side: verify each host's chain from the files a syslog collector wrote.

Layout (what ``deploy/rsyslog/gateway-collector.conf`` writes)::

    COLLECTED/HOST/audit.jsonl        every record shipped by HOST, as sent (MSG byte for byte)
    COLLECTED/HOST/checkpoints.jsonl  its signed checkpoints

Any other layout per host works too: one mixed stream (a SIEM export), or
several files in any order (rotated, split by day). Every regular file in
``COLLECTED/HOST`` is read, and each line is told apart by its content: a
signed checkpoint has ``sig`` and ``head``, a record has ``mac``. A syslog
header kept in front of the JSON is skipped.

Shipping is at least once, so exact duplicates are accepted; two different
records with one seq are tampering. Records missing at the collector are
*gaps*, reported apart from tampering. With K_0 every MAC is checked (the
key evolves per seq, so a gap is skipped over); without it, the links.
``against`` compares a host's own chain with the collector's copy: records
the collector holds that are gone from the host mean the host's tail was cut.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit import chain, store
from gateway.events import Event

AUDIT, CHECKPOINTS = "audit.jsonl", "checkpoints.jsonl"


@dataclass
class HostReport:
    """What verify found for one host."""

    host: str
    records: int = 0
    last_seq: int = 0
    duplicates: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    checkpoints: int | None = None
    #: the highest seq a valid checkpoint vouches for (with a public key)
    anchored_seq: int = 0
    macs_checked: bool = False
    kind: str | None = None
    detail: str = ""

    @property
    def intact(self) -> bool:
        """No tampering (gaps are reported apart)."""
        return self.kind is None

    def summary(self) -> str:
        """One line for the host."""
        gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in self.gaps) or "none"
        state = "intact" if self.intact else f"{self.kind}: {self.detail}"
        anchors = "" if self.checkpoints is None else f", {self.checkpoints} checkpoints"
        macs = "MACs checked" if self.macs_checked else "links checked (no K_0)"
        return (
            f"{self.host}: {state}; {self.records} records, last seq {self.last_seq}, "
            f"{self.duplicates} duplicates, gaps: {gaps}{anchors}; {macs}"
        )


def files(directory: Path) -> list[Path]:
    """Every regular file a host's directory holds (hidden files aside), in name order."""
    try:
        found = [p for p in directory.iterdir() if not p.name.startswith(".") and p.is_file()]
    except OSError:
        return []
    return sorted(found)


def hosts(collected: Path) -> list[Path]:
    """Every host directory the collector holds (one with at least one file)."""
    return sorted(p for p in collected.iterdir() if p.is_dir() and files(p))


def is_checkpoint(record: dict[str, Any]) -> bool:
    """A signed checkpoint (``seq``, ``head``, ``sig``), not a chain record (which has a ``mac``)."""
    return "sig" in record and "head" in record and "mac" not in record


def _json_part(line: bytes) -> bytes:
    """The JSON of a line, past any syslog header a SIEM export kept in front of it."""
    start = line.find(b"{")
    return line[start:] if start > 0 else line


def _lines(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as f:
            yield from f


def unique_lines(
    paths: list[Path], checkpoints: list[bytes] | None = None
) -> tuple[dict[int, bytes], int, list[str]]:
    """seq -> line, the number of exact duplicates, and problems (a second, different record for a seq).

    Checkpoints (told apart by content) go to *checkpoints* (when given) instead of being records.
    """
    by_seq: dict[int, bytes] = {}
    duplicates, problems = 0, []
    for raw in _lines(paths):
        line = _json_part(raw.rstrip(b"\n").rstrip(b"\r"))
        if not line:
            continue
        try:
            record = json.loads(line)
            seq = record["seq"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"a line that is not a sealed record: {line[:60]!r}")
            continue
        if isinstance(record, dict) and is_checkpoint(record):
            if checkpoints is not None:
                checkpoints.append(line)
            continue
        if not isinstance(seq, int):
            problems.append(f"a record without a seq: {line[:60]!r}")
        elif seq in by_seq and by_seq[seq] != line:
            problems.append(f"two different records with seq {seq}")
        elif seq in by_seq:
            duplicates += 1
        else:
            by_seq[seq] = line
    return by_seq, duplicates, problems


def _recovered_after_torn(line: bytes, previous: bytes | None) -> bool:
    """A host that crashed mid-write tore a line (never shipped) and resumed with audit.recovered."""
    record = json.loads(line)
    return (
        record.get("event") == Event.AUDIT_RECOVERED
        and previous is not None
        and (record.get("prev") == chain.digest(previous))
    )


def verify_host(directory: Path, key: bytes | None, public: Ed25519PublicKey | None) -> HostReport:
    """Verify one host's collected chain (and checkpoints, with *public*)."""
    report = HostReport(directory.name, macs_checked=key is not None)
    mixed: list[bytes] = []
    by_seq, report.duplicates, problems = unique_lines(files(directory), mixed)
    if problems:
        report.kind, report.detail = "edited", problems[0]
        return report
    report.records = len(by_seq)
    report.last_seq = max(by_seq, default=0)
    previous: bytes | None = None
    expected, key_seq = 1, 1  # the key for seq s is K_0 evolved s - 1 times
    for seq in sorted(by_seq):
        line = by_seq[seq]
        if seq != expected and not (seq == expected + 1 and _recovered_after_torn(line, previous)):
            report.gaps.append((expected, seq - 1))
            previous = None
        record = json.loads(line)
        if previous is not None and record.get("prev") != chain.digest(previous):
            report.kind, report.detail = "edited", f"seq {seq} does not link to the record before it"
            return report
        if key is not None:
            key, key_seq = chain.evolve(key, seq - key_seq), seq
            if not chain.mac_ok(key, record):
                report.kind, report.detail = "edited", f"seq {seq}: the MAC does not match"
                return report
        previous, expected = line, seq + 1
    if public is not None:
        _check_anchors(public, by_seq, report, mixed)
    return report


def _check_anchors(
    public: Ed25519PublicKey,
    by_seq: dict[int, bytes],
    report: HostReport,
    mixed: list[bytes],
) -> None:
    report.checkpoints = 0
    seen: set[bytes] = set()
    for raw in mixed:
        if raw in seen:
            continue  # at least once: the same checkpoint twice
        seen.add(raw)
        record: dict[str, Any] = json.loads(raw)
        body = {k: record.get(k) for k in ("seq", "head", "ts")}
        try:
            public.verify(base64.b64decode(record["sig"]), chain.canonical_json(body).encode())
        except (InvalidSignature, ValueError, KeyError, TypeError):
            report.kind, report.detail = "edited", "a checkpoint with a bad signature"
            return
        seq = body["seq"]
        if isinstance(seq, int) and seq in by_seq and chain.digest(by_seq[seq]) != body["head"]:
            report.kind, report.detail = "edited", f"the record at seq {seq} does not match its signed head"
            return
        if isinstance(seq, int) and seq > report.last_seq:
            report.gaps.append((report.last_seq + 1, seq))  # signed, but the records never arrived
        elif isinstance(seq, int):
            report.anchored_seq = max(report.anchored_seq, seq)
        report.checkpoints += 1


@dataclass(frozen=True)
class Against:
    """The host's chain compared with the collector's copy of it."""

    ok: bool
    message: str


def against(audit: Path, collected_file: Path) -> Against:
    """Fail when the collector holds records that are gone from the host, or that differ."""
    theirs, _, problems = unique_lines([collected_file])
    if problems:
        return Against(False, f"the collector's copy is damaged: {problems[0]}")
    ours: dict[int, bytes] = {}
    for path in store.log_files(audit):
        for raw in path.read_bytes().splitlines(keepends=True):
            if raw.endswith(b"\n"):
                record = json.loads(raw)
                if isinstance(record.get("seq"), int):
                    ours[record["seq"]] = raw.rstrip(b"\n")
    host_end, collector_end = max(ours, default=0), max(theirs, default=0)
    if collector_end > host_end:
        return Against(
            False,
            f"truncated-tail on the host: the collector holds up to seq {collector_end}, "
            f"the host ends at seq {host_end}",
        )
    for seq, line in theirs.items():
        if ours.get(seq) != line:
            return Against(False, f"edited on the host: seq {seq} differs from the collector's copy")
    return Against(True, f"the host's chain matches the collector's copy (up to seq {collector_end})")
