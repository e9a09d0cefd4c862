"""``gateway audit verify --bundle FILE``: check an exported bundle offline, trusting nothing on the host.

The bundle (``sessions export``) is unpacked into a private directory (regular
files only, safe names, bounded sizes). Then:

1. every file the manifest names is there with its SHA-256;
2. the chain (``audit/*.jsonl``) links record to record, and with K_0 every MAC
   holds; with only the checkpoint public key, the signed checkpoints vouch for
   the records up to the last one they anchor;
3. the export's own ``sessions.export`` record (the manifest names its id) is
   in the chain, vouched for like the rest, and names exactly the sessions the
   manifest lists: a session taken out of the bundle is caught;
4. every session the manifest lists has its records in the chain, its
   ``sessions/ID.jsonl`` equals them, and each recording its session-end record
   names is in the bundle with that very digest.

The bundle is a ``.tar.gz`` or the HTML evidence file that carries one.

The verdict names what it vouches for: the sessions, the records (seq range)
and the recordings. Exit 0 vouched, 1 damaged (and what), 2 unreadable.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit import checkpoint
from gateway.audit.collected import AUDIT, CHECKPOINTS, verify_host
from gateway.audit.page import page_problem
from gateway.events import Event, Record, as_record
from gateway.evidence.export import member_name, sha256_file
from gateway.evidence.html import BUNDLE_ID
from gateway.evidence.query import QueryError

MAX_MEMBER = 8 << 30
MAX_MEMBERS = 100_000


@dataclass
class BundleReport:
    """What the bundle vouches for, or the first thing wrong with it."""

    ok: bool = False
    status: int = 2
    problem: str = ""
    sessions: list[str] = field(default_factory=list)
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    recordings: int = 0
    anchored_seq: int | None = None
    by: str = ""
    #: the recordings each session's own records vouch for (their digests checked)
    vouched: dict[str, set[str]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line."""
        if not self.ok:
            return f"bundle: {self.problem}"
        anchored = f", anchored up to seq {self.anchored_seq}" if self.anchored_seq is not None else ""
        return (
            f"bundle vouched for ({self.by}{anchored}): sessions {', '.join(self.sessions)};"
            f" records seq {self.first_seq}-{self.last_seq} ({self.records}); {self.recordings} recordings"
        )


def _fail(report: BundleReport, status: int, problem: str) -> BundleReport:
    report.ok, report.status, report.problem = False, status, problem
    return report


def _unpack(bundle: Path, into: Path) -> str | None:
    """Unpack regular files with safe names; a problem, or None."""
    try:
        with tarfile.open(bundle, mode="r:*") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_MEMBERS:
                    return "too many members"
                try:
                    member_name(member.name)
                except QueryError:
                    return f"an unsafe member name: {member.name[:80]!r}"
                if not member.isfile() or member.size > MAX_MEMBER:
                    return f"not a regular file of a sane size: {member.name[:80]!r}"
                source = tar.extractfile(member)
                if source is None:
                    return f"cannot read {member.name[:80]!r}"
                target = into / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
    except (tarfile.TarError, OSError, EOFError) as exc:
        return f"not a readable bundle: {exc}"
    return None


MAX_HTML = 2 << 30
CARRIED = re.compile(
    rb'<script type="application/gzip" id="' + BUNDLE_ID.encode() + rb'">([A-Za-z0-9+/=\s]*)</script>'
)


def _carried(bundle: Path, into: Path) -> tuple[Path, str | None]:
    """The tar.gz itself, or the one an HTML evidence file carries (written to *into*); a problem, or None."""
    try:
        with bundle.open("rb") as f:
            if f.read(2) == b"\x1f\x8b":
                return bundle, None
            if bundle.stat().st_size > MAX_HTML:
                return bundle, "not a gzip bundle, and too large for an HTML evidence file"
            f.seek(0)
            found = CARRIED.search(f.read())
        if found is None:
            return bundle, "neither a .tar.gz bundle nor an HTML evidence file that carries one"
        (into / "bundle.tar.gz").write_bytes(
            base64.b64decode(b"".join(found.group(1).split()), validate=True)
        )
    except OSError as exc:
        return bundle, f"cannot read the bundle: {exc.strerror}"
    except (binascii.Error, ValueError):
        return bundle, "the bundle the HTML file carries is not valid base64"
    return into / "bundle.tar.gz", None


