"""Figure 1: connect -> first output byte of a `host` action (`free -m`), gateway vs sshd."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, keygen, median_ms, sshd
from bench.gateway import running_gateway


def first_byte(argv: list[str]) -> float:
    """Seconds from starting ssh to the first byte on its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return elapsed


def run(runs: int = 30) -> dict[str, Any]:
    """Median connect-to-first-byte on both sides, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        key = keygen(base / "client")
        line = f'restrict,environment="HOME=/nonexistent",command="free -m" {key.with_suffix(".pub").read_text().strip()}\n'
        with sshd(base / "sshd", line) as sshd_port, running_gateway(base / "gw", key) as gw:
            common = ["ssh", *SSH_OPTS, "-i", str(key)]
            gw_argv = [*common, "-p", str(gw.port), "memory@127.0.0.1"]
            sshd_argv = [*common, "-p", str(sshd_port), "root@127.0.0.1"]
            first_byte(gw_argv)
            first_byte(sshd_argv)
            ours, ref = [], []
            for _ in range(runs):
                ours.append(first_byte(gw_argv))
                ref.append(first_byte(sshd_argv))
    g, s = median_ms(ours), median_ms(ref)
    return {"runs": runs, "gateway_ms": g, "sshd_ms": s, "ratio": round(g / s, 3), "target_ratio": 0.15}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
