"""Memory per open `debug` session: PSS of every gateway process (workers and spawners included; not
the sessions' own processes, which run in the container) against PSS of sshd's per-session processes
(forcing nsenter into the same container), N sessions held open on each, alternating runs.

    python -m bench.memory [--sessions N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import asyncssh

from bench.common import figure, keygen, sshd
from bench.gateway import running_gateway
from bench.sessions import _rss_kb, hold_sessions, sshd_session_pids


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def gateway_tree(pid: int) -> list[int]:
    """The gateway's own processes: *pid* and every descendant that runs Python (not the sessions')."""
    found, frontier = [pid], [pid]
    while frontier:
        for child in _children(frontier.pop()):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"python" in cmdline.split(b"\0")[0]:
                found.append(child)
                frontier.append(child)
    return found


def tree_rss_kb(pid: int) -> int:
    """RSS of the gateway's own processes (its workers and spawners with it), kB."""
    return _memory(gateway_tree(pid))["Rss"]


def _memory(pids: list[int]) -> dict[str, int]:
    return {field: sum(_rss_kb(p, field) for p in pids) for field in ("Pss", "Rss")}


def run(sessions: int = 200, runs: int = 3) -> dict[str, Any]:
    """kB per session on each side, medians of *runs* alternating runs."""
    name = f"bench-mem-{secrets.token_hex(3)}"
    subprocess.run(["docker", "run", "-d", "--name", name, "gateway-demo:latest"], capture_output=True,
                   check=True)  # fmt: skip
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    samples: dict[str, list[float]] = {
        f"{side}_{f}": [] for side in ("gateway", "sshd") for f in ("Pss", "Rss")
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            path = keygen(base / "client")
            key = asyncssh.read_private_key(str(path))
            line = (
                f'restrict,pty,environment="HOME=/nonexistent",command="nsenter -t {pid} -a /bin/sh" '
                f"{path.with_suffix('.pub').read_text()}"
            )
            with sshd(base / "sshd", line) as port:
                pidfile = base / "sshd" / "sshd.pid"
                listener = int(pidfile.read_text())
                for run_number in range(runs):
                    with running_gateway(base / f"gw{run_number}", path, extra=("--workers", "1")) as gw:
                        # warm: the spawner starts with the first shell; a fixed cost per gateway process
                        # (as sshd's listener is), not a session's
                        asyncio.run(hold_sessions(gw.port, key, "debug", name, 5, lambda: {}))
                        idle = _memory(gateway_tree(gw.pid))

                        def measure(pid: int = gw.pid) -> dict[str, int]:
                            return _memory(gateway_tree(pid))

                        held = asyncio.run(hold_sessions(gw.port, key, "debug", name, sessions, measure))
                        for field in ("Pss", "Rss"):
                            samples[f"gateway_{field}"].append((held[field] - idle[field]) / sessions)
                    held = asyncio.run(
                        hold_sessions(
                            port, key, "root", "", sessions, lambda: _memory(sshd_session_pids(listener))
                        )
                    )
                    for field in ("Pss", "Rss"):
                        samples[f"sshd_{field}"].append(held[field] / sessions)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    out: dict[str, Any] = {"sessions": sessions, "runs": runs}
    for field in ("Pss", "Rss"):
        gateway = out[f"gateway_{field}_kb_per_session"] = figure(samples[f"gateway_{field}"], digits=1)
        sshd_side = out[f"sshd_{field}_kb_per_session"] = figure(samples[f"sshd_{field}"], digits=1)
        out[f"ratio_{field}"] = round(gateway["median"] / sshd_side["median"], 4)
    return out


def main() -> None:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.sessions, args.runs), indent=2))


if __name__ == "__main__":
    main()
