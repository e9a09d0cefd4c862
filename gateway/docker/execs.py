"""An Engine API exec: create, start (attached), resize, inspect; errors translated.

``POST /containers/ID/exec`` then ``/exec/ID/start`` with ``Detach: false``:
the process runs with the container's own user, capabilities, seccomp and
AppArmor profiles, in its cgroup. Without a TTY the stream is multiplexed
(stdout and stderr apart), as for logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from aiodocker.stream import Stream

from gateway.docker.engine import TIMEOUT, Engine, translated

EXIT_POLL = 0.02
EXIT_WAIT = 5.0


@dataclass
class Exec:
    """One exec process in a container."""

    engine: Engine
    id: str
    tty: bool
    #: a pidfd on the exec'd process (host side), for signals that cannot hit a reused pid
    pidfd: int | None = field(default=None)

    @classmethod
    async def create(
        cls, engine: Engine, container_id: str, argv: list[str], *, tty: bool, env: dict[str, str], user: str
    ) -> Exec:
        """Create (not start) the exec; ContainerNotFound if the container is gone."""
        async with translated(container_id):
            container = engine.client.containers.container(container_id)
            made = await asyncio.wait_for(
                container.exec(argv, stdin=True, tty=tty, environment=env, user=user), TIMEOUT
            )
        return cls(engine, made.id, tty)

    def start(self) -> Stream:
        """The attached stream (use as ``async with``)."""
        return self.engine.client.containers.exec(self.id).start(detach=False)

    async def inspect(self) -> dict[str, Any]:
        """``/exec/ID/json``."""
        async with translated(self.id):
            result: dict[str, Any] = await asyncio.wait_for(
                self.engine.client._query_json(f"exec/{self.id}/json"), TIMEOUT
            )
        return result

    async def pin(self) -> None:
        """Open a pidfd on the exec'd process once it runs."""
        pid = int((await self.inspect()).get("Pid") or 0)
        if pid > 0:
            with contextlib.suppress(OSError):
                self.pidfd = os.pidfd_open(pid)

    def signal(self, sig: signal.Signals) -> None:
        """Deliver *sig* to the exec'd process (never to a reused pid)."""
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, sig)

    async def resize(self, cols: int, rows: int) -> None:
        """Resize its TTY."""
        async with translated(self.id):
            await self.engine.client.containers.exec(self.id).resize(h=max(rows, 1), w=max(cols, 1))

    async def exit_code(self) -> int | None:
        """The exit status once the process has ended (None if it is still running)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXIT_WAIT
        while True:
            result = await self.inspect()
            if not result.get("Running") and result.get("ExitCode") is not None:
                return int(result["ExitCode"])
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(EXIT_POLL)

    def close(self) -> None:
        """Close the pidfd."""
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None
