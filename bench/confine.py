"""What the shell's confinement costs: `ssh debug@GW C true` (the container's capabilities,
no_new_privs and seccomp, read once per container and set by the child before exec)
against `ssh rootdebug@GW C true` (privileged: the same spawner and namespaces, no
confinement), connect to exit, in alternating runs. Target: no more than +5 ms."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, alternate, figure, keygen
from bench.gateway import running_gateway


def _once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, timeout=30)
    return time.perf_counter() - start


def run(runs: int = 30) -> dict[str, Any]:
    """Medians and spreads of both sides, and the difference of the medians."""
    name = f"bench-confine-{secrets.token_hex(3)}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "gateway-demo:latest"], capture_output=True, check=True
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            key = keygen(base / "client")
            with running_gateway(base / "gw", key) as gw:
                common = ["ssh", *SSH_OPTS, "-i", str(key), "-p", str(gw.port)]
                sides = {
                    "confined": [*common, "debug@127.0.0.1", name, "true"],
                    "privileged": [*common, "rootdebug@127.0.0.1", name, "true"],
                }
                for argv in sides.values():
                    _once(argv)  # warm-up: the spawner, the container's filter read once
                samples = alternate(
                    {k: (lambda a=a: _once(a)) for k, a in sides.items()}, runs, turn_about=True
                )
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    out = {f"{k}_ms": figure(v, scale=1000) for k, v in samples.items()}
    out["added_ms"] = round(out["confined_ms"]["median"] - out["privileged_ms"]["median"], 2)
    return out
