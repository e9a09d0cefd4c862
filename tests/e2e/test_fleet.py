"""A fleet of three gateways on one private PostgreSQL (Debian's own server, started for this module).

Each gateway has its own state directory, host key and copy of the policy;
``policies/fleet.yaml`` lists the three host keys and a per-principal limit of 2.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from gateway.fleet.down import UNAVAILABLE
from tests.e2e.conftest import Gateway, gateway_cli, metrics_port, start_gateway, stop_gateway
from tests.postgres import Postgres, private_postgres

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
groups:
  security: [alice]
  ops-leads: [frank]
actions:
  memory: {type: host, command: [echo, memory-ran]}
  brief: {type: host, command: [echo, brief-ran]}
  other: {type: host, command: [echo, other-ran]}
  hold: {type: host, command: [sleep, "60"]}
  watched: {type: host, command: [echo, watched-ran]}
  audit: {type: audit}
  approve: {type: approve}
grants:
  - principals: [betty, dan]
    actions: [memory, hold]
  - principals: [betty]
    actions: [brief, other]
    approval:
      - {from: [security], count: 1}
      - {from: [ops-leads], count: 1}
    approval_window: 1
  - principals: [dan]
    actions: [watched]
    moderated: {by: [charlotte], count: 1}
  - principals: [alice, frank]
    actions: [approve]
  - principals: [charlotte]
    actions: [audit]
"""
NAMES = ("a", "b", "c")
REQUEST = re.compile(r"request (R-[0-9A-F]{6}); waiting")
MODERATION = re.compile(r"watch (R-[0-9A-F]{6})")


ROOT = Path(__file__).resolve().parents[2]


def _grants() -> str:
    """deploy/FLEET.md's grants for one host, as shipped (its ```sql block)."""
    text = (ROOT / "deploy" / "FLEET.md").read_text()
    return text.split("```sql\n", 1)[1].split("```", 1)[0]


def password(name: str) -> str:
    """Host *name*'s database password (it must never reach a log or a record)."""
    return f"pw-{name}-{'s3cr3t' * 3}"


@dataclass
class Fleet:
    """The server, the three gateways by name, and how to start one again."""

    pg: Postgres
    dsn: str
    gateways: dict[str, Gateway]
    base: Path
    keys: dict[str, Path]
    ports: dict[str, int] = field(default_factory=dict)

    def start(self, name: str, *extra: str) -> Gateway:
        """Start (or start again) gateway *name* in the fleet, as its own database role (GATEWAY_FLEET)."""
        workers = "2" if name == "a" else "1"
        own = self.pg.dsn(user=f"gateway_host_{name}", dbname="fleet", password=password(name))
        gw = start_gateway(
            self.base / f"state-{name}", self.base / f"policies-{name}", self.base / "keys", self.keys,
            env={"GATEWAY_FLEET": own},
            extra=("--host-name", name, "--workers", workers, "--metrics", "127.0.0.1:0", *extra),
        )  # fmt: skip
        self.gateways[name] = gw
        self.ports[name] = metrics_port(gw)
        return gw

    def readyz(self, name: str) -> dict[str, Any]:
        """Gateway *name*'s /readyz."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/readyz", timeout=5) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """As the superuser, in the fleet's database."""
        return self.pg.sql(statement, *params, dbname="fleet")


def _host_key(state: Path) -> str:
    """Make the gateway's host key before it starts (fleet.yaml lists its public half)."""
    state.mkdir(parents=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    (state / "ssh_host_ed25519_key").write_bytes(key.export_private_key())
    (state / "ssh_host_ed25519_key").chmod(0o600)
    return key.export_public_key().decode().strip()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    people = dict(keys)
    (base / "keys").mkdir()
    for who in ("alice", "frank"):
        path = base / who
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f", str(path)], check=True
        )
        people[who] = path
    for who in ("betty", "dan", "charlotte", "alice", "frank"):
        shutil.copy(people[who].with_suffix(".pub"), base / "keys" / f"{who}.pub")
    hosts = [{"name": name, "key": _host_key(base / f"state-{name}")} for name in NAMES]
    fleet_yaml = json.dumps({"version": 1, "fleet": {"hosts": hosts, "max_sessions_per_principal": 2}})
    for name in NAMES:
        policies = base / f"policies-{name}"
        policies.mkdir()
        (policies / "fleet.yaml").write_text(fleet_yaml)
        (policies / "test.yaml").write_text(POLICY)
    with private_postgres() as pg:
        dsn = pg.fresh_database("fleet")
        migrated = gateway_cli("fleet", "migrate", "--fleet", dsn)
        assert migrated.returncode == 0, migrated.stderr
        for name in NAMES:  # each host its own role, with deploy/FLEET.md's grants only
            grants = _grants().replace("HOST_ROLE", f"gateway_host_{name}").replace("DATABASE_NAME", "fleet")
            for statement in filter(str.strip, grants.replace("HOST_PASSWORD", password(name)).split(";")):
                pg.sql(statement, dbname="fleet")
        found = Fleet(pg, dsn, {}, base, people)
        for name in NAMES:
            found.start(name)
        yield found
        for gw in found.gateways.values():
            if gw.proc.poll() is None:
                stop_gateway(gw)


