"""``type: signal``: ``docker kill -s SIGNAL TARGET``."""

from __future__ import annotations

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.channel import send
from gateway.policy.models import SignalAction


@runs(SignalAction)
async def run_signal(ctx: ActionContext) -> Exit:
    """Send the policy's signal to the target's main process."""
    assert isinstance(ctx.spec, SignalAction)
    assert ctx.container is not None
    await ctx.engine.kill(ctx.container.id, f"SIG{ctx.spec.signal}")
    await send(ctx, f"sent SIG{ctx.spec.signal} to {ctx.container.name}\n".encode())
    return Exit(0)
