"""The benchmark, in one command: `python -m bench.run [--smoke] [--out DIR]`.

The gateway and a stock Debian sshd run side by side on loopback, driven by
the same clients with the same work; each figure is reported as a ratio
measured in this same run: results.json, results.md and results.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh

from bench import bulk, compliance, confine, connect, decision, door, evidence, memory, sessions, typing
from bench.common import figure, keygen, loadavg, sshd
from bench.gateway import running_gateway

ROOT = Path(__file__).resolve().parents[1]
#: the capacity curve's loads (typists), up to where both servers break
TYPISTS = [50, 100, 200, 400, 800, 1200]
#: the load the echo and CPU rows are read at
TYPING_AT = 200


def _versions() -> dict[str, str]:
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    docker = subprocess.run(
        ["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True, check=False
    )
    return {
        "python": platform.python_version(),
        "asyncssh": asyncssh.__version__,
        "openssh": ssh,
        "docker": docker.stdout.strip(),
        "kernel": platform.release(),
        "cpus": str(len(__import__("os").sched_getaffinity(0))),
    }


def session_figures(count: int, rate_seconds: float, runs: int) -> dict[str, Any]:
    """Memory per open session and new connections per second on both servers, in alternating runs
    (echo latency and CPU per keystroke: bench.typing's open-loop typists)."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        path = keygen(base / "client")
        key = asyncssh.read_private_key(str(path))
        pub = path.with_suffix(".pub").read_text().strip()
        samples: dict[str, list[Any]] = {k: [] for k in ("gw_kb", "sshd_kb", "gw_rate", "sshd_rate")}
        with running_gateway(base / "gw", path) as gw:
            sides = {}
            for name, forced in (("sh", "sh"), ("true", "true")):
                sides[name] = f'restrict,pty,environment="HOME=/nonexistent",command="{forced}" {pub}\n'
            with (
                sshd(base / "sshd-sh", sides["sh"]) as sh_port,
                sshd(base / "sshd-true", sides["true"]) as true_port,
            ):
                pidfile = base / "sshd-sh" / "sshd.pid"
                listener = int(pidfile.read_text()) if pidfile.exists() else _listener(sh_port)
                for run in range(runs):
                    # a fresh gateway each run: a warm one reuses the memory of closed sessions
                    with running_gateway(base / f"gw-mem{run}", path) as fresh:
                        asyncio.run(sessions.hold_sessions(fresh.port, key, "noop", "", 5, lambda: {}))
                        idle = memory.tree_rss_kb(fresh.pid)

                        def gw_measure(pid: int = fresh.pid) -> dict[str, int]:
                            return {"rss_kb": memory.tree_rss_kb(pid)}  # the supervisor and its workers

                        held = asyncio.run(
                            sessions.hold_sessions(fresh.port, key, "sh", "", count, gw_measure)
                        )
                    samples["gw_kb"].append((held["rss_kb"] - idle) / count)

                    def sshd_measure(listener: int = listener) -> dict[str, int]:
                        return {
                            "rss_kb": sum(sessions._rss_kb(p) for p in sessions.sshd_session_pids(listener))
                        }

                    held = asyncio.run(sessions.hold_sessions(sh_port, key, "root", "", count, sshd_measure))
                    samples["sshd_kb"].append(held["rss_kb"] / count)
                    samples["gw_rate"].append(
                        asyncio.run(sessions.connection_rate(gw.port, key, "noop", "", rate_seconds))
                    )
                    samples["sshd_rate"].append(
                        asyncio.run(sessions.connection_rate(true_port, key, "root", "", rate_seconds))
                    )
    out: dict[str, Any] = {"sessions": count, "runs": runs}
    out["gateway_kb_per_session"] = figure(samples["gw_kb"], digits=1)
    out["sshd_kb_per_session"] = figure(samples["sshd_kb"], digits=1)
    out["memory_ratio"] = round(
        out["gateway_kb_per_session"]["median"] / out["sshd_kb_per_session"]["median"], 4
    )
    out["gateway_conn_per_s"] = figure(samples["gw_rate"], digits=1)
    out["sshd_conn_per_s"] = figure(samples["sshd_rate"], digits=1)
    out["conn_rate_ratio"] = round(out["gateway_conn_per_s"]["median"] / out["sshd_conn_per_s"]["median"], 3)
    return out


def _listener(port: int) -> int:
    out = subprocess.run(
        ["pgrep", "-f", "sshd -D -f"], capture_output=True, text=True, check=False
    ).stdout.split()
    return int(out[-1]) if out else 0


def _cell(value: dict[str, Any], unit: str) -> str:
    return f"{value['median']} {unit} ({value['min']}-{value['max']})"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(results: dict[str, Any]) -> str:
    """The README's performance table: medians with (min-max) over the runs."""
    con, blk, ses, dec, dr, com, ev, mem = (
        results[k]
        for k in ("connect", "bulk", "sessions", "decision", "door", "compliance", "evidence", "memory")
    )
    rows = [
        (
            "connect -> first byte, `free -m`",
            _cell(con["gateway_first_byte_ms"], "ms"),
            _cell(con["sshd_first_byte_ms"], "ms"),
            f"{con['ratio_first_byte']}x",
            "<= 0.15x",
            _mark(con["ratio_first_byte"] <= 0.15),
        ),
        (
            "connect -> ssh exits",
            _cell(con["gateway_exit_ms"], "ms"),
            _cell(con["sshd_exit_ms"], "ms"),
            f"{con['ratio_exit']}x",
            "-",
            "-",
        ),
        (
            "connect with audit shipping on (vs off)",
            _cell(con["gateway_shipping_first_byte_ms"], "ms"),
            _cell(con["gateway_first_byte_ms"], "ms") + " (off)",
            f"{con['shipping_overhead']:+.1%}",
            "within 5%",
            _mark(con["shipping_overhead"] <= 0.05),
        ),
        (
            "memory per open `sh` session (RSS of every gateway process)",
            _cell(ses["gateway_kb_per_session"], "kB"),
            _cell(ses["sshd_kb_per_session"], "kB"),
            f"{ses['memory_ratio']}x",
            "<= 0.02x",
            _mark(ses["memory_ratio"] <= 0.02),
        ),
        (
            f"memory per open `debug` session, {mem['sessions']} sessions (PSS of every gateway process,"
            " spawners included; sshd: its per-session processes)",
            _cell(mem["gateway_Pss_kb_per_session"], "kB"),
            _cell(mem["sshd_Pss_kb_per_session"], "kB"),
            f"{mem['ratio_Pss']}x (RSS: {mem['ratio_Rss']}x)",
            "<= 0.01x",
            _mark(mem["ratio_Pss"] <= 0.01),
        ),
        (
            "backup",
            _cell(blk["backup_gateway_MBps"], "MB/s"),
            _cell(blk["backup_sshd_docker_cp_MBps"], "MB/s") + " (`docker cp`)",
            f"{blk['backup_vs_docker_cp']}x",
            ">= 0.9x",
            _mark(blk["backup_vs_docker_cp"] >= 0.9),
        ),
        (
            "backup: the archive endpoint alone (the limit)",
            _cell(blk["backup_archive_endpoint_MBps"], "MB/s"),
            "-",
            f"{blk['backup_vs_archive_endpoint']}x of it",
            "-",
            "-",
        ),
        (
            "shell `cat` throughput (recorded)",
            _cell(blk["cat_gateway_MBps"], "MB/s"),
            _cell(blk["cat_sshd_MBps"], "MB/s"),
            f"{blk['cat_ratio']}x",
            ">= 0.9x",
            _mark(blk["cat_ratio"] >= 0.9),
        ),
        (
            "new connections per second",
            _cell(ses["gateway_conn_per_s"], "/s"),
            _cell(ses["sshd_conn_per_s"], "/s"),
            f"{ses['conn_rate_ratio']}x",
            "-",
            "-",
        ),
        (
            "decision, 10,000 grants, p99",
            _cell(dec["p99_us"], "us"),
            "-",
            "-",
            "<= 50 us",
            _mark(dec["p99_us"]["median"] <= 50),
        ),
    ]
    for work, what in (
        ("host", "`memory`"),
        ("container", "`debug web1 hostname`"),
        ("pty", "first PTY prompt"),
    ):
        added = dr[f"added_daemon_{work}_ms"]
        limit = 25 if work == "pty" else 40
        rows.append(
            (
                f"door adds: {what} (daemon; console script; in-process)",
                f"+{added} ms; +{dr[f'added_daemon_console_script_{work}_ms']} ms; +{dr[f'added_in_process_{work}_ms']} ms",
                _cell(dr[f"direct_{work}"], "ms").replace("median_ms", ""),
                "-",
                f"<= {limit} ms",
                _mark(added <= limit),
            )
        )
    cf = results["confine"]
    rows.append(
        (
            "shell confinement adds: `debug C true` (vs `privileged`)",
            f"{cf['added_ms']:+} ms",
            _cell(cf["confined_ms"], "ms") + " vs " + _cell(cf["privileged_ms"], "ms"),
            "-",
            "<= +2 ms",
            _mark(cf["added_ms"] <= 2),
        )
    )
    rows += [
        (
            f"`sessions list`, {com['sessions']:,} sessions",
            _cell(com["list_s"], "s"),
            "-",
            "-",
            "<= 0.3 s",
            _mark(com["list_s"]["median"] <= 0.3),
        ),
        (
            f"`sessions replay`, {com['recording_mb']} MB, peak RSS",
            _cell(com["replay_peak_rss_mb"], "MB"),
            "-",
            "-",
            "<= 50 MB",
            _mark(com["replay_peak_rss_mb"]["median"] <= 50),
        ),
        (
            "audit shipping to rsyslog",
            _cell(ev["shipping"]["records_per_s"], "records/s"),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            f"`sessions grep`, a rare pattern over {ev['grep']['megabytes']} MB of recordings (warm cache)",
            _cell(ev["grep"]["MBps"], "MB/s"),
            "`grep -c` "
            + _cell(ev["grep"]["grep_MBps"], "MB/s")
            + (f", `rg -c` {_cell(ev['grep']['rg_MBps'], 'MB/s')}" if "rg_MBps" in ev["grep"] else ""),
            f"{ev['grep']['MBps']['median'] / ev['grep']['grep_MBps']['median']:.2f}x of grep",
            ">= 300 MB/s",
            _mark(ev["grep"]["MBps"]["median"] >= 300),
        ),
    ]
    rows += typing_rows(results["typing"])
    head = "| figure | gateway | sshd (or reference) | ratio | target | |\n| --- | --- | --- | --- | --- | --- |\n"
    return head + "".join(f"| {' | '.join(str(c) for c in r)} |\n" for r in rows)


def _at(result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The typing curve's point nearest TYPING_AT typists (JSON turns the keys into strings)."""
    points = {int(k): v for k, v in result["points"].items()}
    n = min(points, key=lambda k: abs(k - TYPING_AT))
    return n, points[n]


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    return round(a["median"] / b["median"], 2) if a and b and b["median"] else None


def typing_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Echo latency, CPU per keystroke and capacity, from bench.typing's open-loop curve in this run."""
    n, at = _at(result)
    gw, ref, dr = at["gateway"], at["sshd"], at["door"]
    p50 = gw["p50_ms"]["median"] - ref["p50_ms"]["median"] if gw["p50_ms"] and ref["p50_ms"] else None
    p99, cpu = (
        _ratio(gw["p99_ms"], ref["p99_ms"]),
        _ratio(gw["server_cpu_per_echo_ms"], ref["server_cpu_per_echo_ms"]),
    )
    largest = {side: typing.largest(result, side) for side in ("gateway", "sshd", "door")}
    loads = ", ".join(f"{k:,}" for k in sorted(int(k) for k in result["points"]))
    return [
        (f"echo p50, {n} open-loop typists", typing.cell(gw, "p50_ms") + " ms", typing.cell(ref, "p50_ms") + " ms",
         "-" if p50 is None else f"{p50:+.2f} ms", "<= sshd + 2 ms", _mark(p50 is not None and p50 <= 2)),
        (f"echo p99, {n} open-loop typists", typing.cell(gw, "p99_ms") + " ms", typing.cell(ref, "p99_ms") + " ms",
         f"{p99}x", "<= 2x", _mark(p99 is not None and p99 <= 2)),
        (f"CPU per echoed keystroke, {n} typists, recording on", typing.cell(gw, "server_cpu_per_echo_ms") + " ms",
         typing.cell(ref, "server_cpu_per_echo_ms") + " ms", f"{cpu}x", "<= 1.0x", _mark(cpu is not None and cpu <= 1)),
        (f"capacity: the largest load with echo p99 under {typing.CAPACITY_P99_MS:g} ms (of {loads} typists)",
         f"{largest['gateway'] or 'none'} typists", f"{largest['sshd'] or 'none'} typists", "-",
         ">= sshd's", _mark((largest["gateway"] or 0) >= (largest["sshd"] or 0))),
        (f"typing through the OpenSSH door, {n} typists: p50 / p99; CPU per echo (capacity {largest['door'] or 'none'})",
         f"{typing.cell(dr, 'p50_ms')} / {typing.cell(dr, 'p99_ms')} ms; {typing.cell(dr, 'server_cpu_per_echo_ms')} ms",
         f"{typing.cell(ref, 'p50_ms')} / {typing.cell(ref, 'p99_ms')} ms; {typing.cell(ref, 'server_cpu_per_echo_ms')} ms",
         "-", "-", "-"),
    ]  # fmt: skip


def plot(results: dict[str, Any], path: Path) -> None:
    """Ratios against their targets, as a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    con, blk, mem = results["connect"], results["bulk"], results["memory"]
    _, at = _at(results["typing"])
    names = ["connect", "memory/session (PSS)", "backup vs docker cp", "cat", "echo p99", "CPU/echo"]
    values = [
        con["ratio_first_byte"],
        mem["ratio_Pss"],
        blk["backup_vs_docker_cp"],
        blk["cat_ratio"],
        _ratio(at["gateway"]["p99_ms"], at["sshd"]["p99_ms"]) or float("nan"),
        _ratio(at["gateway"]["server_cpu_per_echo_ms"], at["sshd"]["server_cpu_per_echo_ms"]) or float("nan"),
    ]
    targets = [0.15, 0.01, 0.9, 0.9, 2.0, 1.0]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(names, values, color="#4477aa", label="measured (median)")
    ax.scatter(names, targets, color="#cc3311", marker="_", s=600, label="target", zorder=3)
    ax.set_yscale("log")
    ax.set_ylabel("gateway / sshd (or reference)")
    ax.legend()
    plt.xticks(rotation=15, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _decisions(runs: int, decisions: int) -> dict[str, Any]:
    per_run = [decision.run(decisions=decisions) for _ in range(runs)]
    return {"grants": 10_000, "runs": runs, "p50_us": figure([r["p50_us"] for r in per_run]),
            "p99_us": figure([r["p99_us"] for r in per_run]), "target_p99_us": 50}  # fmt: skip


def main() -> None:
    """Run every figure and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: checks that the benchmark runs (CI)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    small = args.smoke
    runs = 2 if small else 15
    started = time.time()
    results: dict[str, Any] = {"machine": _versions(), "smoke": small, "runs": runs, "load_before": loadavg()}
    results["decision"] = _decisions(runs, 2000 if small else 50_000)
    results["connect"] = connect.run(runs=3 if small else 30)
    results["door"] = door.run(runs=2 if small else 30)
    results["confine"] = confine.run(runs=2 if small else 30)
    results["bulk"] = bulk.run(megabytes=10 if small else 200, runs=runs)
    results["sessions"] = session_figures(
        count=10 if small else 100, rate_seconds=1 if small else 3, runs=runs,
    )  # fmt: skip
    results["memory"] = memory.run(sessions=5 if small else 200, runs=1 if small else 3)
    results["compliance"] = compliance.run(
        sessions=2000 if small else 100_000, megabytes=5 if small else 200, runs=runs
    )
    results["evidence"] = {
        "shipping": evidence.shipping(records=500 if small else 20_000, runs=runs),
        "grep": evidence.grep_speed(megabytes=8 if small else 1024, runs=2 if small else 3),
    }
    results["typing"] = typing.curve(
        [5] if small else TYPISTS, rounds=1 if small else 3, seconds=1.0 if small else 8.0,
        clients=max(2, len(os.sched_getaffinity(0))), door=True,
    )  # fmt: skip
    results["load_after"] = loadavg()
    results["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    load = f"Load average before {results['load_before']}, after {results['load_after']}; {results['seconds']} s.\n"
    (args.out / "results.md").write_text(text + "\n" + load)
    plot(results, args.out / "results.png")
    print(text + "\n" + load)


if __name__ == "__main__":
    main()
