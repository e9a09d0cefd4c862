"""``type: host``: a fixed argv on the Docker host."""

from __future__ import annotations

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.bridge import run_local
from gateway.policy.models import HostAction


@runs(HostAction)
async def run_host(ctx: ActionContext) -> Exit:
    """Run the action's fixed command; the client can add nothing to it."""
    assert isinstance(ctx.spec, HostAction)
    return await run_local(ctx, list(ctx.spec.command))
