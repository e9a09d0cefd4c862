"""Figure 8: what the OpenSSH door adds to sshd running the same work directly.

Three kinds of work, each forced by sshd directly and through `gateway dispatch`:
a host command (`memory` against `free -m`), a container command (`debug
bench-door hostname` against the same nsenter) and the first prompt of a PTY
shell (`debug bench-door` against nsenter running /bin/sh). The door is
measured through the daemon with both launchers (`python -S door.py` and the
`gateway` console script), and in-process (no daemon answering). The runs
alternate (direct, then each door variant) so that the machine's drift hits
every side alike; each figure is the median with its spread (min, max).
Neither side pays for root's interactive shell start-up:
`environment="HOME=/nonexistent"` keeps bash from reading ~/.bashrc.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, figure, keygen, sshd
from bench.gateway import running_gateway

ROOT = Path(__file__).resolve().parents[1]
TARGET_ADDED_MS = 40


def _work(container: str) -> dict[str, tuple[str, ...]]:
    return {"host": ("memory",), "container": ("debug", container, "hostname"), "pty": ("debug", container)}


def _container() -> tuple[str, int]:
    name = f"bench-door-{secrets.token_hex(3)}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "gateway-demo:latest"], capture_output=True, check=True
    )
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True, check=True
    ).stdout.strip()
    return name, int(pid)


def _first_prompt(argv: list[str]) -> float:
    import pexpect  # noqa: PLC0415

    start = time.perf_counter()
    child = pexpect.spawn(argv[0], argv[1:], timeout=30, env={"TERM": "xterm", "PATH": "/usr/bin:/bin"})
    child.expect(rb"[#$] ")
    took = time.perf_counter() - start
    child.sendline(b"exit")
    child.expect(pexpect.EOF)
    child.close()
    return took


def _once(argv: list[str], pty: bool) -> float:
    if pty:
        return _first_prompt(argv)
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, timeout=30)
    return time.perf_counter() - start


def run(runs: int = 30) -> dict[str, Any]:
    """Medians and spreads of every side, and what each door variant adds."""
    name, pid = _container()
    try:
        return _measure(runs, name, pid)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _measure(runs: int, container: str, pid: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        bench_key = keygen(base / "bench")
        nsenter = f"nsenter --target {pid} --mount --uts --ipc --net --pid --"
        direct = {"host": "free -m", "container": f"{nsenter} hostname", "pty": f"{nsenter} /bin/sh"}
        state = base / "gw" / "state"
        door_args = f"dispatch --principal bench --policies {base}/gw/policies --keys {base}/gw/keys"
        variants = {
            "daemon": f"{sys.executable} -S {ROOT}/gateway/door.py {door_args} --state {state}",
            "daemon_console_script": f"{Path(sys.executable).parent}/gateway {door_args} --state {state}",
            "in_process": f"{sys.executable} -S {ROOT}/gateway/door.py {door_args} --state {state}"
            f" --door-socket {base}/nobody.sock",
        }
        env = 'environment="HOME=/nonexistent"'
        keys: dict[str, Path] = {}
        lines = []
        for label, command in [*((f"direct_{k}", v) for k, v in direct.items()), *variants.items()]:
            keys[label] = keygen(base / label)
            lines.append(
                f'restrict,pty,{env},command="{command}" {keys[label].with_suffix(".pub").read_text().strip()}'
            )
        with running_gateway(base / "gw", bench_key), sshd(base / "sshd", "\n".join(lines) + "\n") as port:

            def argv(label: str, words: tuple[str, ...], pty: bool) -> list[str]:
                opts = ["-tt"] if pty else []
                return [
                    "ssh",
                    *SSH_OPTS,
                    *opts,
                    "-p",
                    str(port),
                    "-i",
                    str(keys[label]),
                    "root@127.0.0.1",
                    *words,
                ]

            samples: dict[str, list[float]] = {}
            plan: list[tuple[str, Callable[[], float]]] = []
            for work, words in _work(container).items():
                pty = work == "pty"
                plan.append(
                    (f"direct_{work}", lambda w=work, p=pty: _once(argv(f"direct_{w}", ("x",), p), p))
                )
                for variant in variants:
                    plan.append(
                        (f"{variant}_{work}", lambda v=variant, ws=words, p=pty: _once(argv(v, ws, p), p))
                    )
            for _, measure in plan:  # warm-up: audit genesis, page cache
                measure()
            for _ in range(runs):
                for label, measure in plan:
                    samples.setdefault(label, []).append(measure())
    out: dict[str, Any] = {"runs": runs, "target_added_ms": TARGET_ADDED_MS}
    for label, values in samples.items():
        out[label] = figure(values, 1000)
    for work in _work(container):
        base_ms = out[f"direct_{work}"]["median"]
        for variant in variants:
            out[f"added_{variant}_{work}_ms"] = round(out[f"{variant}_{work}"]["median"] - base_ms, 2)
    return out


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 30), indent=2))
