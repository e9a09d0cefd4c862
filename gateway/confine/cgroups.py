"""The session's own cgroup: its processes share the container's limits and die with it.

cgroup v1 (this host: Docker's cgroupfs driver, ``/sys/fs/cgroup/CTRL/docker/ID``):
the child joins the container's cgroup in every hierarchy, so the container's
memory, CPU, pids and device limits apply as they are, except in the freezer
hierarchy (or pids, without a freezer), where it joins a child cgroup of the
container's made for this session. At the end that cgroup is frozen, every
process in it is killed (``setsid`` or a double fork does not leave it), then
it is thawed and removed.

cgroup v2 (``/sys/fs/cgroup/system.slice/docker-ID.scope`` with the systemd
driver): the child joins a child cgroup of the container's. With no
controller enabled below the container, its usage is charged to the
container's cgroup and limited by it. At the end ``cgroup.kill`` (Linux 5.14)
or a freeze-and-kill empties it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
SETTLE_SECONDS = 2.0
POLL = 0.02


class CgroupError(Exception):
    """The session could not be given a cgroup: it must not run."""


def mounts(mountinfo: Path = MOUNTINFO) -> dict[str, Path]:
    """Each v1 controller (and ``name=…``) -> its mount point; "" -> the v2 mount."""
    found: dict[str, Path] = {}
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = [*right.split(), "", "", ""][:3]
        point = Path(left.split()[4])
        if fstype == "cgroup2":
            found.setdefault("", point)
        elif fstype == "cgroup":
            for option in options.split(","):
                found.setdefault(option, point)
    return found


@dataclass
class SessionCgroup:
    """Where a session's child goes, and how its leftovers are ended."""

    #: cgroup.procs files the launcher writes its own pid to, in order
    join: list[Path] = field(default_factory=list)
    #: the session's own cgroup directory (created here, removed at the end)
    own: Path | None = None
    freezer: bool = False

    @classmethod
    def create(cls, cgroups: tuple[tuple[str, str], ...], name: str, table: dict[str, Path]) -> SessionCgroup:
        """Make the session's cgroup below the container's (*cgroups* from /proc/PID/cgroup)."""
        v1 = [(c, p) for c, p in cgroups if c]
        made = cls._v1(v1, table, name) if v1 and any(c.split(",")[0] in table for c, _ in v1) else cls()
        for controllers, path in cgroups:
            if not controllers and "" in table:
                base = table[""] / path.lstrip("/")
                if made.own is None:  # pure v2: the session's cgroup lives here
                    made.own = base / name
                    made.join.append(made.own / "cgroup.procs")
                else:  # hybrid: the unified tree has no controllers; join the container's
                    made.join.append(base / "cgroup.procs")
        if made.own is None:
            raise CgroupError("no cgroup hierarchy of the container is mounted here")
        try:
            made.own.mkdir(mode=0o755)
        except OSError as exc:
            raise CgroupError(f"cannot create {made.own}: {exc.strerror}") from exc
        return made

    @classmethod
    def _v1(cls, v1: list[tuple[str, str]], table: dict[str, Path], name: str) -> SessionCgroup:
        made = cls()
        tracker = "freezer" if any("freezer" in c.split(",") for c, _ in v1) else "pids"
        made.freezer = tracker == "freezer"
        for controllers, path in v1:
            point = table.get(controllers.split(",")[0])
            if point is None:
                continue
            base = point / path.lstrip("/")
            if tracker in controllers.split(","):
                made.own = base / name
                made.join.append(made.own / "cgroup.procs")
            else:
                made.join.append(base / "cgroup.procs")
        return made

    def pids(self) -> set[int]:
        """Processes in the session's own cgroup now."""
        if self.own is None:
            return set()
        try:
            text = (self.own / "cgroup.procs").read_text()
        except OSError:
            return set()
        return {int(word) for word in text.split()}

    async def end(self) -> int:
        """Kill every process left in the session's cgroup, remove it; return how many there were."""
        if self.own is None:
            return 0
        ended: set[int] = set()
        if self.pids():  # an empty cgroup stays empty: only a member can add one (by forking)
            await self._freeze(True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_SECONDS
        while (left := self.pids()) and loop.time() < deadline:
            ended |= left
            if not self._kill_all():
                for pid in left:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            await self._freeze(False)
            await asyncio.sleep(POLL)
        await self._remove(deadline)
        return len(ended)

    def _kill_all(self) -> bool:
        assert self.own is not None
        kill = self.own / "cgroup.kill"  # cgroup v2, Linux 5.14 and later
        if self.freezer or not kill.exists():
            return False
        kill.write_text("1")
        return True

    async def _freeze(self, frozen: bool) -> None:
        """Freeze (v1 freezer) so nothing can fork while the list is read and killed."""
        if not self.freezer or self.own is None:
            return
        state = self.own / "freezer.state"
        with contextlib.suppress(OSError):
            state.write_text("FROZEN" if frozen else "THAWED")
            for _ in range(50):
                if state.read_text().strip() != "FREEZING":
                    return
                await asyncio.sleep(POLL)

    async def _remove(self, deadline: float) -> None:
        assert self.own is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.own.rmdir()
            except FileNotFoundError:
                return
            except OSError:
                if loop.time() >= deadline + SETTLE_SECONDS:
                    return  # a process that will not die: leave the cgroup to the container's end
                await asyncio.sleep(POLL)
                continue
            return
