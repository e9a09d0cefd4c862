"""Streamed Engine API reads: container logs (demultiplexed) and archives.

Nothing here buffers a whole stream: chunks are yielded as they arrive, and
the caller's ``drain()`` on the SSH channel is the back-pressure.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from gateway.docker import rawhttp
from gateway.docker.engine import Engine, translated

CHUNK = 65536
_HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2
_TAR_END = 1024  # two zero blocks close a tar stream (Go's archive/tar writes no padding)


async def _demux(content: aiohttp.StreamReader) -> AsyncIterator[tuple[int, bytes]]:
    """Split Docker's multiplexed stream (8-byte header: stream, 0, 0, 0, size)."""
    while True:
        try:
            header = await content.readexactly(_HEADER.size)
        except Exception:  # IncompleteReadError at the end of the stream
            return
        stream, size = _HEADER.unpack(header)
        while size:
            data = await content.read(min(size, CHUNK))
            if not data:
                return
            size -= len(data)
            yield (STDERR if stream == STDERR else STDOUT), data


async def logs(
    engine: Engine, container_id: str, *, tail: int | str, follow: bool, timestamps: bool, tty: bool
) -> AsyncIterator[tuple[int, bytes]]:
    """The container's log as (stream, bytes); a TTY container's log is all stdout."""
    params: dict[str, Any] = {
        "stdout": "1",
        "stderr": "1",
        "follow": "1" if follow else "0",
        "tail": str(tail),
        "timestamps": "1" if timestamps else "0",
    }
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with translated(container_id):
        query = engine.client._query(f"containers/{container_id}/logs", params=params, timeout=timeout)
        async with query as response:
            if tty:
                async for chunk in response.content.iter_chunked(CHUNK):
                    yield STDOUT, chunk
                return
            async for item in _demux(response.content):
                yield item


async def archive(engine: Engine, container_id: str, path: str, *, last: bool) -> AsyncIterator[bytes]:
    """A tar stream of *path*; unless *last*, without its end blocks, so streams concatenate."""
    held = b""
    async for chunk in _archive_body(engine, container_id, path):
        if last:
            yield chunk
            continue
        held += chunk
        if len(held) > _TAR_END:
            yield held[:-_TAR_END]
            held = held[-_TAR_END:]
    if held.strip(b"\0"):
        yield held  # not the end blocks we expected: keep every byte


async def _archive_body(engine: Engine, container_id: str, path: str) -> AsyncIterator[bytes]:
    socket_path = engine.unix_socket
    if socket_path is None:  # a TCP engine: aiohttp's client is fine there
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with translated(container_id):
            query = engine.client._query(
                f"containers/{container_id}/archive", params={"path": path}, timeout=timeout
            )
            async with query as response:
                async for chunk in response.content.iter_chunked(CHUNK):
                    yield chunk
        return
    async for chunk in rawhttp.get(
        socket_path, f"/containers/{container_id}/archive", {"path": path}, container_id
    ):
        yield chunk