def verify_bundle(bundle: Path, key: bytes | None, public: Ed25519PublicKey | None) -> BundleReport:
    """Verify *bundle* with K_0 (*key*) or the checkpoint public key (*public*, else the bundle's own)."""
    report = BundleReport()
    with tempfile.TemporaryDirectory(prefix="gateway-bundle-") as tmp:
        root = Path(tmp) / "b"
        root.mkdir()
        tarball, problem = _carried(bundle, Path(tmp))
        if problem is not None:
            return _fail(report, 2, problem)
        problem = _unpack(tarball, root)
        if problem is not None:
            return _fail(report, 2, problem)
        manifest = _manifest(root)
        if isinstance(manifest, tuple):
            return _fail(report, *manifest)
        report = _check(root, manifest, key, public, report)
        if report.ok and tarball != bundle:  # an HTML file: what it plays must be what it carries
            problem = page_problem(bundle.read_bytes(), root, report.vouched)
            if problem is not None:
                return _fail(report, 1, problem)
        return report


@dataclass
class Manifest:
    """What MANIFEST.json says the bundle holds."""

    sessions: list[str]
    export_id: object


def _manifest(root: Path) -> Manifest | tuple[int, str]:
    """The manifest, once every file it names is there with its digest; else (status, problem)."""
    try:
        manifest = json.loads((root / "MANIFEST.json").read_text())
        files: dict[str, str] = {str(k): str(v) for k, v in dict(manifest["files"]).items()}
        found = Manifest([str(s) for s in manifest["sessions"]], manifest.get("export"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 2, "no readable MANIFEST.json (an export from before self-verifying bundles?)"
    for name, digest in sorted(files.items()):
        try:
            path = root / member_name(name)
        except QueryError:
            return 1, f"the manifest names an unsafe path: {name[:80]!r}"
        if not path.is_file():
            return 1, f"{name}: listed in the manifest, missing from the bundle"
        if sha256_file(path) != digest:
            return 1, f"{name}: does not match its digest in the manifest"
    return found


def _check(
    root: Path,
    manifest: Manifest,
    key: bytes | None,
    public: Ed25519PublicKey | None,
    report: BundleReport,
) -> BundleReport:
    host = root / "host"
    host.mkdir()
    chain_files = sorted((root / "audit").glob("audit-*.jsonl"))
    (host / AUDIT).write_bytes(b"".join(p.read_bytes() for p in chain_files))
    if (root / "audit" / CHECKPOINTS).is_file():
        (host / CHECKPOINTS).write_bytes((root / "audit" / CHECKPOINTS).read_bytes())
    if key is None and public is None and (root / "audit" / "checkpoint.pub").is_file():
        public = checkpoint.load_public(root / "audit" / "checkpoint.pub")
        report.by = (
            f"the bundle's own checkpoint public key {checkpoint.fingerprint(public)}:"
            " compare it out of band with the host's (openssl pkey -pubin -in checkpoint.pub -outform DER"
            " | sha256sum)"
        )
    if key is None and public is None:
        return _fail(report, 2, "nothing to verify with: pass --key K0 or --pubkey FILE")
    chain = verify_host(host, key, public)
    if not chain.intact:
        return _fail(report, 1, f"the chain: {chain.kind}: {chain.detail}")
    gaps = [gap for gap in chain.gaps if gap[0] > 1]  # a leading gap: older files no longer kept
    if gaps:
        return _fail(
            report, 1, f"the chain: records seq {gaps[0][0]}-{gaps[0][1]} are missing from the bundle"
        )
    given = f"the checkpoint public key {checkpoint.fingerprint(public)}" if public is not None else ""
    report.by = report.by or ("K_0" if key is not None else given)
    if key is None:
        report.anchored_seq = chain.anchored_seq
    records = _typed(json.loads(x) for x in (host / AUDIT).read_bytes().splitlines() if x.strip())
    report.records, report.last_seq = chain.records, chain.last_seq
    report.first_seq = min((int(r["seq"]) for r in records), default=0)
    sessions = manifest.sessions
    problem = _export_record(records, manifest.export_id, sessions, report.anchored_seq) or next(
        filter(None, (_session(root, session, records, report) for session in sessions)), None
    )
    if problem is not None:
        return _fail(report, 1, problem)
    for session in sessions:
        connection = session.split(".")[0]
        last = max(int(r["seq"]) for r in records if r.get("session_id") == connection)
        if report.anchored_seq is not None and last > report.anchored_seq:
            why = f"session {session}: its records (up to seq {last}) are past the last checkpoint"
            return _fail(
                report, 1, f"{why} (seq {report.anchored_seq}): verify with K_0, or export again later"
            )
    report.sessions, report.ok, report.status = sessions, True, 0
    return report


def _export_record(
    records: list[Record], export_id: object, sessions: list[str], anchored: int | None
) -> str | None:
    """The chain's record of this export names exactly the bundle's sessions; a problem, or None."""
    if not isinstance(export_id, str) or not export_id:
        return "the manifest names no export record: nothing shows that no session was taken out"
    found = [r for r in records if r.get("event") == Event.SESSIONS_EXPORT and r.get("export") == export_id]
    if not found:
        return f"export {export_id}: the chain has no record of it"
    record = found[0]
    seq = int(record["seq"])
    if anchored is not None and seq > anchored:
        return (
            f"export {export_id}: its record (seq {seq}) is past the last checkpoint (seq {anchored}):"
            " verify with K_0, or export again once a checkpoint covers it"
        )
    named = record.get("sessions")
    named = [str(s) for s in named] if isinstance(named, list) else []
    for session in named:
        if session not in sessions:
            return f"session {session}: named by the export's record (seq {seq}), missing from the bundle"
    for session in sessions:
        if session not in named:
            return f"session {session}: in the bundle, but not named by the export's record (seq {seq})"
    return None


def _typed(found: Iterable[object]) -> list[Record]:
    """Parsed lines as records (anything that is not a JSON object is left out)."""
    return [record for item in found if (record := as_record(item)) is not None]


def _session(root: Path, session: str, records: list[Record], report: BundleReport) -> str | None:
    connection = session.split(".", maxsplit=1)[0]
    mine = [r for r in records if r.get("session_id") == connection]
    if not mine:
        return f"session {session}: listed, but the chain has no record of it"
    listed = root / "sessions" / f"{session}.jsonl"
    if not listed.is_file():
        return f"session {session}: its records file is missing from the bundle"
    copied = [json.loads(x) for x in listed.read_text().splitlines() if x.strip()]
    if sorted(json.dumps(r, sort_keys=True) for r in copied) != sorted(
        json.dumps(r, sort_keys=True) for r in mine
    ):
        return f"session {session}: sessions/{session}.jsonl differs from the chain's records"
    for record in mine:
        name, digest = record.get("recording"), record.get("recording_sha256")
        if record.get("event") != Event.SESSION_END or not name or not digest:
            continue
        path = root / str(name)
        if not path.is_file():
            return f"session {session}: recording {name} is missing"
        if sha256_file(path) != digest:
            return f"session {session}: recording {name} does not match the digest in its session-end record"
        report.recordings += 1
        report.vouched.setdefault(session, set()).add(str(name))
    return None
