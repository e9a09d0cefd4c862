"""Limits, faults and operations: throttles, timeouts, the drain, metrics, a killed container."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.e2e.conftest import (
    Containers,
    Gateway,
    gateway_cli,
    metrics_port,
    spawn,
    start_gateway,
    stop_running,
)

pytestmark = pytest.mark.e2e

EXTRA = """\
version: 1
actions:
  idle: {type: shell, idle_timeout: 1}
  short: {type: shell, allow_args: true, max_duration: 1}
  anyshell: {type: shell}
grants:
  - principals: [betty]
    actions: [idle, short, anyshell]
    targets: ["{prefix}-*"]
"""


@pytest.fixture
def policies(gateway: Gateway, containers: Containers, tmp_path: Path) -> Path:
    """The test policy plus actions with timeouts."""
    target = tmp_path / "policies"
    shutil.copytree(gateway.policies, target)
    for extra in target.glob("toolbox.yaml"):
        extra.unlink()
    (target / "extra.yaml").write_text(EXTRA.replace("{prefix}", containers.prefix))
    return target


@pytest.fixture
def launch(gateway: Gateway, policies: Path, tmp_path: Path) -> Iterator[Any]:
    """Start a gateway with extra serve options; stopped (status 0) and verified at the end."""
    started: list[Gateway] = []

    def _launch(*extra: str) -> Gateway:
        gw = start_gateway(
            tmp_path / f"state{len(started)}", policies, gateway.keydir, gateway.keys, extra=extra
        )
        started.append(gw)
        return gw

    yield _launch
    assert all(status == 0 for status in stop_running(started))
    for gw in started:
        verified = gateway_cli("audit", "verify", "--state", str(gw.state))
        assert verified.returncode == 0, verified.stdout + verified.stderr


def _kinds(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    return [e for e in gw.since(0, lambda e: e.get("kind") == kind) if e.get("kind") == kind]


def _shell(gw: Gateway, action: str, target: str) -> pexpect.spawn:
    return spawn(gw.ssh_argv(action, target, opts=("-tt",)))


def test_per_principal_session_limit(launch: Any, web1: str) -> None:
    gw = launch("--max-sessions-per-principal", "1")
    held = _shell(gw, "debug", web1)
    refused = gw.ssh("debug", web1, "true")
    assert (refused.returncode, refused.stderr) == (1, "gateway: too many sessions; try again later\n")
    assert gw.ssh("memory", key="dan").returncode == 0  # other principals are not affected
    held.sendline("exit")
    held.expect(pexpect.EOF)
    time.sleep(0.3)
    assert gw.ssh("debug", web1, "true").returncode == 0
    assert _kinds(gw, "session-limit")


def test_auth_failures_throttle_the_source(launch: Any) -> None:
    gw = launch("--auth-failure-limit", "3")
    for _ in range(3):
        assert gw.ssh("memory", key="mallory").returncode == 255
    blocked = gw.ssh("memory", key="dan")
    assert blocked.returncode == 255
    assert _kinds(gw, "connection-limit")[0]["reason"].startswith("too many authentication failures")


def test_unauthenticated_connection_limit(launch: Any) -> None:
    gw = launch("--max-unauthenticated", "1")
    with socket.create_connection(("127.0.0.1", gw.port)) as idle:
        idle.recv(64)  # the server's version line: this connection now holds the one slot
        time.sleep(0.3)
        assert gw.ssh("memory", key="dan").returncode == 255
    time.sleep(0.3)
    assert gw.ssh("memory", key="dan").returncode == 0


def test_idle_timeout(launch: Any, web1: str) -> None:
    gw = launch()
    child = _shell(gw, "idle", web1)
    child.expect("idle for 1s", timeout=10)
    child.expect(pexpect.EOF)
    end = next(e for e in gw.since(0, lambda e: e["event"] == "session.end") if e["event"] == "session.end")
    assert "idle" in end["error"]


def test_maximum_duration(launch: Any, web1: str) -> None:
    gw = launch()
    start = time.monotonic()
    result = gw.ssh("short", web1, "sleep", "30")
    assert time.monotonic() - start < 15
    assert result.returncode != 0
    assert "maximum duration" in result.stderr


def test_sigterm_drains_open_sessions(launch: Any, web1: str) -> None:
    gw = launch("--drain-seconds", "2")
    child = _shell(gw, "debug", web1)
    gw.proc.send_signal(signal.SIGTERM)
    child.expect("shutting down", timeout=10)
    child.expect(pexpect.EOF, timeout=15)
    gw.proc.communicate(timeout=20)
    assert gw.proc.returncode == 0
    events = [e["event"] for e in gw.events()]
    assert "server.drain" in events
    assert events.count("session.start") == events.count("session.end")
    assert events[-1] == "server.stop"


def test_metrics_and_health(launch: Any) -> None:
    gw = launch("--metrics", "127.0.0.1:0")
    port = metrics_port(gw)
    assert gw.ssh("memory", key="dan").returncode == 0
    gw.ssh("memory", key="eve")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert json.loads(response.read())["status"] == "ok"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'gateway_requests_total{action="memory",outcome="allow"}' in text
    assert 'gateway_requests_total{action="memory",outcome="deny"}' in text
    assert "dan" not in text and "eve" not in text  # no principal names in labels


def test_container_killed_mid_session(launch: Any, containers: Containers) -> None:
    victim = containers.run("victim1")
    gw = launch()
    child = _shell(gw, "anyshell", victim)
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    child.expect(pexpect.EOF, timeout=20)
    child.close()
    assert child.exitstatus != 0 or child.signalstatus is not None
    end = next(e for e in gw.since(0, lambda e: e["event"] == "session.end") if e["event"] == "session.end")
    assert end["recording_sha256"]


def test_two_workers_share_the_port_and_the_chain(launch: Any) -> None:
    gw = launch("--workers", "2")
    pids = set()
    for _ in range(30):
        assert gw.ssh("memory", key="dan").returncode == 0
        pids = {e["pid"] for e in gw.events() if e["event"] == "session.start"}
        if len(pids) == 2:
            break
    assert len(pids) == 2  # both processes accepted connections


def test_the_session_limit_holds_across_workers(launch: Any, web1: str) -> None:
    """--max-sessions 1 with two workers: while one session runs, every worker refuses the next."""
    gw = launch("--workers", "2", "--max-sessions", "1")
    held = _shell(gw, "debug", web1)
    mark = gw.mark()
    refused_by: set[int] = set()
    for _ in range(30):
        refused = gw.ssh("memory", key="dan")
        assert (refused.returncode, refused.stderr) == (1, "gateway: too many sessions; try again later\n")
        events = gw.since(mark)
        opened = {e["session_id"]: e.get("worker") for e in events if e["event"] == "connection.open"}
        refused_by = {opened[e["session_id"]] for e in events if e.get("kind") == "session-limit"}
        if refused_by == {1, 2}:
            break
    assert refused_by == {1, 2}  # both workers refused: the count is the gateway's, not a worker's
    held.sendline("exit")
    held.expect(pexpect.EOF)
    time.sleep(0.3)
    assert gw.ssh("memory", key="dan").returncode == 0  # released in the shared count too
