"""The verifier never crashes: damaged files of every kind give a verdict, never a traceback."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import AuditLog
from gateway.audit.bundle import verify_bundle
from gateway.audit.collected import verify_host
from gateway.audit.verify import verify
from gateway.events import Event

JUNK = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.sampled_from(
        [b"{}", b"[]", b'{"seq": "1"}', b'{"seq": 1, "mac": 5}', b"null", b"{" * 50, b"\xff\xfe"]
    ),
)


def _chain(directory: Path) -> bytes:
    log = AuditLog(directory)
    for k in range(4):
        log.emit(Event.SIDEKICK_REAPED, count=k)
    log.close()
    return bytes.fromhex((directory / "initial.key").read_text())


@settings(max_examples=60, deadline=None)
@given(
    which=st.sampled_from(["chain.state", "audit", "checkpoints.jsonl"]), junk=JUNK, keep=st.integers(0, 400)
)
def test_damaged_files_give_a_verdict(which: str, junk: bytes, keep: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "audit"
        key = _chain(directory)
        if which == "audit":
            path = next(directory.glob("audit-*.jsonl"))
            path.write_bytes(path.read_bytes()[:keep] + junk)
        else:
            (directory / which).write_bytes(junk)
        report = verify(directory, key)
        assert report.exit_status in (0, 1, 2, 3)
        host = Path(tmp) / "host"
        host.mkdir()
        (host / "audit.jsonl").write_bytes(next(directory.glob("audit-*.jsonl")).read_bytes() + junk)
        verify_host(host, key, None)  # a verdict, whatever the bytes
        (host / "more.log").write_bytes(junk)  # several files, checkpoints told apart by content
        verify_host(host, None, Ed25519PrivateKey.generate().public_key())


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@settings(max_examples=80, deadline=None)
@given(
    which=st.sampled_from(["manifest", "audit", "checkpoints", "session", "whole", "html"]),
    junk=JUNK,
    keep=st.integers(0, 400),
    honest_digests=st.booleans(),
    export_id=st.one_of(st.none(), st.just("E1"), st.integers()),
)
def test_damaged_bundles_give_a_verdict(
    which: str, junk: bytes, keep: int, honest_digests: bool, export_id: object
) -> None:
    """Bundles (tar.gz or HTML) with damaged members, manifests of wrong types, junk: a status, no traceback."""
    key_pair = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "audit"
        key = _chain(directory)
        chain_bytes = next(directory.glob("audit-*.jsonl")).read_bytes()
        members = {
            "audit/audit-20260101-001.jsonl": chain_bytes[:keep] + junk if which == "audit" else chain_bytes,
            "audit/checkpoints.jsonl": junk if which == "checkpoints" else b"",
            "sessions/abc.jsonl": junk if which == "session" else b"{}\n",
        }
        files = {n: hashlib.sha256(d).hexdigest() if honest_digests else "0" * 64 for n, d in members.items()}
        manifest = {"export": export_id, "sessions": ["abc"], "files": files}
        members["MANIFEST.json"] = junk if which == "manifest" else json.dumps(manifest).encode()
        data = _tar(members)
        if which == "whole":
            data = data[:keep] + junk
        if which == "html":
            data = b'<script type="application/gzip" id="gateway-bundle">' + junk + b"</script>"
        bundle = Path(tmp) / "bundle"
        bundle.write_bytes(data)
        for report in (verify_bundle(bundle, key, None), verify_bundle(bundle, None, key_pair.public_key())):
            assert report.status in (0, 1, 2) and (report.ok or report.problem)


WRONG_TYPES = ["1", 1.5, True, None, [], {}, "zz"]


@settings(max_examples=80, deadline=None)
@given(field=st.sampled_from(["seq", "prev", "key", "file", "size"]), value=st.sampled_from(WRONG_TYPES))
def test_a_chain_state_with_wrong_json_types_gives_a_verdict(field: str, value: object) -> None:
    """`{"seq": "5", ...}` and the like, in both the slot form and the older single-JSON form."""
    from gateway.audit import store  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "audit"
        key = _chain(directory)
        state = store.read_state(directory)
        assert state is not None
        fields = {**state._asdict(), field: value}
        text = json.dumps(fields).encode()
        slot = store.MAGIC + text + b"\n" + hashlib.sha256(text).hexdigest().encode()
        for data in (slot.ljust(2 * store.SLOT, b"\0"), text):
            (directory / store.STATE).write_bytes(data)
            report = verify(directory, key)
            assert report.exit_status in (0, 1, 2, 3)
