"""Have the kernel's cgroup migration lock ready before a ``shell`` session's child joins its cgroups.

Moving a process between cgroups takes ``cgroup_threadgroup_rwsem`` for
writing. After an idle moment the lock is in its fast mode, and the first
writer waits out an RCU grace period (7-16 ms here) to switch it; writers that
follow within about one grace period pass at once (0.2 ms). So the child of
the first shell after a quiet moment paid that wait between the client's
login and its first prompt, as ``docker exec`` pays it, and a bare ``nsenter``
(joining no cgroup) does not.

``soon()`` is called when a login that may open a shell is accepted (both
doors): a thread moves this process into the cgroup it is already in (a
no-op move that takes the lock) every few milliseconds until the child has
joined (``done()``) or HOLD_SECONDS have passed, so the switch happens while
the session is still being decided, and the lock stays switched until the
child joins. Nothing moves anywhere; a host
where the write fails (not root, no cgroup file) just has no warmer.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

#: how long a login keeps the lock switched (the door's path from sshd's key lookup to the session
#: takes the longest: sshd's fork, the thin client's start, the hand-over)
HOLD_SECONDS = 0.5
#: how often a no-op move is made meanwhile (well under one grace period)
EVERY_SECONDS = 0.004
PROC_CGROUP = Path("/proc/self/cgroup")
MOUNTED = Path("/sys/fs/cgroup")


def _own_procs() -> Path | None:
    """This process's own ``cgroup.procs`` in a hierarchy that is not systemd's (pids, else any v1
    controller, else v2)."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return None
    found: list[Path] = []
    for line in lines:
        _number, controllers, path = line.split(":", 2)
        if controllers.startswith("name="):
            continue
        first = controllers.split(",")[0]
        base = MOUNTED / first if first else MOUNTED
        candidate = base / path.lstrip("/") / "cgroup.procs"
        found.insert(0 if first == "pids" else len(found), candidate)
    return next((p for p in found if p.exists()), None)


class Warmer:
    """One thread per process at most, alive only while some login may still start a child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: one deadline per login still on its way to a child (``soon``), the earliest first
        self._pending: list[float] = []
        self._thread: threading.Thread | None = None
        self._procs: Path | None = None
        self._broken = False
        self._owner = 0

    def soon(self, seconds: float = HOLD_SECONDS) -> None:
        """A login that may start a child: keep the lock switched until it has (``done``) or for
        *seconds* at most (never blocks)."""
        if self._broken:
            return
        with self._lock:
            self._pending.append(time.monotonic() + seconds)
            self._pending.sort()
            if self._thread is not None and self._thread.is_alive() and self._owner == os.getpid():
                return
            self._owner = os.getpid()
            self._thread = threading.Thread(target=self._run, name="cgroup-warm", daemon=True)
            self._thread.start()

    def done(self) -> None:
        """A child has joined its cgroups: one login fewer to keep the lock switched for."""
        with self._lock:
            if self._pending:
                self._pending.pop(0)

    def _wanted(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._pending = [deadline for deadline in self._pending if deadline > now]
            if not self._pending:
                self._thread = None
                return False
            return True

    def _run(self) -> None:
        if self._procs is None:
            self._procs = _own_procs()
        if self._procs is None:
            self._broken = True
            return
        me = str(os.getpid()).encode()
        while self._wanted():
            try:
                fd = os.open(self._procs, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, me)  # into the cgroup it is in: nothing moves; the lock is taken
                finally:
                    os.close(fd)
            except OSError:
                self._broken = True  # not root, read-only, gone: no warmer, sessions pay the wait
                return
            time.sleep(EVERY_SECONDS)


WARMER = Warmer()
