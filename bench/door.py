"""Figure 8: what `gateway dispatch` adds to sshd running the same command directly.

Both sides use the same sshd, the same client and the same forced command
(`free -m`); one key forces it directly, the other through `gateway dispatch`.
Neither pays for root's interactive shell start-up: `environment="HOME=/nonexistent"`
(with PermitUserEnvironment) keeps bash from reading ~/.bashrc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, keygen, median_ms, sshd, timed

ROOT = Path(__file__).resolve().parents[1]
PREFIX = os.environ.get("BENCH_DOOR_PREFIX", "")


def run(runs: int = 30) -> dict[str, Any]:
    """Median connect-to-exit of both sides, interleaved, and the difference."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        direct, gated = keygen(base / "direct"), keygen(base / "gated")
        keys = base / "keys"
        keys.mkdir()
        (keys / "dan.pub").write_text((gated.with_suffix(".pub")).read_text())
        policies = base / "policies"
        policies.mkdir()
        (policies / "p.yaml").write_text(
            "version: 1\nactions:\n  memory: {type: host, command: [free, -m]}\ngrants:\n  - principals: [dan]\n    actions: [memory]\n"
        )
        state = base / "state"
        door = ROOT / "gateway" / "door.py"
        program = f"{PREFIX}{sys.executable} -S {door} dispatch --principal dan --policies {policies} --keys {keys} --state {state}"
        env = 'environment="HOME=/nonexistent"'
        lines = [
            f'restrict,{env},command="free -m" {direct.with_suffix(".pub").read_text().strip()}',
            f'restrict,{env},command="{program}" {gated.with_suffix(".pub").read_text().strip()}',
        ]
        with sshd(base / "sshd", "\n".join(lines) + "\n") as port:

            def call(key: Path, command: str) -> None:
                argv = ["ssh", *SSH_OPTS, "-p", str(port), "-i", str(key), "root@127.0.0.1", command]
                subprocess.run(argv, capture_output=True, check=True, timeout=30)

            call(gated, "memory")  # warm-up: writes the audit genesis and the policy snapshot
            direct_s: list[float] = []
            gated_s: list[float] = []
            for _ in range(runs):
                direct_s += timed(lambda: call(direct, "x"), 1)
                gated_s += timed(lambda: call(gated, "memory"), 1)
    d, g = median_ms(direct_s), median_ms(gated_s)
    return {
        "runs": runs,
        "sshd_direct_ms": d,
        "sshd_dispatch_ms": g,
        "added_ms": round(g - d, 2),
        "target_added_ms": 60,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
