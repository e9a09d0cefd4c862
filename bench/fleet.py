"""The cost of a fleet: connect, an approval round trip, and `sessions list` over 100,000 sessions,
each for a gateway in a fleet (a private PostgreSQL 15 on loopback) against a single-host gateway.

Every figure is a median of alternating rounds with its spread; the ssh client's own CPU per run is
reported beside each (the load generator must not be the bottleneck).

    python -m bench.fleet [--smoke]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import psycopg

from bench.common import SSH_OPTS, alternate, figure, keygen, save
from bench.compliance import _write_log
from bench.connect import first_byte_and_exit
from bench.gateway import running_gateway
from tests.postgres import private_postgres

POLICY = """\
version: 1
actions:
  memory: {type: host, command: [free, -m]}
  brief: {type: host, command: [echo, ran]}
  approve: {type: approve}
  audit: {type: audit}
grants:
  - principals: [bench]
    actions: [memory, audit]
  - principals: [bench]
    actions: [brief]
    approval: [{from: [alice], count: 1}]
    approval_window: 1
  - principals: [alice]
    actions: [approve]
"""
REQUEST = re.compile(rb"request (R-[0-9A-F]{6}); waiting")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _with_cpu(measure: Callable[[], float], cpu: list[float]) -> Callable[[], float]:
    def run() -> float:
        before = _children_cpu()
        value = measure()
        cpu.append(_children_cpu() - before)
        return value

    return run


def _listed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=True, timeout=120)
    assert done.stdout.count(b"\n") > 100, done.stdout[:200]
    return time.perf_counter() - start


def _fleet_rows(dsn: str, sessions: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO fleet_sessions (host, id, principal, action, target, container, start, duration,"
            " exit_status, bytes_in, bytes_out, state, first_seq, last_seq)"
            " SELECT 'host-' || (g %% 3), lpad(to_hex(g), 16, '0'), 'p' || (g %% 50), 'debug', 'web' || (g %% 20),"
            " 'abcdef0123456789', to_char(timestamp '2026-11-01' + g * interval '10 second',"
            " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 1.5, 0, 10, 100, 'ended', g, g"
            " FROM generate_series(1, %s) AS g",
            (sessions,),
        )
        conn.execute("ANALYZE fleet_sessions")


def run(runs: int = 15, sessions: int = 100_000, approvals: int = 9) -> dict[str, Any]:
    """Single host against a fleet member, alternating."""
    with tempfile.TemporaryDirectory() as tmp, private_postgres() as pg:
        base = Path(tmp)
        key, alice = keygen(base / "bench"), keygen(base / "alice")
        dsn = pg.fresh_database("fleet")
        subprocess.run([sys.executable, "-m", "gateway", "fleet", "migrate", "--fleet", dsn], check=True,
                       capture_output=True, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
        hosts = []
        for name in ("a", "b"):
            state = base / name / "state"
            state.mkdir(parents=True)
            host_key = asyncssh.generate_private_key("ssh-ed25519")
            (state / "ssh_host_ed25519_key").write_bytes(host_key.export_private_key())
            (state / "ssh_host_ed25519_key").chmod(0o600)
            hosts.append({"name": name, "key": host_key.export_public_key().decode().strip()})
        single_state = base / "single" / "state"
        _write_log(single_state, sessions, "recordings/none.cast")  # the same 100,000 sessions, on one host
        _fleet_rows(dsn, sessions)
        ssh = ["ssh", *SSH_OPTS, "-i", str(key)]

        def prepared(name: str) -> Path:
            policies = base / name / "policies"
            policies.mkdir(parents=True, exist_ok=True)
            (policies / "fleet.yaml").write_text(json.dumps({"version": 1, "fleet": {"hosts": hosts}}))
            (base / name / "keys").mkdir(exist_ok=True)
            (base / name / "keys" / "alice.pub").write_text(alice.with_suffix(".pub").read_text())
            return base / name

        def fleet(name: str) -> tuple[str, ...]:
            return ("--fleet", dsn, "--host-name", name)

        with (
            running_gateway(prepared("single"), key, policy=POLICY) as single,
            running_gateway(prepared("a"), key, policy=POLICY, extra=fleet("a")) as a,
            running_gateway(prepared("b"), key, policy=POLICY, extra=fleet("b")) as b,
        ):
            argv = {name: [*ssh, "-p", str(gw.port), "memory@127.0.0.1"] for name, gw in
                    (("single", single), ("fleet", a))}  # fmt: skip
            for each in argv.values():
                first_byte_and_exit(each)
            cpu: dict[str, list[float]] = {k: [] for k in ("connect_single", "connect_fleet")}
            connect = alternate(
                {
                    name: _with_cpu(lambda n=name: first_byte_and_exit(argv[n])[1], cpu[f"connect_{name}"])
                    for name in argv
                },
                runs,
            )
            approver = ["ssh", *SSH_OPTS, "-i", str(alice)]
            rounds = alternate(
                {
                    "single": lambda: _approval_round_two(ssh, approver, single.port, single.port),
                    "fleet": lambda: _approval_round_two(ssh, approver, a.port, b.port),
                },
                approvals,
            )
            listing = {name: [*ssh, "-p", str(gw.port), "audit@127.0.0.1", "sessions", "list"] for name, gw in
                       (("single", single), ("fleet", a))}  # fmt: skip
            for each in listing.values():
                _listed(each)  # the single host builds its index once here
            lists = alternate({name: lambda n=name: _listed(listing[n]) for name in listing}, runs)
    out: dict[str, Any] = {"runs": runs, "sessions": sessions}
    for name in ("single", "fleet"):
        out[f"connect_{name}_ms"] = figure(connect[name], 1000)
        out[f"connect_{name}_client_cpu_ms"] = figure(cpu[f"connect_{name}"], 1000)
        out[f"approval_{name}_ms"] = figure(rounds[name], 1000)
        out[f"list_{name}_s"] = figure(lists[name], digits=3)
    return out


def _approval_round_two(
    requester_ssh: list[str], approver_ssh: list[str], requester: int, approver: int
) -> float:
    """Seconds from the approver's `ssh approve R-ID` (alice's key) to the requester's output."""
    proc = subprocess.Popen([*requester_ssh, "-p", str(requester), "brief@127.0.0.1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    found = REQUEST.search(proc.stderr.readline())
    assert found, "no request filed"
    start = time.perf_counter()
    argv = [*approver_ssh, "-p", str(approver), "approve@127.0.0.1", found.group(1).decode()]
    subprocess.run(argv, capture_output=True, check=True, timeout=30)
    assert proc.stdout.readline() == b"ran\n"
    took = time.perf_counter() - start
    proc.wait(timeout=10)
    time.sleep(1.05)  # past the approval window: the next round files a new request
    return took


def markdown(out: dict[str, Any]) -> str:
    """The README's rows."""

    def cell(f: dict[str, float], unit: str) -> str:
        return f"{f['median']} {unit} ({f['min']}-{f['max']})"

    rows = [
        ("connect -> ssh exits, `free -m`", "connect_{}_ms", "ms"),
        ("an approval round trip (approve -> the command's output)", "approval_{}_ms", "ms"),
        (f"`sessions list` over SSH, {out['sessions']:,} sessions", "list_{}_s", "s"),
    ]
    lines = ["| figure | single host | fleet member | ratio |", "|---|---|---|---|"]
    for label, key, unit in rows:
        one, many = out[key.format("single")], out[key.format("fleet")]
        lines.append(
            f"| {label} | {cell(one, unit)} | {cell(many, unit)} | {many['median'] / one['median']:.2f}x |"
        )
    cpu = out["connect_fleet_client_cpu_ms"]["median"]
    lines.append(
        f"\nssh client CPU per connect: {cpu} ms (single host: {out['connect_single_client_cpu_ms']['median']} ms)"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run and print (and write bench/results/fleet.json and .md)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    out = run(runs=2, sessions=2000, approvals=2) if args.smoke else run()
    results = Path(__file__).resolve().parent / "results"
    if args.smoke:
        print(markdown(out))
    else:
        save(results, "fleet", out, markdown(out))


if __name__ == "__main__":
    main()
