"""Evidence an outsider can verify: an exported bundle checks out offline, and tampering is named."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, gateway_cli

pytestmark = pytest.mark.e2e


def _sessions(gw: Gateway, web1: str, count: int) -> list[str]:
    mark = gw.mark()
    for k in range(count):
        assert gw.ssh("debug", web1, "echo", f"evidence-{k}").returncode == 0
    ends = gw.since(mark, lambda e: e["event"] == "session.end" and e.get("action") == "debug")
    return [e["session_id"] for e in ends if e["event"] == "session.end" and e.get("action") == "debug"][
        :count
    ]


def _rewrite(bundle: Path, out: Path, change: Any) -> None:
    """Copy *bundle* to *out*, passing every member through *change* (name, data) -> data or None."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            data = change(member.name, data)
            if data is None:
                continue
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))


@pytest.fixture
def evidence(own_gateway: Any, web1: str, tmp_path: Path) -> tuple[Gateway, list[str]]:
    gw = own_gateway("--checkpoint-interval", "0.5")
    ids = _sessions(gw, web1, 4)
    time.sleep(1.5)  # a checkpoint past them
    return gw, ids


def test_genuine_bundles_pass_offline_with_k0_and_with_the_public_key(evidence: Any, tmp_path: Path) -> None:
    gw, ids = evidence
    elsewhere = tmp_path / "auditor"  # a place that has never seen the gateway's state
    elsewhere.mkdir()
    shutil.copy(gw.state / "audit" / "initial.key", elsewhere / "k0")
    shutil.copy(gw.state / "audit" / "checkpoint.pub", elsewhere / "checkpoint.pub")
    for chosen in (ids[:1], ids[:3]):
        bundle = elsewhere / f"b{len(chosen)}.tar.gz"
        made = gateway_cli("sessions", "export", "--state", str(gw.state), *chosen, "--out", str(bundle))
        assert made.returncode == 0, made.stderr
        with_k0 = gateway_cli("audit", "verify", "--bundle", str(bundle), "--key", str(elsewhere / "k0"))
        assert with_k0.returncode == 0, with_k0.stdout + with_k0.stderr
        assert "bundle vouched for (K_0)" in with_k0.stdout and ", ".join(chosen) in with_k0.stdout
        assert f"{len(chosen)} recordings" in with_k0.stdout
        public = gateway_cli(
            "audit", "verify", "--bundle", str(bundle), "--pubkey", str(elsewhere / "checkpoint.pub")
        )
        assert public.returncode == 0, public.stdout + public.stderr
        assert "anchored up to seq" in public.stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(elsewhere / "checkpoint.pub"), "-outform", "DER"],
        capture_output=True, check=True,
    )  # fmt: skip
    fingerprint = "SHA256:" + hashlib.sha256(der.stdout).hexdigest()
    own = gateway_cli("audit", "verify", "--bundle", str(elsewhere / "b1.tar.gz"))  # the bundle's own key
    assert own.returncode == 0 and f"the bundle's own checkpoint public key {fingerprint}" in own.stdout, (
        own.stdout
    )


def test_tampering_is_named(evidence: Any, tmp_path: Path) -> None:
    gw, ids = evidence
    bundle = tmp_path / "b.tar.gz"
    assert (
        gateway_cli("sessions", "export", "--state", str(gw.state), *ids[:2], "--out", str(bundle)).returncode
        == 0
    )
    k0 = gw.state / "audit" / "initial.key"

    def verdict(path: Path) -> tuple[int, str]:
        done = gateway_cli("audit", "verify", "--bundle", str(path), "--key", str(k0))
        return done.returncode, done.stdout + done.stderr

    with tarfile.open(bundle) as tar:
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())  # type: ignore[union-attr]

    def recording_byte(name: str, data: bytes) -> bytes:
        return data.replace(b"evidence-0", b"evidence-X") if name.startswith("recordings/") else data

    def with_manifest(edit: Any) -> Any:
        def change(name: str, data: bytes) -> bytes | None:
            if name == "MANIFEST.json":
                return json.dumps(edit(json.loads(data))).encode()
            return data

        return change

    def rehash(prefix: str) -> Any:
        def edit(m: dict[str, Any]) -> dict[str, Any]:
            m["files"] = {k: v for k, v in m["files"].items() if not k.startswith(prefix)}
            return m

        return edit

    forged = tmp_path / "recording.tar.gz"
    _rewrite(bundle, forged, lambda n, d: with_manifest(rehash("recordings/"))(n, recording_byte(n, d)))
    status, said = verdict(forged)
    assert status == 1 and "does not match the digest in its session-end record" in said, said

    edited = tmp_path / "record.tar.gz"
    audit_file = next(n for n in manifest["files"] if n.startswith("audit/audit-"))

    def edit_record(name: str, data: bytes) -> bytes | None:
        if name == audit_file:
            return data.replace(b'"exit_status":0', b'"exit_status":1', 1)
        return with_manifest(rehash(audit_file))(name, data)

    _rewrite(bundle, edited, edit_record)
    status, said = verdict(edited)
    assert status == 1 and "the chain:" in said, said

    dropped = tmp_path / "dropped.tar.gz"
    gone = f"sessions/{ids[1]}.jsonl"

    def drop(name: str, data: bytes) -> bytes | None:
        return None if name == gone else with_manifest(rehash(gone))(name, data)

    _rewrite(bundle, dropped, drop)
    status, said = verdict(dropped)
    assert status == 1 and ids[1] in said and "missing" in said, said


