"""``type: backup``: a tar stream of the target's paths on stdout.

It uses the Engine API's archive endpoint rather than a ``tar`` sidekick: no
image is needed in the target (lean images may have no tar), nothing is
started, it works on a stopped container too, and Docker reads the volume
itself. Several paths are joined into one tar stream by dropping the end
blocks between them. The stream is recorded as size and SHA-256 only.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.channel import send, until_hangup
from gateway.docker.streams import archive
from gateway.policy.models import BackupAction
from gateway.tasks import Tasks

BATCH = 1 << 20


@runs(BackupAction)
async def run_backup(ctx: ActionContext) -> Exit:
    """Stream every path as one tar archive; 255 when the client hangs up mid-stream."""
    assert isinstance(ctx.spec, BackupAction)
    async with Tasks(f"backup:{ctx.session_id}") as tasks:
        pump = tasks.spawn(_pump(ctx), "pump")
        if not await until_hangup(ctx, tasks, [pump]):
            return Exit(255)
        return Exit(0 if pump.result() else 255)


async def _pump(ctx: ActionContext) -> bool:
    spec = ctx.spec
    assert isinstance(spec, BackupAction)
    assert ctx.container is not None
    digest = hashlib.sha256()
    size = 0
    for index, path in enumerate(spec.paths):
        async for chunk in coalesce(
            archive(ctx.engine, ctx.container.id, path, last=index == len(spec.paths) - 1)
        ):
            digest.update(chunk)
            size += len(chunk)
            if not await send(ctx, chunk):
                return False
    ctx.summary.update(stream_sha256=digest.hexdigest(), stream_size=size)
    return True


async def coalesce(pieces: AsyncIterator[bytes], at_least: int = BATCH) -> AsyncIterator[bytes]:
    """Join small pieces: fewer, larger writes cost less per byte (bounded: BATCH plus one piece)."""
    pending = bytearray()
    async for piece in pieces:
        pending += piece
        if len(pending) >= at_least:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)
