"""Audit shipping against Debian's real rsyslog, started here on loopback with its own config.

The collector config is the shipped deploy/rsyslog/gateway-collector.conf with only
its ports and paths substituted; the TLS certificates come from a test CA made
here with openssl.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import chain, store
from gateway.audit.store import ChainState
from tests.e2e.conftest import ROOT, Gateway, gateway_cli, start_gateway, stop_gateway, stop_running

pytestmark = pytest.mark.e2e

SHIPPED_CONFIG = ROOT / "deploy" / "rsyslog" / "gateway-collector.conf"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _make_pki(pki: Path) -> None:
    pki.mkdir()

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=gateway test CA")  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "collector.key", "-out", "collector.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (pki / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "collector.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "collector.pem", "-days", "2", "-extfile", "ext")  # fmt: skip


class Collector:
    """A private rsyslogd that can be stopped and started again."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.out = base / "collected"
        self.tcp, self.tls = _free_port(), _free_port()
        _make_pki(base / "pki")
        (base / "work").mkdir()
        config = SHIPPED_CONFIG.read_text()
        config = config.replace("/var/log/gateway", str(self.out)).replace(
            "/etc/gateway-collector", str(base / "pki")
        )
        config = config.replace('port="6601"', f'port="{self.tcp}"').replace(
            'port="6602"', f'port="{self.tls}"'
        )
        (base / "rsyslog.conf").write_text(f'global(workDirectory="{base}/work")\n' + config)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        checked = subprocess.run(
            ["rsyslogd", "-N1", "-f", str(self.base / "rsyslog.conf")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
        with (self.base / "rsyslogd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                ["rsyslogd", "-n", "-f", str(self.base / "rsyslog.conf"), "-i", str(self.base / "rsyslogd.pid")],
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.tcp)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("rsyslogd did not listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def lines(self, host: str) -> list[bytes]:
        path = self.out / host / "audit.jsonl"
        return path.read_bytes().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """rsyslogd on two loopback ports (TCP and TLS)."""
    made = Collector(tmp_path_factory.mktemp("rsyslog"))
    made.start()
    yield made
    made.stop()


@pytest.fixture
def shipping(gateway: Gateway, collector: Collector, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start gateways that ship to the collector; stopped (status 0) at the end."""
    started: list[Gateway] = []

    def launch(
        host: str, *, tls: bool = False, state: Path | None = None, extra: tuple[str, ...] = ()
    ) -> Gateway:
        url = f"tls://127.0.0.1:{collector.tls}" if tls else f"tcp://127.0.0.1:{collector.tcp}"
        options = ("--audit-syslog", url, "--host-name", host, "--checkpoint-interval", "1", *extra)
        if tls:
            options += ("--audit-syslog-ca", str(collector.base / "pki" / "ca.pem"))
        gw = start_gateway(
            state or tmp_path / host, gateway.policies, gateway.keydir, gateway.keys, extra=options
        )
        started.append(gw)
        return gw

    yield launch
    stop_running(started)


def _wait_shipped(gw: Gateway, collector: Collector, host: str, seconds: float = 20) -> list[bytes]:
    """Until the collector holds every record of the host's chain (duplicates allowed)."""
    deadline = time.monotonic() + seconds
    while True:
        state = store.read_state(gw.state / "audit")
        held = {json.loads(x)["seq"] for x in collector.lines(host)}
        if state is not None and state.seq and set(range(1, state.seq + 1)) <= held:
            return collector.lines(host)
        if time.monotonic() > deadline:
            raise AssertionError(f"{host}: collector holds {len(held)} of {state.seq if state else 0}")
        time.sleep(0.1)


def _verify_collected(
    collector: Collector, *hosts_and_states: tuple[str, Path]
) -> subprocess.CompletedProcess[str]:
    keys, pubs = collector.base / "keys", collector.base / "pubs"
    keys.mkdir(exist_ok=True)
    pubs.mkdir(exist_ok=True)
    for host, state in hosts_and_states:
        shutil.copy(state / "audit" / "initial.key", keys / f"{host}.key")
        shutil.copy(state / "audit" / "checkpoint.pub", pubs / f"{host}.pub")
    return gateway_cli(
        "audit", "verify", "--collected", str(collector.out), "--key", str(keys), "--pubkey", str(pubs)
    )


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_records_arrive_byte_for_byte(shipping: Any, collector: Collector, tls: bool) -> None:
    host = f"gw-{'tls' if tls else 'tcp'}"
    gw: Gateway = shipping(host, tls=tls)
    assert gw.ssh("memory", key="dan").returncode == 0
    lines = _wait_shipped(gw, collector, host)
    ours = b"".join(p.read_bytes() for p in store.log_files(gw.state / "audit")).splitlines()
    assert set(ours) <= set(lines)  # each record exactly as written on the host
    assert stop_gateway(gw) == 0
    _wait_shipped(gw, collector, host)
    verified = _verify_collected(collector, (host, gw.state))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{host}: intact" in verified.stdout and "MACs checked" in verified.stdout


def test_a_collector_outage_loses_nothing(shipping: Any, collector: Collector) -> None:
    gw: Gateway = shipping("gw-outage")
    assert gw.ssh("memory", key="dan").returncode == 0
    _wait_shipped(gw, collector, "gw-outage")
    collector.stop()
    try:
        for _ in range(20):
            assert gw.ssh("memory", key="dan").returncode == 0  # sessions never wait for the collector
        status = gateway_cli("audit", "status", "--state", str(gw.state), "--json")
        assert json.loads(status.stdout.splitlines()[0])["backlog"] > 0
    finally:
        collector.start()
    _wait_shipped(gw, collector, "gw-outage", seconds=30)
    assert stop_gateway(gw) == 0
    _wait_shipped(gw, collector, "gw-outage")
    verified = _verify_collected(collector, ("gw-outage", gw.state))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_gateway_killed_while_shipping_resumes_without_a_gap(
    shipping: Any, collector: Collector, tmp_path: Path
) -> None:
    state = tmp_path / "killed-state"
    gw: Gateway = shipping("gw-killed", state=state)
    for _ in range(5):
        assert gw.ssh("memory", key="dan").returncode == 0
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.communicate()
    again: Gateway = shipping("gw-killed", state=state)
    for _ in range(5):
        assert again.ssh("memory", key="dan").returncode == 0
    assert stop_gateway(again) == 0
    _wait_shipped(again, collector, "gw-killed")
    verified = _verify_collected(collector, ("gw-killed", state))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "gaps: none" in verified.stdout


def test_a_fleet_of_three(shipping: Any, collector: Collector) -> None:
    fleet = {f"fleet-{n}": shipping(f"fleet-{n}") for n in ("a", "b", "c")}
    for gw in fleet.values():
        assert gw.ssh("memory", key="dan").returncode == 0
    for host, gw in fleet.items():
        assert stop_gateway(gw) == 0
        _wait_shipped(gw, collector, host)
    verified = _verify_collected(collector, *((h, g.state) for h, g in fleet.items()))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for host in fleet:
        assert f"{host}: intact" in verified.stdout
    listed = gateway_cli(
        "sessions", "list", "--collected", str(collector.out), "--action", "memory", "--json"
    )
    hosts = {json.loads(line)["host"] for line in listed.stdout.splitlines()}
    assert set(fleet) <= hosts
    table = gateway_cli("sessions", "list", "--collected", str(collector.out))
    assert table.stdout.startswith("host")


def test_a_cut_tail_on_the_host_is_caught_against_the_collector(shipping: Any, collector: Collector) -> None:
    gw: Gateway = shipping("gw-cut")
    for _ in range(3):
        assert gw.ssh("memory", key="dan").returncode == 0
    assert stop_gateway(gw) == 0
    _wait_shipped(gw, collector, "gw-cut")
    audit = gw.state / "audit"
    path = store.log_files(audit)[-1]
    lines = path.read_bytes().splitlines(keepends=True)[:-4]  # root deletes the tail...
    path.write_bytes(b"".join(lines))
    k0 = bytes.fromhex((audit / "initial.key").read_text().strip())
    seq = json.loads(lines[-1])["seq"]
    head = chain.digest(lines[-1].rstrip(b"\n"))  # ...and fixes up the state to match
    store.write_state(
        audit, ChainState(seq, head, chain.evolve(k0, seq).hex(), path.name, path.stat().st_size)
    )
    (audit / "checkpoints.jsonl").unlink()  # and the local checkpoints
    collected = collector.out / "gw-cut" / "audit.jsonl"
    result = gateway_cli("audit", "verify", "--state", str(gw.state), "--against", str(collected))
    assert result.returncode == 1
    held = max(json.loads(x)["seq"] for x in collected.read_bytes().splitlines())
    assert (
        f"truncated-tail on the host: the collector holds up to seq {held}, the host ends at seq {seq}"
        in result.stderr
    )
