"""``gateway audit verify``: walk the chain and name the first bad record and its kind.

Kinds: ``edited``, ``deleted``, ``reordered``, ``inserted``, ``recording``
(a recording no longer matches the digest in its session-end record),
``missing-state`` (``chain.state`` is gone), ``missing-checkpoints`` (with
a public key, no checkpoints to check), ``truncated-tail`` (a signed
checkpoint names a seq the chain no longer has: its tail was cut) and
``truncated`` (a torn last line: a crash, not tampering).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit import chain, checkpoint, store
from gateway.events import Event, Record, as_record

TAMPERING = (
    "edited",
    "deleted",
    "reordered",
    "inserted",
    "recording",
    "missing-state",
    "missing-checkpoints",
    "truncated-tail",
)

#: what ``audit verify`` says when it checks with the K_0 still on the host
K0_ON_HOST_WEAKENS = (
    "K_0 is still on this host (audit/initial.key): this verdict shows the records agree with a key root"
    " here can read, so it cannot show that root did not rewrite them; the checkpoints (--pubkey, shipped"
    " off the host) and the collector's copy (--against) still can. Run `gateway audit export-key` to move"
    " it off."
)


@dataclass(frozen=True)
class Entry:
    """One line of one audit file."""

    file: Path
    line: int
    raw: bytes
    record: Record | None
    torn: bool = False


@dataclass
class Report:
    """What verify found: the first problem, if any."""

    records: int = 0
    files: int = 0
    last_seq: int = 0
    kind: str | None = None
    where: str = ""
    detail: str = ""
    notes: list[str] = field(default_factory=list)
    #: None when the checkpoints were not checked (no public key)
    checkpoints: int | None = None
    anchored_seq: int = 0

    @property
    def intact(self) -> bool:
        """True when nothing is wrong."""
        return self.kind is None

    @property
    def unanchored(self) -> int:
        """Records after the last checkpoint (not a failure: the next checkpoint covers them)."""
        return max(0, self.last_seq - self.anchored_seq)

    @property
    def exit_status(self) -> int:
        """0 intact, 3 a torn tail from a crash, 1 anything else."""
        if self.kind is None:
            return 0
        return 3 if self.kind == "truncated" else 1

    def as_dict(self) -> dict[str, Any]:
        """The report for ``--json``."""
        return {
            "intact": self.intact, "kind": self.kind, "where": self.where, "detail": self.detail,
            "records": self.records, "files": self.files, "last_seq": self.last_seq,
            "checkpoints": self.checkpoints, "anchored_seq": self.anchored_seq, "unanchored": self.unanchored,
            "notes": self.notes,
        }  # fmt: skip

    def summary(self) -> str:
        """What was checked, in one line."""
        text = f"{self.records} records in {self.files} files (last seq {self.last_seq})"
        if self.checkpoints is None:
            return text + "; checkpoints not checked (pass --pubkey FILE)"
        return (
            f"{text}; {self.checkpoints} checkpoints, last anchored seq {self.anchored_seq}, "
            f"{self.unanchored} records after it not yet anchored"
        )


def _entries(directory: Path) -> Iterator[Entry]:
    for path in store.log_files(directory):
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    yield Entry(path, number, raw, None, torn=True)
                    continue
                body = raw[:-1]
                try:
                    record = as_record(json.loads(body))
                except ValueError:
                    record = None
                yield Entry(path, number, body, record)


def _seq(entry: Entry) -> int | None:
    value = entry.record.get("seq") if entry.record else None
    return value if isinstance(value, int) else None


class _Walker:
    def __init__(self, directory: Path, key: bytes, wanted: set[int] | None = None) -> None:
        self.directory = directory
        self.wanted = wanted
        self.key = key
        self.expected = 1
        self.prev = chain.GENESIS
        self.report = Report(files=len(store.log_files(directory)))
        self.later: dict[int, int] = {}
        self.heads: dict[int, str] = {}
        for entry in _entries(directory):
            seq = _seq(entry)
            if seq is not None:
                self.later[seq] = self.later.get(seq, 0) + 1

    def fail(self, entry: Entry, kind: str, detail: str) -> Report:
        self.report.kind, self.report.detail = kind, detail
        self.report.where = f"{entry.file.name}:{entry.line}"
        return self.report

    def walk(self) -> Report:
        entries = list(_entries(self.directory))
        for i, entry in enumerate(entries):
            following = entries[i + 1] if i + 1 < len(entries) else None
            problem = self.step(entry, following)
            if problem is not None:
                return problem
        return self.finish()

    def step(self, entry: Entry, following: Entry | None) -> Report | None:
        if entry.torn:
            return self.torn(entry, following)
        found = self.classify(entry, following)
        if found is not None:
            return self.fail(entry, *found)
        problem = self.check_recording(entry)
        self.accept(entry)
        return problem

    def classify(self, entry: Entry, following: Entry | None) -> tuple[str, str] | None:
        """The kind of the first problem with this record, or None when it is sound."""
        seq = _seq(entry)
        if entry.record is None or seq is None:
            return "edited", "the line is not a sealed record"
        if seq != self.expected:
            if seq < self.expected:
                return "inserted", f"seq {seq} appears again after {self.expected - 1}"
            kind = "reordered" if self.later.get(self.expected) else "deleted"
            return kind, f"expected seq {self.expected}, found {seq}"
        self.later[seq] -= 1
        if entry.record.get("prev") != self.prev:
            return "deleted", f"seq {seq} does not link to the record before it"
        if not chain.mac_ok(self.key, entry.record):
            links_over = bool(following and following.record and following.record.get("prev") == self.prev)
            return ("inserted" if links_over else "edited"), f"seq {seq}: the MAC does not match"
        return None

    def torn(self, entry: Entry, following: Entry | None) -> Report | None:
        record = following.record if following is not None else None
        if (
            record
            and record.get("event") == Event.AUDIT_RECOVERED
            and record.get("torn_file") == entry.file.name
        ):
            # The torn record may have used up a seq before the crash; the recovery
            # record's own MAC (checked next) vouches for where the chain resumes.
            if record.get("seq") == self.expected + 1:
                self.key, self.expected = chain.evolve(self.key), self.expected + 1
            self.prev = str(record.get("prev"))
            self.report.notes.append(f"{entry.file.name}:{entry.line}: torn line from a crash, recovered")
            return None
        if following is None:
            return self.fail(
                entry, "truncated", f"the last line is incomplete ({len(entry.raw)} bytes): a crash"
            )
        return self.fail(entry, "edited", "an incomplete line inside the chain")

    def accept(self, entry: Entry) -> None:
        self.prev = chain.digest(entry.raw)
        if self.wanted is None or self.expected in self.wanted:
            self.heads[self.expected] = self.prev
        self.key = chain.evolve(self.key)
        self.report.records += 1
        self.report.last_seq = self.expected
        self.expected += 1

    def check_recording(self, entry: Entry) -> Report | None:
        record = entry.record or {}
        recording, expected = record.get("recording"), record.get("recording_sha256")
        if not recording or not expected:
            return None
        path = self.directory.parent / str(recording)  # relative to the state directory
        try:
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return self.fail(entry, "recording", f"{path} is missing")
        if actual != expected:
            return self.fail(entry, "recording", f"{path} no longer matches its digest")
        return None

    def finish(self) -> Report:
        try:
            state = store.read_state(self.directory)
        except (ValueError, OSError) as exc:  # damaged input is a verdict, never a traceback
            self.report.kind, self.report.where = "bad-state", "chain.state"
            self.report.detail = f"the chain state cannot be read: {exc}"
            return self.report
        if state is None:
            self.report.kind, self.report.where = "missing-state", "chain.state"
            self.report.detail = "the chain state is missing: the tail of the chain cannot be vouched for"
        elif state.seq > self.report.last_seq:
            self.report.kind, self.report.where = "deleted", "end of the chain"
            self.report.detail = (
                f"the chain state is at seq {state.seq}, the records end at {self.report.last_seq}"
            )
        return self.report


def verify(directory: Path, key: bytes, public: Ed25519PublicKey | None = None) -> Report:
    """Verify every record under *directory* with K_0, and the checkpoints with *public*."""
    walker = _Walker(directory, key, checkpoint.wanted(directory) if public is not None else None)
    report = walker.walk()
    if public is None or report.kind not in (None, "missing-state"):
        return report
    anchors = checkpoint.check(directory, public, walker.heads, report.last_seq)
    report.checkpoints, report.anchored_seq = anchors.count, anchors.last_seq
    if anchors.problem is not None:  # a cut tail outranks a missing state: it says more
        report.kind, report.where, report.detail = anchors.problem
    return report
