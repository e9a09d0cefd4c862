"""Start a real `gateway serve` for a benchmark, with one client key as principal `bench`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from gateway.confine.spawn import daemon_command, daemon_pid

ROOT = Path(__file__).resolve().parents[1]

POLICY = """\
version: 1
actions:
  memory: {type: host, command: [free, -m]}
  debug: {type: shell, allow_args: true}
  rootdebug: {type: shell, allow_args: true, privileged: true}
  backup: {type: backup, paths: ["/data"]}
  sh: {type: host, command: [sh]}
  cat: {type: host, command: [cat]}
  noop: {type: host, command: ["true"]}
grants:
  - principals: [bench]
    actions: [memory, cat, sh, noop]
  - principals: [bench]
    actions: [debug, rootdebug, backup]
    targets: ["bench-*"]
"""


class Running(NamedTuple):
    """A running gateway: where it listens and its process id."""

    port: int
    pid: int


@contextmanager
def running_gateway(
    base: Path,
    key: Path,
    *,
    blob: Path | None = None,
    extra: tuple[str, ...] = (),
    root: Path = ROOT,
    policy: str = POLICY,
    unit: bool = False,
) -> Iterator[Running]:
    """`gateway serve` (of the checkout at *root*) on 127.0.0.1:0; yields its port; SIGTERM at the end.

    *unit*: as deploy/gateway.service runs it: its spawner started apart first (the ExecStartPre=+ line,
    ``--spawner``), the gateway under the unit's sandbox rebuilt by tests/unit_sandbox.py.
    """
    (base / "policies").mkdir(parents=True, exist_ok=True)
    (base / "keys").mkdir(exist_ok=True)
    (base / "policies" / "bench.yaml").write_text(policy)
    (base / "keys" / "bench.pub").write_text(key.with_suffix(".pub").read_text())
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", "127.0.0.1:0", "--policies", str(base / "policies"),
            "--keys", str(base / "keys"), "--state", str(base / "state"), *extra]  # fmt: skip
    spawner = base / "spawner.sock"
    if unit:
        zygote = root / "gateway" / "confine" / "zygote.py"  # *root*'s own, which may be another checkout's
        subprocess.run(daemon_command(spawner, zygote), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True, timeout=30)  # fmt: skip
        sandbox = [
            UNIT_PYTHON,
            str(root / "tests" / "unit_sandbox.py"),
            str(root / "deploy" / "gateway.service"),
        ]
        argv = [*sandbox, "--", *argv, "--spawner", str(spawner)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root)
    assert proc.stdout is not None
    match = re.search(r":(\d+)$", proc.stdout.readline().strip())
    if not match:
        proc.kill()
        raise RuntimeError("the gateway did not start")
    try:
        yield Running(int(match.group(1)), proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        if unit:
            _stop_spawner(spawner)


#: Debian's python3, which has libseccomp's binding (tests/unit_sandbox.py)
UNIT_PYTHON = "/usr/bin/python3"


def _stop_spawner(path: Path) -> None:
    """The spawner started apart: SIGKILL, as the unit's stop does."""
    pid = daemon_pid(path)
    if pid:
        os.kill(pid, signal.SIGKILL)
