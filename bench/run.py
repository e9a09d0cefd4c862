"""The benchmark, in one command: `python -m bench.run [--smoke] [--out DIR]`.

The gateway and a stock Debian sshd run side by side on loopback, driven by
the same clients with the same work; each figure is reported as a ratio
measured in this same run: results.json, results.md and results.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh

from bench import bulk, compliance, decision, door, latency, sessions
from bench.common import keygen, sshd
from bench.gateway import running_gateway

ROOT = Path(__file__).resolve().parents[1]


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


def session_figures(count: int, echo_sessions: int, keystrokes: int, rate_seconds: float) -> dict[str, Any]:
    """Figures 2, 5 and 6 on both servers."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        path = keygen(base / "client")
        key = asyncssh.read_private_key(str(path))
        pub = path.with_suffix(".pub").read_text().strip()
        out: dict[str, Any] = {"sessions": count, "echo_sessions": echo_sessions}
        with running_gateway(base / "gw", path) as gw:
            idle = sessions._rss_kb(gw.pid)

            def gw_measure() -> dict[str, int]:
                return {"rss_kb": sessions._rss_kb(gw.pid), "pss_kb": sessions._rss_kb(gw.pid, "Pss")}

            held = asyncio.run(sessions.hold_sessions(gw.port, key, "sh", "", count, gw_measure))
            out["gateway_kb_per_session"] = round((held["rss_kb"] - idle) / count, 1)
            out["gateway_rss_kb"] = held["rss_kb"]
            out["gateway_echo"] = asyncio.run(
                sessions.echo_latency(gw.port, key, "cat", "", echo_sessions, keystrokes)
            )
            out["gateway_conn_per_s"] = asyncio.run(
                sessions.connection_rate(gw.port, key, "noop", "", rate_seconds)
            )
        for name, forced in (("sh", "sh"), ("cat", "cat"), ("true", "true")):
            line = f'restrict,pty,environment="HOME=/nonexistent",command="{forced}" {pub}\n'
            with sshd(base / f"sshd-{name}", line) as port:
                listener = (
                    int((base / f"sshd-{name}" / "sshd.pid").read_text())
                    if (base / f"sshd-{name}" / "sshd.pid").exists()
                    else 0
                )
                listener = listener or _listener(port)
                if name == "sh":

                    def sshd_measure(listener: int = listener) -> dict[str, int]:
                        pids = sessions.sshd_session_pids(listener)
                        return {
                            "rss_kb": sum(sessions._rss_kb(p) for p in pids),
                            "pss_kb": sum(sessions._rss_kb(p, "Pss") for p in pids),
                        }

                    held = asyncio.run(sessions.hold_sessions(port, key, "root", "", count, sshd_measure))
                    out["sshd_kb_per_session"] = round(held["rss_kb"] / count, 1)
                    out["sshd_pss_kb_per_session"] = round(held["pss_kb"] / count, 1)
                elif name == "cat":
                    out["sshd_echo"] = asyncio.run(
                        sessions.echo_latency(port, key, "root", "", echo_sessions, keystrokes)
                    )
                else:
                    out["sshd_conn_per_s"] = asyncio.run(
                        sessions.connection_rate(port, key, "root", "", rate_seconds)
                    )
        out["memory_ratio"] = round(out["gateway_kb_per_session"] / out["sshd_kb_per_session"], 4)
        out["conn_rate_ratio"] = round(out["gateway_conn_per_s"] / out["sshd_conn_per_s"], 3)
        return out


def _listener(port: int) -> int:
    out = subprocess.run(
        ["pgrep", "-f", "sshd -D -f"], capture_output=True, text=True, check=False
    ).stdout.split()
    return int(out[-1]) if out else 0


