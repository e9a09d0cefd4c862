"""Who is on the other end of a door socket, as the kernel says, not as the client says.

sshd runs ``AuthorizedKeysCommand`` from the connection's privileged monitor
(``sshd: USER [priv]``, root) and the forced command below that same monitor.
So the monitor (pid and start time) names one SSH connection: a ticket minted
for a key lookup is bound to it, and only a process below it may redeem the
ticket. The connection's endpoints are read from the monitor's own TCP
socket (``/proc/net/tcp``), never from ``SSH_CONNECTION``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path

PROC = Path("/proc")
MAX_DEPTH = 16

#: (pid, start time): one process for good
Identity = tuple[int, int]


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, start time) from /proc/PID/stat."""
    fields = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    return int(fields[1]), int(fields[19])


def _real_uid(pid: int) -> int:
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return -1


def sshd_monitor(pid: int) -> Identity | None:
    """The nearest ancestor of *pid* (itself excluded) that is root's sshd: the connection's monitor."""
    try:
        current, _ = _stat(pid)
        for _ in range(MAX_DEPTH):
            if current <= 1:
                return None
            parent, started = _stat(current)
            if _real_uid(current) == 0 and (PROC / str(current) / "exe").readlink().name == "sshd":
                return current, started
            current = parent
    except (OSError, ValueError, IndexError):
        return None
    return None


def below(pid: int, monitor: Identity) -> bool:
    """Whether *pid* descends from the process *monitor* (pid and start time both match)."""
    return sshd_monitor(pid) == monitor


def connection(monitor: Identity) -> str:
    """``CLIENT-ADDRESS CLIENT-PORT SERVER-ADDRESS SERVER-PORT`` of the monitor's TCP socket, or ""."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir(PROC / str(monitor[0]) / "fd"):
            with contextlib.suppress(OSError):
                target = str(Path(entry.path).readlink())
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (PROC / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
                    local, remote = _endpoint(fields[1]), _endpoint(fields[2])
                    return f"{remote[0]} {remote[1]} {local[0]} {local[1]}"
    return ""


def _endpoint(text: str) -> tuple[str, int]:
    """``0100007F:0016`` (or the IPv6 form) as (address, port)."""
    address, _, port = text.partition(":")
    raw = bytes.fromhex(address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host-order
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)
