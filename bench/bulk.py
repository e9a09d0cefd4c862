"""Figures 3 and 4: bulk throughput, gateway vs sshd streaming the same bytes.

* backup: `ssh backup@HOST bench-db > file` (the Engine API archive, metadata recorded)
  against sshd forcing `cat` of the very same tar stream saved to a file;
* shell stdout: `ssh debug@HOST bench-db cat /data/blob` (nsenter, recorded as
  asciicast) against sshd forcing `cat` of the same file on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, keygen, sshd
from bench.gateway import running_gateway


def _throughput(argv: list[str], runs: int = 2) -> float:
    """Best MB/s of *runs* transfers into /dev/null."""
    best = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        with Path(os.devnull).open("wb") as sink:
            done = subprocess.run(argv, stdout=sink, stderr=subprocess.DEVNULL, check=True)
        assert done.returncode == 0
        elapsed = time.perf_counter() - start
        best = max(best, size_of(argv) / elapsed / 1e6)
    return round(best, 1)


_SIZES: dict[str, int] = {}


def size_of(argv: list[str]) -> int:
    """The byte count of the stream *argv* produces (measured once)."""
    key = " ".join(argv)
    if key not in _SIZES:
        out = subprocess.run(argv, capture_output=True, check=True)
        _SIZES[key] = len(out.stdout)
    return _SIZES[key]


def run(megabytes: int = 500) -> dict[str, Any]:
    """MB/s on both sides for a *megabytes* volume."""
    name = f"bench-db-{os.getpid()}"
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
            key = keygen(base / "client")
            with running_gateway(base / "gw", key) as gw:
                common = ["ssh", *SSH_OPTS, "-i", str(key), "-p", str(gw.port)]
                backup = [*common, "backup@127.0.0.1", name]
                tar = base / "volume.tar"
                with tar.open("wb") as f:
                    subprocess.run(backup, stdout=f, check=True)
                blob = base / "blob"
                subprocess.run(["docker", "cp", f"{name}:/data/blob", str(blob)], check=True)
                shell = [*common, "debug@127.0.0.1", name, "cat", "/data/blob"]
                lines = [
                    f'restrict,environment="HOME=/nonexistent",command="cat {tar}" {key.with_suffix(".pub").read_text().strip()}',
                ]
                gw_backup, gw_shell = _throughput(backup), _throughput(shell)
            other = keygen(base / "other")
            lines.append(
                f'restrict,environment="HOME=/nonexistent",command="cat {blob}" {other.with_suffix(".pub").read_text().strip()}'
            )
            with sshd(base / "sshd", "\n".join(lines) + "\n") as sport:
                ref = ["ssh", *SSH_OPTS, "-p", str(sport)]
                sshd_tar = _throughput([*ref, "-i", str(key), "root@127.0.0.1"])
                sshd_blob = _throughput([*ref, "-i", str(other), "root@127.0.0.1"])
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
    return {
        "megabytes": megabytes,
        "backup_gateway_MBps": gw_backup,
        "backup_sshd_MBps": sshd_tar,
        "backup_ratio": round(gw_backup / sshd_tar, 3),
        "shell_cat_gateway_MBps": gw_shell,
        "shell_cat_sshd_MBps": sshd_blob,
        "shell_cat_ratio": round(gw_shell / sshd_blob, 3),
        "target_backup_ratio": 0.9,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(os.environ.get("BENCH_MB", "500"))), indent=2))