def markdown(results: dict[str, Any]) -> str:
    """The README's performance table."""
    lat, blk, ses, dec, dr = (results[k] for k in ("latency", "bulk", "sessions", "decision", "door"))
    rows = [
        (
            "1. connect -> first byte, `free -m` (median)",
            f"{lat['gateway_ms']} ms",
            f"{lat['sshd_ms']} ms",
            f"{lat['ratio']}x",
            "<= 0.15x",
        ),
        (
            "2. memory per open session",
            f"{ses['gateway_kb_per_session']} kB",
            f"{ses['sshd_kb_per_session']} kB",
            f"{ses['memory_ratio']}x",
            "<= 0.02x",
        ),
        (
            "3. backup throughput",
            f"{blk['backup_gateway_MBps']} MB/s",
            f"{blk['backup_sshd_MBps']} MB/s",
            f"{blk['backup_ratio']}x",
            ">= 0.9x",
        ),
        (
            "3. shell `cat` throughput (recorded)",
            f"{blk['shell_cat_gateway_MBps']} MB/s",
            f"{blk['shell_cat_sshd_MBps']} MB/s",
            f"{blk['shell_cat_ratio']}x",
            "-",
        ),
        (
            "5. echo latency p50 / p99",
            f"{ses['gateway_echo']['p50_ms']} / {ses['gateway_echo']['p99_ms']} ms",
            f"{ses['sshd_echo']['p50_ms']} / {ses['sshd_echo']['p99_ms']} ms",
            "-",
            "-",
        ),
        (
            "6. new connections per second (1 worker)",
            f"{ses['gateway_conn_per_s']}",
            f"{ses['sshd_conn_per_s']}",
            f"{ses['conn_rate_ratio']}x",
            "-",
        ),
        ("7. decision, 10,000 grants, p99", f"{dec['p99_us']} us", "-", "-", "<= 50 us"),
    ]
    for work, what in (
        ("host", "`memory`"),
        ("container", "`debug web1 hostname`"),
        ("pty", "first PTY prompt"),
    ):
        rows.append(
            (
                f"8. door adds to sshd: {what} (daemon / console script / in-process)",
                f"+{dr[f'added_daemon_{work}_ms']} / +{dr[f'added_daemon_console_script_{work}_ms']}"
                f" / +{dr[f'added_in_process_{work}_ms']} ms",
                f"{dr[f'direct_{work}']['median_ms']} ms",
                "-",
                f"<= {dr['target_added_ms']} ms",
            )
        )
    com = results["compliance"]
    rows += [
        (f"`sessions list`, {com['sessions']:,} sessions", f"{com['list_s']} s", "-", "-", "<= 1 s"),
        (
            f"`sessions replay`, {com['recording_mb']} MB recording, peak RSS",
            f"{com['replay_peak_rss_mb']} MB",
            "-",
            "-",
            "<= 50 MB",
        ),
    ]
    head = "| figure | gateway | sshd | ratio | target |\n| --- | --- | --- | --- | --- |\n"
    return head + "".join(f"| {' | '.join(r)} |\n" for r in rows)


def plot(results: dict[str, Any], path: Path) -> None:
    """Ratios against their targets, as a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = [
        "connect latency",
        "memory/session",
        "backup MB/s",
        "decision p99 / 50us",
        "door added (container) / 40ms",
    ]
    values = [
        results["latency"]["ratio"],
        results["sessions"]["memory_ratio"],
        results["bulk"]["backup_ratio"],
        results["decision"]["p99_us"] / 50,
        results["door"]["added_daemon_container_ms"] / results["door"]["target_added_ms"],
    ]
    targets = [0.15, 0.02, 0.9, 1.0, 1.0]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(names, values, color="#4477aa", label="measured")
    ax.scatter(names, targets, color="#cc3311", marker="_", s=600, label="target", zorder=3)
    ax.set_yscale("log")
    ax.set_ylabel("ratio (gateway / sshd, or / target)")
    ax.legend()
    plt.xticks(rotation=15, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run every figure and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: checks that the benchmark runs (CI)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    small = args.smoke
    started = time.time()
    results: dict[str, Any] = {"machine": _versions(), "smoke": small}
    results["decision"] = decision.run(decisions=2000 if small else 50_000)
    results["latency"] = latency.run(runs=3 if small else 30)
    results["door"] = door.run(runs=3 if small else 30)
    results["bulk"] = bulk.run(megabytes=10 if small else 500)
    results["sessions"] = session_figures(
        count=10 if small else 500, echo_sessions=5 if small else 200, keystrokes=3 if small else 20,
        rate_seconds=2 if small else 30,
    )  # fmt: skip
    results["compliance"] = compliance.run(sessions=2000 if small else 100_000, megabytes=5 if small else 200)
    results["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    plot(results, args.out / "results.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
