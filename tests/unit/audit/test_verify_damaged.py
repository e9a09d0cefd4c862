"""The verifier never crashes: damaged files of every kind give a verdict, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import AuditLog
from gateway.audit.collected import verify_host
from gateway.audit.verify import verify

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
        log.emit("test.event", n=k)
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
