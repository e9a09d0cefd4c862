"""``type: logs``: the target's log lines, stdout and stderr apart, optionally followed."""

from __future__ import annotations

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.channel import send, until_hangup
from gateway.docker.streams import STDERR, logs
from gateway.policy.models import LogsAction
from gateway.tasks import Tasks


@runs(LogsAction)
async def run_logs(ctx: ActionContext) -> Exit:
    """Stream the log; with ``follow``, until the client hangs up."""
    assert isinstance(ctx.spec, LogsAction)
    async with Tasks(f"logs:{ctx.session_id}") as tasks:
        pump = tasks.spawn(_pump(ctx), "pump")
        await until_hangup(ctx, tasks, [pump])
        if pump.done():
            pump.result()  # re-raise an Engine API error
    return Exit(0)


async def _pump(ctx: ActionContext) -> None:
    spec = ctx.spec
    assert isinstance(spec, LogsAction)
    assert ctx.container is not None
    stream = logs(
        ctx.engine,
        ctx.container.id,
        tail=spec.tail,
        follow=spec.follow,
        timestamps=spec.timestamps,
        tty=ctx.container.tty,
    )
    async for kind, data in stream:
        if not await send(ctx, data, stderr=kind == STDERR):
            return
