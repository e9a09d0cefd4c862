"""The spawner started apart (``zygote.py --listen``, the unit's ExecStartPre=+): who may ask it, and
what it reads of a process's confinement, on real processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.confine.pin import pin
from gateway.confine.spawn import Spawner, SpawnerError, daemon_command, daemon_pid

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "tests" / "unit_sandbox.py"
RETENTION = ROOT / "deploy" / "gateway-retention.service"


def _profile(daemon: Path, pid: int, pidfd: int) -> dict[str, Any]:
    async def ask() -> dict[str, Any]:
        spawner = Spawner()
        spawner.path = str(daemon)
        try:
            return await spawner.profile(pid, pidfd)
        finally:
            await spawner.close()

    return asyncio.run(ask())


@pytest.fixture
def daemon() -> Iterator[Path]:
    place = Path(tempfile.mkdtemp(prefix="gwspawn-", dir="/tmp"))
    place.chmod(0o755)  # reachable by another account: only the socket's mode and SO_PEERCRED stop it
    path = place / "spawner.sock"
    started = subprocess.run(daemon_command(path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)  # fmt: skip
    assert started.returncode == 0  # the first process exits once the socket listens
    yield path
    os.kill(daemon_pid(path), signal.SIGKILL)
    shutil.rmtree(place)


def test_it_listens_for_root_only(daemon: Path) -> None:
    assert daemon.stat().st_mode & 0o777 == 0o600
    pid = daemon_pid(daemon)  # the process that serves, not the one that exited
    assert "zygote.py" in Path(f"/proc/{pid}/cmdline").read_text()
    assert Path(f"/proc/{pid}/status").read_text().count("NoNewPrivs:\t0") == 1
    daemon.chmod(0o666)  # even when the file lets anyone connect, SO_PEERCRED does not
    script = (
        "import socket,sys\ns=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\ns.connect(sys.argv[1])\n"
        "try:\n s.settimeout(5); s.send(b'{\"profile\": 1}'); print(repr(s.recv(100)))\n"
        "except (ConnectionResetError, BrokenPipeError):\n print(repr(b''))\n"
    )
    other = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, str(daemon)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert other.stdout.strip() == "b''", other.stdout + other.stderr  # closed, nothing answered


def test_it_reads_a_filtered_process_and_the_gateway_asks_it(daemon: Path) -> None:
    """A process under the retention unit's sandbox: three filters, no capability, no_new_privs."""
    target = subprocess.Popen(["/usr/bin/python3", str(SANDBOX), str(RETENTION), "--", "/bin/sleep", "60"])
    try:
        for _ in range(100):
            if "Seccomp_filters:\t3" in Path(f"/proc/{target.pid}/status").read_text():
                break
            time.sleep(0.05)
        pinned = pin(target.pid, "")
        try:
            found = _profile(daemon, target.pid, pinned.pidfd)
        finally:
            pinned.close()
    finally:
        target.kill()
        target.wait()
    assert (found["bounding"], found["nnp"], len(found["seccomp"])) == (0, True, 3)
    assert all(len(bytes.fromhex(program)) % 8 == 0 for program in found["seccomp"])


def test_a_process_that_is_gone_is_an_error_not_a_profile(daemon: Path) -> None:
    target = subprocess.Popen(["/bin/sleep", "60"])
    pinned = pin(target.pid, "")
    target.kill()
    target.wait()
    try:
        with pytest.raises(SpawnerError):
            _profile(daemon, target.pid, pinned.pidfd)
    finally:
        pinned.close()
