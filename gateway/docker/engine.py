"""The Engine API client: one lazily created aiodocker session, errors translated."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import aiohttp

from gateway.errors import ContainerNotFound, DockerError, DockerUnavailable, ImageNotFound

# Docker's own rule for container names; anything else is never sent to the API.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
TIMEOUT = 10.0
SIDEKICK_LABEL = "org.gateway.sidekick"


def valid_name(name: str) -> bool:
    """Whether *name* could be a Docker container name."""
    return NAME_RE.match(name) is not None


@dataclass(frozen=True)
class ContainerInfo:
    """A container resolved once per request: the id is what gets logged."""

    id: str
    name: str
    running: bool
    pid: int
    image: str
    image_id: str
    tty: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ContainerInfo:
        """Build from an inspect document."""
        state, config = data.get("State") or {}, data.get("Config") or {}
        return cls(
            id=data["Id"],
            name=str(data.get("Name", "")).lstrip("/"),
            running=bool(state.get("Running")),
            pid=int(state.get("Pid") or 0),
            image=str(config.get("Image", "")),
            image_id=str(data.get("Image", "")),
            tty=bool(config.get("Tty")),
            labels=dict(config.get("Labels") or {}),
        )


@contextlib.asynccontextmanager
async def translated(what: str = "") -> AsyncIterator[None]:
    """Re-raise aiodocker and transport errors as the project's DockerError tree."""
    try:
        yield
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            text = str(exc.message).lower()
            raise (ImageNotFound(what) if "image" in text else ContainerNotFound(what)) from exc
        if exc.status == 900:
            raise DockerUnavailable(exc.message) from exc
        raise DockerError(f"{exc.status}: {exc.message}") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise DockerUnavailable(str(exc) or type(exc).__name__) from exc


class Engine:
    """A lazily connected Engine API client; the HTTP session reconnects by itself."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self._client: aiodocker.Docker | None = None

    @property
    def unix_socket(self) -> str | None:
        """The engine's unix socket path, when it has one."""
        return self._url.removeprefix("unix://") if self._url.startswith("unix://") else None

    @property
    def client(self) -> aiodocker.Docker:
        """The aiodocker client, created on first use inside the event loop."""
        if self._client is None:
            self._client = aiodocker.Docker(url=self._url)
        return self._client

    async def inspect(self, name: str) -> ContainerInfo:
        """Resolve a container by exact name; raise ContainerNotFound or DockerUnavailable."""
        if not valid_name(name):
            raise ContainerNotFound(name)
        async with translated(name):
            data = await asyncio.wait_for(self.client._query_json(f"containers/{name}/json"), TIMEOUT)
        info = ContainerInfo.from_inspect(data)
        if info.name != name:
            raise ContainerNotFound(name)  # an id prefix, not a name: never resolve by id
        return info

    async def ping(self) -> None:
        """Whether the engine answers; DockerUnavailable otherwise."""
        async with translated():
            await asyncio.wait_for(self.client._query_json("version"), TIMEOUT / 5)

    async def running(self) -> list[tuple[str, Mapping[str, str]]]:
        """(name, labels) of every running container."""
        async with translated():
            found = await asyncio.wait_for(self.client._query_json("containers/json"), TIMEOUT)
        out = []
        for item in found if isinstance(found, list) else []:
            names = [str(n).lstrip("/") for n in item.get("Names") or []]
            if names and valid_name(names[0]):
                out.append((names[0], dict(item.get("Labels") or {})))
        return sorted(out)

    async def kill(self, container_id: str, signal: str) -> None:
        """``docker kill -s SIGNAL``."""
        async with translated(container_id):
            await asyncio.wait_for(
                self.client.containers.container(container_id).kill(signal=signal), TIMEOUT
            )

    async def image_exists(self, ref: str) -> bool:
        """Whether *ref* is on this host (never pulls)."""
        try:
            async with translated(ref):
                await asyncio.wait_for(self.client.images.inspect(ref), TIMEOUT)
        except (ContainerNotFound, ImageNotFound):
            return False
        return True

    async def remove(self, container_id: str) -> None:
        """Kill and remove a container; already gone, or going (auto-remove), is fine."""
        async with translated(container_id):
            container = self.client.containers.container(container_id)
            try:
                await asyncio.wait_for(container.delete(force=True, v=True), TIMEOUT)
            except aiodocker.DockerError as exc:
                if exc.status not in (404, 409):
                    raise

    async def reap(self, labels: Mapping[str, str]) -> int:
        """Remove every container carrying all of *labels*; return how many."""
        wanted = [f"{k}={v}" for k, v in labels.items()]
        async with translated():
            found = await asyncio.wait_for(
                self.client.containers.list(all=1, filters=json.dumps({"label": wanted})), TIMEOUT
            )
        for container in found:
            await self.remove(container.id)
        return len(found)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            await self._client.close()
            self._client = None
