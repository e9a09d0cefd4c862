"""Pin the container's main process before entering it: a PID is not an identity.

Between the Engine API's answer (``State.Pid``) and entering it, the process can
exit and its number can be reused by a host process; entering it would then put
the user in the host's namespaces. So: open a pidfd (it names one process for
good), check that the process is the container's (every cgroup path names the
container id), open its namespace files as descriptors, then check that the
pidfd's process is still alive and unchanged. While it lives, the PID cannot
be reused, so the descriptors are the container's. nsenter gets the
descriptors (``confine.spawn`` passes them to the child), never the number.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

NAMESPACES = ("mnt", "uts", "ipc", "net", "pid", "cgroup")
PROC = Path("/proc")


class ContainerChanged(Exception):
    """The process behind the container's PID is not (or no longer) the container's."""


@dataclass
class Pinned:
    """A container's main process, held by a pidfd, with its namespaces open."""

    pid: int
    pidfd: int
    #: (controllers, path) lines of /proc/PID/cgroup
    cgroups: tuple[tuple[str, str], ...]
    namespaces: dict[str, int] = field(default_factory=dict)
    #: the start time (clock ticks since boot): with the pid, the process's identity
    started: int = 0

    def close(self) -> None:
        """Close every descriptor."""
        for fd in (self.pidfd, *self.namespaces.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.namespaces.clear()


def read_cgroups(pid: int, proc: Path = PROC) -> tuple[tuple[str, str], ...]:
    """``/proc/PID/cgroup`` as (controllers, path); controllers is "" for cgroup v2."""
    lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    out = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        out.append((controllers, path))
    return tuple(out)


def start_time(pid: int, proc: Path = PROC) -> int:
    """Field 22 of /proc/PID/stat: the start time in clock ticks since boot."""
    stat = (proc / str(pid) / "stat").read_text()
    return int(stat.rpartition(")")[2].split()[19])


def belongs(cgroups: tuple[tuple[str, str], ...], container_id: str) -> bool:
    """Whether every cgroup the process is in names *container_id* (v1 and v2 alike)."""
    paths = [path for controllers, path in cgroups if not controllers.startswith("name=")]
    return bool(paths) and all(container_id in path for path in paths)


def pin(pid: int, container_id: str) -> Pinned:
    """Pin *pid* as *container_id*'s process; raise ContainerChanged if it is not."""
    if pid <= 0:
        raise ContainerChanged("the container has no process")
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        raise ContainerChanged(f"pid {pid} is gone") from exc
    pinned = Pinned(pid, pidfd, ())
    try:
        before = start_time(pid)
        pinned.cgroups = read_cgroups(pid)
        if not belongs(pinned.cgroups, container_id):
            raise ContainerChanged(f"pid {pid} is not in the container's cgroup")
        pinned.started = before
        for name in NAMESPACES:
            pinned.namespaces[name] = os.open(PROC / str(pid) / "ns" / name, os.O_RDONLY | os.O_CLOEXEC)
        signal.pidfd_send_signal(pidfd, 0)  # still alive: the number was not reused meanwhile
        if start_time(pid) != before or read_cgroups(pid) != pinned.cgroups:
            raise ContainerChanged(f"pid {pid} changed while it was being pinned")
    except ContainerChanged:
        pinned.close()
        raise
    except (OSError, ValueError, IndexError) as exc:
        pinned.close()
        raise ContainerChanged(f"pid {pid}: {exc}") from exc
    return pinned
