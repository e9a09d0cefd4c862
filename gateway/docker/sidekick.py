"""A sidekick container's lifecycle: create, attach, wait, start, resize, remove.

The wait (``condition=next-exit``) is started before ``start`` so that
auto-removal cannot race it. Nothing here ever pulls an image.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiodocker.stream import Stream

from gateway.docker.engine import TIMEOUT, Engine, translated


@dataclass
class Sidekick:
    """One created sidekick container."""

    engine: Engine
    id: str

    @classmethod
    async def create(cls, engine: Engine, config: dict[str, Any], name: str) -> Sidekick:
        """Create (not start) the container; ImageNotFound if the image is absent."""
        async with translated(str(config.get("Image", ""))):
            container = await asyncio.wait_for(engine.client.containers.create(config, name=name), TIMEOUT)
        return cls(engine, container.id)

    def attach(self, *, stdin: bool) -> Stream:
        """The attach stream (enter it before ``start`` so no output is lost)."""
        container = self.engine.client.containers.container(self.id)
        return container.attach(stdout=True, stderr=True, stdin=stdin)

    async def wait(self) -> int:
        """Wait for the next exit; the exit status."""
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with translated(self.id):
            result = await self.engine.client._query_json(
                f"containers/{self.id}/wait",
                method="POST",
                params={"condition": "next-exit"},
                timeout=timeout,
            )
        return int(result.get("StatusCode", 255))

    async def start(self) -> None:
        """Start it."""
        async with translated(self.id):
            await asyncio.wait_for(self.engine.client.containers.container(self.id).start(), TIMEOUT)

    async def resize(self, cols: int, rows: int) -> None:
        """Resize its TTY."""
        async with translated(self.id):
            await self.engine.client.containers.container(self.id).resize(h=max(rows, 1), w=max(cols, 1))

    async def remove(self) -> None:
        """Kill and remove it (already gone is fine)."""
        await self.engine.remove(self.id)


async def close_stdin(stream: Stream) -> None:
    """Half-close: the sidekick sees EOF on stdin while its output keeps flowing."""
    response = stream._resp
    transport = response.connection.transport if response and response.connection else None
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
