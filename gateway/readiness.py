"""Readiness: could a session run right now? Checked on the event loop, read by /readyz.

- the Docker engine answers (container actions need it);
- the audit log can be written (the allow record gates every action);
- a policy is loaded;
- with ``--spawner``, the spawner started apart answers on its socket (without it no shell starts).

The checks run every INTERVAL seconds on the loop (the engine client lives
there); /readyz, on the metrics thread, reads the last result, so a blocked
loop shows as a stale ``checked`` time rather than a hang.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from gateway import metrics
from gateway.confine.spawn import SPAWNER, unanswered
from gateway.diskspace import room
from gateway.errors import DockerError
from gateway.runtime import Runtime

INTERVAL = 2.0
MIN_FREE_BYTES = 1 << 20


class Readiness:
    """The last readiness result."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        #: ``up``/``down`` for the fleet database (None: no fleet); a supervisor asks its workers
        self.fleet: Callable[[], str | None] = lambda: (
            runtime.fleet.state if runtime.fleet is not None else None
        )
        self._last: dict[str, Any] = {"ready": False, "checks": {}, "checked": None}

    def snapshot(self) -> dict[str, Any]:
        """The last result (any thread)."""
        return dict(self._last)

    async def run(self) -> None:
        """Check every INTERVAL until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(INTERVAL)

    async def check(self) -> dict[str, Any]:
        """Run every check now."""
        checks = {
            "docker": await self._docker(),
            "audit_log": self._audit(),
            "policy": {"ok": bool(self.rt.policy.digest), "digest": self.rt.policy.digest},
            "recordings": self._recordings(),
        }
        if SPAWNER.path is not None:
            checks["spawner"] = _spawner(SPAWNER.path)
        ready = all(c["ok"] for c in checks.values()) and not self.rt.draining
        self._last = {"ready": ready, "draining": self.rt.draining, "checks": checks, "checked": time.time()}
        fleet = self.fleet()
        if fleet is not None:  # down: gated grants are refused, the rest runs (still ready)
            self._last["fleet"] = fleet
        return self._last

    async def _docker(self) -> dict[str, Any]:
        try:
            await self.rt.engine.ping()
        except (DockerError, TimeoutError) as exc:
            return {"ok": False, "error": str(exc) or type(exc).__name__}
        return {"ok": True}

    def _recordings(self) -> dict[str, Any]:
        """Free space against the floor: below it, recorded sessions are refused (the gateway stays ready)."""
        state = self.rt.settings.state
        try:
            free, floor = room(state, self.rt.settings.recordings_min_free)
        except OSError as exc:
            return {"ok": True, "error": exc.strerror}
        metrics.STATE_FREE.set(free)
        return {
            "ok": True,
            "free_bytes": free,
            "floor_bytes": floor,
            "refusing_recorded_sessions": free < floor,
        }

    def _audit(self) -> dict[str, Any]:
        directory = self.rt.audit.directory
        if not os.access(directory, os.W_OK):
            return {"ok": False, "error": "the audit directory is not writable"}
        try:
            free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
        except OSError as exc:
            return {"ok": False, "error": exc.strerror}
        if free < MIN_FREE_BYTES:
            return {"ok": False, "error": f"only {free} bytes free"}
        on_host = (directory / "initial.key").exists()
        return {"ok": True, "free_bytes": free, "initial_key_on_host": on_host}


def _spawner(path: str) -> dict[str, Any]:
    why = unanswered(path)
    return {"ok": True} if why is None else {"ok": False, "error": why}
