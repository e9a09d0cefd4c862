"""Charlotte's tools: the sessions CLI, the audit action, crash and fail-closed behaviour."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.e2e.conftest import ROOT, Gateway, gateway_cli, spawn, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e
ASCIINEMA = str(ROOT / ".venv/bin/asciinema")


def _session_of(gw: Gateway, mark: int, event: str = "session.end") -> dict[str, Any]:
    found = gw.since(mark, lambda e: e["event"] == event)
    return next(e for e in found if e["event"] == event)


@pytest.fixture(scope="module")
def activity(gateway: Gateway, web1: str) -> dict[str, Any]:
    """A few finished sessions: a shell argv, a host action, a refusal."""
    mark = gateway.mark()
    assert gateway.ssh("debug", web1, "echo", "compliance-marker").returncode == 0
    end = _session_of(gateway, mark)
    gateway.ssh("memory", key="dan")
    gateway.ssh("debug", "nosuch")
    return end


def test_sessions_list_table_json_and_filters(gateway: Gateway, activity: dict[str, Any], web1: str) -> None:
    listed = gateway_cli("sessions", "list", "--state", str(gateway.state), "--since", "1d")
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split()
    assert header == [
        "id",
        "start",
        "duration",
        "principal",
        "action",
        "target",
        "container",
        "exit",
        "bytes",
        "approval",
    ]
    assert activity["session_id"] in listed.stdout
    rows = [
        json.loads(line)
        for line in gateway_cli(
            "sessions", "list", "--state", str(gateway.state), "--json", "--principal", "dan"
        ).stdout.splitlines()
    ]
    assert rows and all(r["principal"] == "dan" for r in rows)
    mine = [
        json.loads(line)
        for line in gateway_cli(
            "sessions", "list", "--state", str(gateway.state), "--json", "--target", web1
        ).stdout.splitlines()
    ]
    assert any(r["session_id"] == activity["session_id"] and r["exit_status"] == 0 for r in mine)
    future = gateway_cli("sessions", "list", "--state", str(gateway.state), "--since", "2099-01-01", "--json")
    assert future.stdout == ""
    bad = gateway_cli("sessions", "list", "--state", str(gateway.state), "--since", "yesterday-ish")
    assert bad.returncode != 0
    assert "not a time" in bad.stderr


def test_sessions_show_replay_export(gateway: Gateway, activity: dict[str, Any], tmp_path: Path) -> None:
    sid = activity["session_id"]
    shown = gateway_cli("sessions", "show", sid, "--state", str(gateway.state))
    assert shown.returncode == 0
    events = [line.split()[1] for line in shown.stdout.splitlines()]
    assert events[:2] == ["connection.open", "auth.accept"]
    assert "request.allow" in events
    assert "session.end" in events
    replay = gateway_cli("sessions", "replay", sid, "--state", str(gateway.state), "--speed", "50")
    assert replay.returncode == 0
    assert "compliance-marker" in replay.stdout
    out = tmp_path / "bundle.tar.gz"
    exported = gateway_cli("sessions", "export", sid, "--out", str(out), "--state", str(gateway.state))
    assert exported.returncode == 0, exported.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())  # type: ignore[union-attr]
    assert f"sessions/{sid}.jsonl" in names
    assert activity["recording"] in names
    assert any(n.startswith("audit/audit-") for n in names)
    assert not any("key" in n or "state" in n for n in names)
    assert set(manifest["files"]) <= set(names) and manifest["sessions"] == [sid]
    assert gateway_cli("sessions", "show", "0123456789abcdef", "--state", str(gateway.state)).returncode == 1


def test_every_recording_plays_in_asciinema(gateway: Gateway, activity: dict[str, Any]) -> None:
    casts = sorted((gateway.state / "recordings").rglob("*.cast"))
    assert casts
    for cast in casts:
        played = subprocess.run([ASCIINEMA, "cat", str(cast)], capture_output=True, check=False, timeout=30)
        assert played.returncode == 0, (cast, played.stderr)


def test_echo_off_input_is_withheld(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    argv = gateway.ssh_argv("debug", web1, opts=("-tt",))
    child = spawn(argv)
    child.sendline("stty -echo; read -r secret; stty echo; echo got-${#secret}")
    time.sleep(0.5)
    child.sendline("hunter2-password")
    child.expect("got-16")
    child.sendline("echo visible-typing")
    child.expect("visible-typing")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    end = _session_of(gateway, mark)
    text = (gateway.state / end["recording"]).read_text()
    assert "hunter2" not in text
    assert "input withheld" in text
    assert "visible-typing" in text


def _audit(gw: Gateway, *words: str, key: str = "charlotte") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(gw.ssh_argv("audit", *words, key=key), capture_output=True, timeout=60, check=False)


def test_audit_action_over_ssh(gateway: Gateway, activity: dict[str, Any]) -> None:
    sid = activity["session_id"]
    listed = _audit(gateway, "sessions", "list", "--since", "1d")
    assert listed.returncode == 0, listed.stderr
    assert sid in listed.stdout.decode()
    shown = _audit(gateway, "sessions", "show", sid)
    assert b"request.allow" in shown.stdout
    verified = _audit(gateway, "verify")
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith(b"ok: ")
    bundle = _audit(gateway, "sessions", "export", sid)
    with tarfile.open(fileobj=io.BytesIO(bundle.stdout)) as tar:
        assert f"sessions/{sid}.jsonl" in tar.getnames()


@pytest.mark.parametrize(
    "words",
    [
        ("sessions", "rm", "x"),
        ("shell",),
        ("sessions", "list", "--since", "1d", "--exec", "id"),
        ("sessions", "show", "../../etc/passwd"),
        (),
    ],
)
def test_audit_action_reaches_only_the_queries(gateway: Gateway, words: tuple[str, ...]) -> None:
    result = _audit(gateway, *words)
    assert result.returncode == 1
    assert result.stdout == b""
    assert len(result.stderr.splitlines()) == 1


def test_betty_cannot_use_audit(gateway: Gateway) -> None:
    result = _audit(gateway, "sessions", "list", key="betty")
    assert result.returncode == 1
    assert result.stderr == b"gateway: audit: permission denied (ssh help@HOST lists what you may do)\n"


def test_watch_follows_a_live_session(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    argv = gateway.ssh_argv("debug", web1, opts=("-tt",))
    live = spawn(argv)
    start = _session_of(gateway, mark, "session.start")
    watch_argv = gateway.ssh_argv("audit", "sessions", "watch", start["session_id"], key="charlotte")
    watcher = spawn(watch_argv, prompt=False)
    time.sleep(0.5)
    live.sendline("echo four-eyes-$((6*7))")
    watcher.expect("four-eyes-42")
    live.sendline("exit")
    live.expect(pexpect.EOF)
    watcher.expect(pexpect.EOF)  # the watch ends with the session


@pytest.fixture
def scratch(gateway: Gateway, tmp_path: Path) -> Iterator[Path]:
    """A state directory of its own."""
    yield tmp_path / "state"


def test_kill_9_mid_session_then_restart(gateway: Gateway, web1: str, scratch: Path) -> None:
    gw = start_gateway(scratch, gateway.policies, gateway.keydir, gateway.keys)
    argv = gw.ssh_argv("debug", web1, opts=("-tt",))
    child = spawn(argv)
    child.sendline("echo before-the-crash")
    child.expect("before-the-crash")
    start = next(e for e in gw.events() if e["event"] == "session.start")
    gw.proc.kill()
    gw.proc.communicate()
    child.terminate(force=True)
    again = start_gateway(scratch, gateway.policies, gateway.keydir, gateway.keys)
    try:
        assert again.ssh("memory").returncode == 0  # the chain continues
        interrupted = [e for e in again.events() if e["event"] == "session.interrupted"]
        assert [e["session_id"] for e in interrupted] == [start["session_id"]]
        assert interrupted[0]["recording_sha256"]
    finally:
        assert stop_gateway(again) == 0
    verified = gateway_cli("audit", "verify", "--state", str(scratch))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    listed = gateway_cli("sessions", "list", "--state", str(scratch))
    assert "interrupted" in listed.stdout


def test_full_audit_disk_refuses_then_recovers(gateway: Gateway, web1: str, scratch: Path) -> None:
    audit_dir = scratch / "audit"
    audit_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(audit_dir)], check=True)
    try:
        gw = start_gateway(scratch, gateway.policies, gateway.keydir, gateway.keys)
        filler = audit_dir / "filler"
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1000"], capture_output=True, check=False
        )
        # Records still fit in the last page of the open audit file for a while (the chain
        # state is rewritten in place, needing no new space); then the disk is really full.
        for _ in range(200):
            refused = gw.ssh("debug", web1, "echo", "must-not-run")
            if refused.returncode != 0:
                break
        assert refused.returncode == 1
        assert refused.stdout == ""
        assert refused.stderr == "gateway: the audit log is unavailable; nothing was run\n"
        assert gw.proc.poll() is None  # still serving
        filler.unlink()
        back = gw.ssh("debug", web1, "echo", "runs-again")
        assert back.returncode == 0, back.stderr
        assert back.stdout == "runs-again\n"
        assert stop_gateway(gw) == 0
        verified = gateway_cli("audit", "verify", "--state", str(scratch))
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        subprocess.run(["umount", "-l", str(audit_dir)], check=False)
