"""Shared pieces of the benchmarks: a stock sshd on loopback, keys, timing helpers."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SSH_OPTS = [
    "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
]  # fmt: skip


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def keygen(path: Path) -> Path:
    """A fresh ed25519 key pair at *path*."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def wait_port(port: int, seconds: float = 10.0) -> None:
    """Wait (bounded) until something listens on *port*."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port}")


@contextmanager
def listening(argv: list[str], port: int) -> Iterator[None]:
    """Run the daemon *argv* until the block ends, once it listens on *port*."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def sshd(base: Path, authorized_keys: str, *, extra: str = "") -> Iterator[int]:
    """Debian's sshd on 127.0.0.1 with the given authorized_keys; yields its port."""
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "host_key").exists():
        keygen(base / "host_key")
    (base / "authorized_keys").write_text(authorized_keys)
    port = free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\nPidFile {base}/sshd.pid\n"
        f"AuthorizedKeysFile {base}/authorized_keys\nStrictModes no\nUsePAM no\nPermitRootLogin forced-commands-only\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitUserEnvironment yes\nLogLevel ERROR\n"
        "MaxStartups 1000:30:2000\nMaxSessions 1000\n" + extra
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    with listening(
        ["/usr/sbin/sshd", "-D", "-f", str(base / "sshd_config"), "-E", str(base / "sshd.log")], port
    ):
        yield port


def median_ms(samples: list[float]) -> float:
    """The median, in milliseconds."""
    return round(statistics.median(samples) * 1000, 2)


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of *runs* calls."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def figure(samples: list[float], scale: float = 1.0, digits: int = 2) -> dict[str, float]:
    """A figure as a user would reproduce it: the median of the runs, with min and max beside it."""
    values = [v * scale for v in samples]
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def alternate(
    sides: dict[str, Callable[[], float]], runs: int, *, turn_about: bool = False
) -> dict[str, list[float]]:
    """Run each side once per round, *runs* rounds, so the machine's drift hits every side alike.

    *turn_about*: every other round in the reverse order, for sides where going first costs (the first
    cgroup move after an idle moment waits out an RCU grace period, ~10 ms on cgroup v1)."""
    out: dict[str, list[float]] = {name: [] for name in sides}
    for number in range(runs):
        order = list(sides.items())
        for name, measure in reversed(order) if turn_about and number % 2 else order:
            out[name].append(measure())
    return out


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def save(directory: Path, name: str, out: dict[str, Any], table: str) -> None:
    """A bench's figures as NAME.json and its table as NAME.md under *directory*, and the table printed."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    (directory / f"{name}.md").write_text(table)
    print(table)
