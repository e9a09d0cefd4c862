"""Figure 3: bulk throughput, in alternating runs.

* backup: `ssh backup@HOST bench-db > file` (the Engine API archive, streamed) against
  what an sshd user runs for the same job, sshd forcing `docker cp bench-db:/data -`,
  and against the archive endpoint alone on the host (the limit);
* shell stdout: `ssh debug@HOST bench-db cat /data/blob` (nsenter, recorded) against sshd
  forcing `cat` of the same file on the host.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, alternate, figure, keygen, sshd
from bench.gateway import running_gateway

ENGINE = "/var/run/docker.sock"


def _mbps(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    return len(done.stdout) / (time.perf_counter() - start) / 1e6


def _archive_alone(container: str) -> float:
    """GET /containers/ID/archive on the engine's socket, read to the end: MB/s."""
    start, size = time.perf_counter(), 0
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(ENGINE)
        sock.sendall(f"GET /containers/{container}/archive?path=/data HTTP/1.0\r\nHost: d\r\n\r\n".encode())
        while chunk := sock.recv(1 << 20):
            size += len(chunk)
    return size / (time.perf_counter() - start) / 1e6


def run(megabytes: int = 200, runs: int = 15) -> dict[str, Any]:
    """Alternating runs of every side; MB/s medians with their spread."""
    name = f"bench-db-{secrets.token_hex(3)}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "gateway-demo:latest"], check=True, capture_output=True
    )
    try:
        subprocess.run(
            ["docker", "exec", name, "sh", "-c", f"head -c {megabytes * 1048576} /dev/urandom > /data/blob"],
            check=True,
        )
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            key, other = keygen(base / "client"), keygen(base / "other")
            blob = base / "blob"
            subprocess.run(["docker", "cp", f"{name}:/data/blob", str(blob)], check=True)
            env = 'restrict,environment="HOME=/nonexistent"'
            lines = (
                f'{env},command="docker cp {name}:/data -" {key.with_suffix(".pub").read_text().strip()}\n'
                f'{env},command="cat {blob}" {other.with_suffix(".pub").read_text().strip()}\n'
            )
            with running_gateway(base / "gw", key) as gw, sshd(base / "sshd", lines) as port:
                gw_common = ["ssh", *SSH_OPTS, "-i", str(key), "-p", str(gw.port)]
                sides = {
                    "backup_gateway": lambda: _mbps([*gw_common, "backup@127.0.0.1", name]),
                    "backup_sshd_docker_cp": lambda: _mbps(
                        ["ssh", *SSH_OPTS, "-i", str(key), "-p", str(port), "root@127.0.0.1"]
                    ),
                    "backup_archive_endpoint": lambda: _archive_alone(name),
                    "cat_gateway": lambda: _mbps([*gw_common, "debug@127.0.0.1", name, "cat", "/data/blob"]),
                    "cat_sshd": lambda: _mbps(
                        ["ssh", *SSH_OPTS, "-i", str(other), "-p", str(port), "root@127.0.0.1"]
                    ),
                }
                for measure in sides.values():
                    measure()  # warm-up: caches, first connection
                samples = alternate(sides, runs)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
    out: dict[str, Any] = {"megabytes": megabytes, "runs": runs, "target_backup_vs_docker_cp": 0.9}
    for side, values in samples.items():
        out[f"{side}_MBps"] = figure(values, digits=1)
    median = {side: out[f"{side}_MBps"]["median"] for side in samples}
    out["backup_vs_docker_cp"] = round(median["backup_gateway"] / median["backup_sshd_docker_cp"], 3)
    out["backup_vs_archive_endpoint"] = round(median["backup_gateway"] / median["backup_archive_endpoint"], 3)
    out["cat_ratio"] = round(median["cat_gateway"] / median["cat_sshd"], 3)
    return out