def test_a_session_taken_out_of_the_bundle_is_named(evidence: Any, tmp_path: Path) -> None:
    """Every trace of one session removed, manifest rewritten: the export's own record still names it."""
    gw, ids = evidence
    bundle = tmp_path / "b.tar.gz"
    made = gateway_cli("sessions", "export", "--state", str(gw.state), *ids[:3], "--out", str(bundle))
    assert made.returncode == 0, made.stderr
    with tarfile.open(bundle) as tar:
        events = [json.loads(x) for x in tar.extractfile(f"sessions/{ids[1]}.jsonl").read().splitlines()]  # type: ignore[union-attr]
    theirs = {f"sessions/{ids[1]}.jsonl"} | {str(e["recording"]) for e in events if e.get("recording")}

    def take_out(name: str, data: bytes) -> bytes | None:
        if name in theirs:
            return None
        if name == "MANIFEST.json":
            manifest = json.loads(data)
            manifest["sessions"].remove(ids[1])
            manifest["files"] = {k: v for k, v in manifest["files"].items() if k not in theirs}
            return json.dumps(manifest).encode()
        return data

    smaller = tmp_path / "smaller.tar.gz"
    _rewrite(bundle, smaller, take_out)
    for how in (
        ("--key", str(gw.state / "audit" / "initial.key")),
        ("--pubkey", str(gw.state / "audit" / "checkpoint.pub")),
    ):
        done = gateway_cli("audit", "verify", "--bundle", str(smaller), *how)
        said = done.stdout + done.stderr
        assert done.returncode == 1 and ids[1] in said and "named by the export's record" in said, said


def test_the_export_is_itself_in_the_chain(evidence: Any, tmp_path: Path) -> None:
    gw, ids = evidence
    mark = gw.mark()
    bundle = tmp_path / "b.tar.gz"
    assert (
        gateway_cli("sessions", "export", "--state", str(gw.state), ids[0], "--out", str(bundle)).returncode
        == 0
    )
    exported = gw.since(mark, lambda e: e["event"] == "sessions.export")
    assert [e["sessions"] for e in exported if e["event"] == "sessions.export"] == [[ids[0]]]
    assert exported[-1]["by"] == "host"


def test_the_html_evidence_file_is_a_bundle(evidence: Any, tmp_path: Path) -> None:
    """The HTML Charlotte hands over verifies as it is, over SSH and from the CLI; an edited copy does not."""
    gw, ids = evidence
    public = str(gw.state / "audit" / "checkpoint.pub")
    page = tmp_path / "evidence.html"
    made = gateway_cli("sessions", "export", "--state", str(gw.state), *ids[:2], "--html", str(page))
    assert made.returncode == 0, made.stderr
    assert "audit verify --bundle" in page.read_text()
    done = gateway_cli("audit", "verify", "--bundle", str(page), "--pubkey", public)
    assert done.returncode == 0 and ", ".join(ids[:2]) in done.stdout, done.stdout + done.stderr
    over_ssh = subprocess.run(
        gw.ssh_argv("audit", "sessions", "export", "--html", ids[2], key="charlotte"),
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert over_ssh.returncode == 0, over_ssh.stderr
    fetched = tmp_path / "fetched.html"
    fetched.write_bytes(over_ssh.stdout)
    done = gateway_cli("audit", "verify", "--bundle", str(fetched), "--pubkey", public)
    assert done.returncode == 0 and ids[2] in done.stdout, done.stdout + done.stderr
    text = fetched.read_text()
    start = text.index('id="gateway-bundle">') + len('id="gateway-bundle">')
    carried = base64.b64decode(text[start : text.index("</script>", start)])
    changed = tmp_path / "changed.tar.gz"
    (tmp_path / "carried.tar.gz").write_bytes(carried)
    _rewrite(
        tmp_path / "carried.tar.gz",
        changed,
        lambda n, d: d.replace(b"evidence-2", b"evidence-X") if n.startswith("recordings/") else d,
    )
    edited = tmp_path / "edited.html"
    edited.write_text(
        text[:start]
        + base64.b64encode(changed.read_bytes()).decode()
        + text[text.index("</script>", start) :]
    )
    done = gateway_cli("audit", "verify", "--bundle", str(edited), "--pubkey", public)
    assert done.returncode == 1 and "does not match its digest" in done.stdout + done.stderr
    shown = tmp_path / "shown.html"  # what the player plays, changed; the carried bundle untouched
    assert text.count("evidence-2") >= 1
    shown.write_text(text.replace("evidence-2", "evidence-X", 1))
    done = gateway_cli("audit", "verify", "--bundle", str(shown), "--pubkey", public)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"session {ids[2]}" in done.stdout + done.stderr and "differs" in done.stdout + done.stderr
    handler = tmp_path / "handler.html"  # a script of its own could play anything
    handler.write_text(text.replace("<body>", '<body onload="document.body.innerHTML=1">', 1))
    done = gateway_cli("audit", "verify", "--bundle", str(handler), "--pubkey", public)
    assert done.returncode == 1 and "event handler" in done.stdout + done.stderr
    junk = tmp_path / "junk.html"
    junk.write_text("<!DOCTYPE html><p>no bundle here</p>")
    done = gateway_cli("audit", "verify", "--bundle", str(junk), "--pubkey", public)
    assert done.returncode == 2 and "carries" in done.stdout + done.stderr


def test_serve_warns_at_start_while_k0_is_on_the_host(own_gateway: Any) -> None:
    gw = own_gateway()
    assert gw.proc.stdout is not None
    seen: list[str] = []

    def read() -> None:  # a thread: the pipe's text buffer may already hold the line, so no select
        for _ in range(20):
            seen.append(gw.proc.stdout.readline())
            if "initial key still on this host" in seen[-1] or not seen[-1]:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert any("initial key still on this host" in x and "export-key" in x for x in seen), seen