def _waiting(gw: Gateway, action: str, key: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(gw.ssh_argv(action, key=key), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = (MODERATION if action == "watched" else REQUEST).search(line)
    assert found, line + proc.stderr.read()
    return proc, found.group(1)


def test_a_request_on_a_is_approved_on_b_and_c_and_runs_within_a_second(fleet: Fleet) -> None:
    a, b, c = (fleet.gateways[n] for n in NAMES)
    mark_a, mark_b = a.mark(), b.mark()
    proc, request = _waiting(a, "brief", "betty")
    listed_b = b.ssh("approve", key="alice")
    listed_c = c.ssh("approve", key="frank")
    for listed in (listed_b, listed_c):
        assert listed.returncode == 0, listed.stderr
        line = next(x for x in listed.stdout.splitlines() if x.startswith(request))
        assert "betty" in line and "brief" in line and "on a" in line, line
    first = b.ssh("approve", request, key="alice")
    assert first.returncode == 0 and "still needs more approvals" in first.stdout, first
    time.sleep(0.3)
    assert proc.poll() is None
    second = c.ssh("approve", request, key="frank")
    approved = time.monotonic()
    assert second.returncode == 0 and "every rule is met" in second.stdout, second
    assert proc.stdout is not None
    out = proc.stdout.readline()
    ran = time.monotonic() - approved
    assert out == "brief-ran\n"
    assert ran < 1.0, f"ran {ran:.2f}s after the second approval"
    proc.communicate(timeout=10)
    events_a = a.since(mark_a, lambda e: e["event"] == "session.end")
    counted = [e for e in events_a if e["event"] == "request.counted"]
    assert {(e["by"], e["host"]) for e in counted} == {("alice", "b"), ("frank", "c")}
    allow = next(e for e in events_a if e["event"] == "request.allow" and e.get("action") == "brief")
    assert allow["request"] == request and allow["approvers"] == ["alice", "frank"]
    approved_b = [e for e in b.since(mark_b) if e["event"] == "request.approved"]
    assert [(e["request"], e["by"]) for e in approved_b] == [(request, "alice")]


def test_a_row_written_by_hand_or_by_an_unlisted_host_does_not_count(fleet: Fleet) -> None:
    a = fleet.gateways["a"]
    mark = a.mark()
    proc, request = _waiting(a, "other", "betty")
    try:
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        at = time.time()
        text = "\n".join(["gateway-fleet-decision-v1", request, "a", "betty", "other", "", "frank", "approve", "",
                          "z", repr(at)]).encode()  # fmt: skip
        fleet.sql(
            "INSERT INTO fleet_decisions VALUES (%s, 'alice', 'approve', NULL, 'b', %s, 'abcd')", request, at
        )
        fleet.sql("INSERT INTO fleet_decisions VALUES (%s, 'frank', 'approve', NULL, 'z', %s, %s)",
                  request, at, stranger.sign(text, stranger.algorithm).hex())  # fmt: skip
        fleet.sql("UPDATE fleet_requests SET state = 'approved', decided = %s WHERE id = %s", at, request)
        fleet.sql("SELECT pg_notify('gateway_fleet', %s)", f"request:{request}")
        deadline = time.monotonic() + 5
        while len(untrusted := [e for e in a.events()[mark:] if e["event"] == "request.untrusted"]) < 2:
            assert time.monotonic() < deadline, untrusted
            time.sleep(0.1)
        assert {(e["by"], e["host"]) for e in untrusted} == {("alice", "b"), ("frank", "z")}, untrusted
        assert "not host 'b'" in untrusted[0]["problem"] or "not host 'b'" in untrusted[1]["problem"]
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting: nothing counted
        assert not [
            e for e in a.events()[mark:] if e["event"] == "request.allow" and e.get("action") == "other"
        ]
    finally:
        proc.kill()
        proc.communicate()


def _session_id(gw: Gateway, mark: int, action: str) -> str:
    events = gw.since(mark, lambda e: e["event"] == "session.end" and e.get("action") == action)
    return str(
        next(e for e in events if e["event"] == "session.end" and e.get("action") == action)["session_id"]
    )


def test_sessions_list_on_c_has_the_sessions_of_a_and_b_with_their_hosts(fleet: Fleet) -> None:
    a, b, c = (fleet.gateways[n] for n in NAMES)
    mark_a, mark_b = a.mark(), b.mark()
    assert a.ssh("memory").stdout == "memory-ran\n"
    assert b.ssh("memory", key="dan").stdout == "memory-ran\n"
    on_a, on_b = _session_id(a, mark_a, "memory"), _session_id(b, mark_b, "memory")
    deadline = time.monotonic() + 5
    while True:
        listed = c.ssh("audit", "sessions", "list", "--action", "memory", key="charlotte")
        assert listed.returncode == 0, listed.stderr
        if (on_a in listed.stdout and on_b in listed.stdout) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    rows = {line.split()[1]: line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert rows.get(on_a) == "a" and rows.get(on_b) == "b", listed.stdout
    only_b = c.ssh("audit", "sessions", "list", "--host", "b", "--json", key="charlotte")
    hosts = {json.loads(line)["host"] for line in only_b.stdout.splitlines()}
    assert hosts == {"b"}, only_b.stdout
    shown = c.ssh("audit", "sessions", "show", on_a, key="charlotte")
    assert shown.returncode == 0, shown.stderr
    assert "ran on host a" in shown.stdout and f"ssh audit@a sessions show {on_a}" in shown.stdout, (
        shown.stdout
    )
    own = a.ssh("audit", "sessions", "show", on_a, key="charlotte")
    assert "session.end" in own.stdout  # its own host shows the records themselves
    once = fleet.sql("SELECT count(*) FROM fleet_sessions WHERE id = %s", on_a)
    assert once == [(1,)]


def test_moderated_session_waiting_on_a_is_listed_on_b_with_the_command_that_joins_it(fleet: Fleet) -> None:
    a, b = fleet.gateways["a"], fleet.gateways["b"]
    proc, key = _waiting(a, "watched", "dan")
    watcher: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 5
        while True:
            listed = b.ssh("approve", key="charlotte")
            if key in listed.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        line = next(x for x in listed.stdout.splitlines() if key in x)
        assert f"join: ssh approve@a watch {key}" in line and "dan" in line, line
        watcher = subprocess.Popen(a.ssh_argv("approve", "watch", key, key="charlotte"), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, stdin=subprocess.PIPE, text=True)  # fmt: skip
        out, _ = proc.communicate(timeout=20)
        assert out == "watched-ran\n" and proc.returncode == 0
        gone = b.ssh("approve", key="charlotte")
        assert key not in gone.stdout
    finally:
        for p in (proc, watcher):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()


def _metric(fleet: Fleet, host: str, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.ports[host]}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def test_fleet_status_marks_the_host_whose_policy_differs(fleet: Fleet) -> None:
    ok = gateway_cli("fleet", "status", "--fleet", fleet.dsn)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [line.split()[0] for line in ok.stdout.splitlines()[1:]] == list(NAMES)
    assert fleet.dsn not in ok.stdout + ok.stderr
    extra = fleet.base / "policies-c" / "zz-extra.yaml"
    extra.write_text("version: 1\nactions:\n  extra: {type: host, command: [echo, x]}\n")
    try:
        deadline = time.monotonic() + 15
        while True:
            status = gateway_cli("fleet", "status", "--fleet", fleet.dsn)
            if status.returncode == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        marked = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
        assert "policy differs" in marked["c"] and "policy differs" not in marked["a"], status.stdout
        as_json = gateway_cli("fleet", "status", "--json", "--fleet", fleet.dsn)
        hosts = {h["name"]: h for h in map(json.loads, as_json.stdout.splitlines())}
        assert (
            as_json.returncode == 1
            and hosts["c"]["marks"] == ["policy differs"]
            and hosts["a"]["marks"] == []
        )
        assert (
            hosts["a"]["workers"] == 2
            and hosts["b"]["version"]
            and hosts["a"]["policy"] != hosts["c"]["policy"]
        )
        deadline = time.monotonic() + 8
        while _metric(fleet, "a", "gateway_fleet_policy_mismatch") != 1.0:
            assert time.monotonic() < deadline, "gateway_fleet_policy_mismatch is not 1 on a"
            time.sleep(0.5)
    finally:
        extra.unlink()


def test_a_per_principal_limit_holds_across_hosts_and_a_killed_host_gives_its_slots_back(
    fleet: Fleet,
) -> None:
    a, b, c = (fleet.gateways[n] for n in NAMES)
    held = [subprocess.Popen(gw.ssh_argv("hold"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True) for gw in (a, a)]  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while fleet.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0] < 2:
            assert time.monotonic() < deadline, "the two sessions did not take their slots"
            time.sleep(0.1)
        for gw in (b, c):
            third = gw.ssh("memory")
            assert (
                third.returncode == 1
                and third.stderr.strip() == "gateway: too many sessions; try again later"
            )
        assert c.ssh("memory", key="dan").returncode == 0  # another principal is not limited by betty's
        a.proc.send_signal(signal.SIGKILL)
        a.proc.communicate()
        killed = time.monotonic()
        while c.ssh("memory").returncode != 0:
            assert time.monotonic() - killed < 5, "a killed host's slots were not given back within 5 s"
            time.sleep(0.2)
    finally:
        for p in held:
            p.kill()
            p.communicate()
        fleet.start("a")


def test_with_postgresql_stopped_gated_grants_are_refused_plain_ones_run_and_the_index_catches_up(
    fleet: Fleet,
) -> None:
    a, b = fleet.gateways["a"], fleet.gateways["b"]
    marks = {"a": a.mark(), "b": b.mark()}
    fleet.pg.stop()
    try:
        stopped = time.monotonic()
        refused = a.ssh("brief")
        assert refused.returncode == 1 and refused.stderr.strip() == UNAVAILABLE, refused
        assert time.monotonic() - stopped < 5
        assert b.ssh("approve", key="alice").stderr.strip() == UNAVAILABLE
        ran = [a.ssh("memory"), b.ssh("memory", key="dan"), a.ssh("memory", key="dan")]
        assert [r.stdout for r in ran] == ["memory-ran\n"] * 3, ran
        deadline = time.monotonic() + 8
        while fleet.readyz("a").get("fleet") != "down":
            assert time.monotonic() < deadline, fleet.readyz("a")
            time.sleep(0.3)
        listed = a.ssh("audit", "sessions", "list", key="charlotte")
        assert listed.returncode == 0 and "this host's sessions only" in listed.stderr
    finally:
        fleet.pg.start()
    ids = {("a", _session_id(a, marks["a"], "memory")), ("b", _session_id(b, marks["b"], "memory"))}
    ids |= {("a", e["session_id"]) for e in a.events()[marks["a"] :] if e["event"] == "session.end"}
    deadline = time.monotonic() + 15
    while True:
        rows = fleet.sql("SELECT host, id FROM fleet_sessions")
        if ids <= set(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert ids <= set(rows), (ids, rows)
    assert len(rows) == len(set(rows))  # nothing counted twice
    while fleet.readyz("a").get("fleet") != "up":
        assert time.monotonic() < deadline + 10
        time.sleep(0.3)


def test_the_connection_string_reaches_no_log_and_no_record(fleet: Fleet) -> None:
    for name, gw in fleet.gateways.items():
        assert (gw.state / "fleet-member").read_text() == f"{name}\n"  # the host's name, never the string
        secret = password(name).encode()
        for path in [gw.state.parent / f"{gw.state.name}.stderr", *gw.state.rglob("*")]:
            if path.is_file() and path.name != "index.sqlite":
                assert secret not in path.read_bytes(), path


def test_a_schema_newer_than_the_gateway_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    dsn = fleet.pg.fresh_database("newer")
    assert gateway_cli("fleet", "migrate", "--fleet", dsn).returncode == 0
    fleet.pg.sql("INSERT INTO fleet_schema VALUES (99, now())", dbname="newer")
    migrate = gateway_cli("fleet", "migrate", "--fleet", dsn)
    assert migrate.returncode == 1 and "version 99, newer than this gateway knows" in migrate.stderr
    (tmp_path / "s").mkdir()  # host a's own key: only the schema is wrong
    shutil.copy(fleet.base / "state-a" / "ssh_host_ed25519_key", tmp_path / "s" / "ssh_host_ed25519_key")
    served = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--listen", "127.0.0.1:0", "--policies",
         str(fleet.base / "policies-a"), "--keys", str(fleet.base / "keys"), "--state", str(tmp_path / "s"),
         "--fleet", dsn, "--host-name", "a", "--workers", "1"],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert served.returncode == 2 and "newer than this gateway knows" in served.stderr, served


def test_a_host_not_in_fleet_yaml_or_with_another_key_does_not_start(fleet: Fleet, tmp_path: Path) -> None:
    def serve(host: str, state: Path) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gateway", "serve", "--listen", "127.0.0.1:0", "--policies",
                str(fleet.base / "policies-a"), "--keys", str(fleet.base / "keys"), "--state", str(state),
                "--fleet", fleet.dsn, "--host-name", host, "--workers", "2"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)

    stranger = serve("z", tmp_path / "z")
    assert stranger.returncode == 2 and "--host-name 'z' is not among the hosts" in stranger.stderr, stranger
    impostor = serve("b", tmp_path / "b")  # a fresh state: another host key than fleet.yaml lists for b
    assert impostor.returncode == 2 and "another key" in impostor.stderr, impostor
    for refused in (stranger, impostor):
        assert fleet.dsn not in refused.stdout + refused.stderr  # the connection string is never said
