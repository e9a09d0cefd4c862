"""A fixture that sits between the gateway and the Engine API and forces a race.

It forwards every request to the real engine, except that a container
inspect answer gets its ``State.Pid`` replaced, as if the container's process
had exited and a host process had taken its number between the answer and
nsenter. Plain requests only (no hijacked streams): enough for the shell path.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

ENGINE = "/var/run/docker.sock"
INSPECT = re.compile(r"^/(v[0-9.]+/)?containers/[^/]+/json$")


class EngineProxy:
    """An Engine API proxy on a unix socket, in a thread of its own."""

    def __init__(self, socket_path: Path, rewrite_pid: Callable[[], int]) -> None:
        self.socket_path = socket_path
        self.rewrite_pid = rewrite_pid
        self.rewrites = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        """The DOCKER_HOST value for the gateway."""
        return f"unix://{self.socket_path}"

    def __enter__(self) -> EngineProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._client.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._client = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=ENGINE))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(self.socket_path)).start()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._client.request(
            request.method, f"http://docker{request.rel_url}", data=body or None, headers=headers
        ) as upstream:
            data = await upstream.read()
            if request.method == "GET" and INSPECT.match(request.path) and upstream.status == 200:
                document = json.loads(data)
                document["State"]["Pid"] = self.rewrite_pid()
                self.rewrites += 1
                data = json.dumps(document).encode()
            kept = {"Content-Type": upstream.headers.get("Content-Type", "application/json")}
            return web.Response(status=upstream.status, body=data, headers=kept)
