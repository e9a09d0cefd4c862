"""The Docker Engine API boundary (aiodocker); its errors are translated here."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiodocker

from gateway.errors import ContainerNotFound, DockerError, DockerUnavailable

# Docker's own rule for container names; anything else is never sent to the API.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
_TIMEOUT = 10.0


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
    labels: Mapping[str, str] = field(default_factory=dict)


class Engine:
    """A lazily connected Engine API client that reconnects after failures."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._client: aiodocker.Docker | None = None

    def _docker(self) -> aiodocker.Docker:
        if self._client is None:
            try:
                self._client = aiodocker.Docker(url=self._url)
            except ValueError as exc:
                raise DockerUnavailable("no Docker engine socket found") from exc
        return self._client

    async def inspect(self, name: str) -> ContainerInfo:
        """Resolve a container by exact name; raise ContainerNotFound or DockerUnavailable."""
        if not valid_name(name):
            raise ContainerNotFound(name)
        try:
            container = await asyncio.wait_for(self._docker().containers.get(name), _TIMEOUT)
        except aiodocker.DockerError as exc:
            raise self._translate(exc, name) from exc
        except (TimeoutError, OSError) as exc:
            raise DockerUnavailable(str(exc)) from exc
        data = container._container  # the inspect document aiodocker already fetched
        if data.get("Name", "").lstrip("/") != name:
            raise ContainerNotFound(name)  # an id prefix, not a name: never resolve by id
        state = data.get("State", {})
        return ContainerInfo(
            id=data["Id"],
            name=name,
            running=bool(state.get("Running")),
            pid=int(state.get("Pid") or 0),
            image=data.get("Config", {}).get("Image", ""),
            image_id=data.get("Image", ""),
            labels=dict(data.get("Config", {}).get("Labels") or {}),
        )

    def _translate(self, exc: aiodocker.DockerError, name: str) -> DockerError:
        if exc.status == 404:
            return ContainerNotFound(name)
        return DockerUnavailable(exc.message)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            await self._client.close()
            self._client = None
