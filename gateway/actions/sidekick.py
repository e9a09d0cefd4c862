"""``type: sidekick``: ``docker run --rm --volumes-from TARGET IMAGE COMMAND``.

Through the Engine API: a uniquely named, labelled, never privileged
container with the target's volumes and no network by default. Its output
streams back (stdout and stderr apart without a PTY), its exit status becomes
the SSH exit status, and a hang-up kills and removes it.
"""

from __future__ import annotations

import secrets
import signal
from typing import Any

from aiodocker.stream import Stream

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.channel import client_input, drain, send, until_hangup
from gateway.docker.sidekick import Sidekick, close_stdin
from gateway.docker.streams import STDERR
from gateway.errors import ImageNotFound, Refusal
from gateway.events import RefusalKind
from gateway.policy.models import SidekickAction
from gateway.tasks import Tasks

DRAIN_SECONDS = 5.0


def sidekick_config(ctx: ActionContext, spec: SidekickAction, tty: bool) -> dict[str, Any]:
    """The create document: the target's volumes, no privileges, our labels."""
    assert ctx.container is not None
    volumes = f"{ctx.container.id}:ro" if spec.volumes_read_only else ctx.container.id
    env = [f"{k}={v}" for k, v in ctx.clean_env().items() if k in ("TERM", "LANG")]
    cols, rows, _, _ = ctx.terminal_size()
    return {
        "Image": spec.image or ctx.container.image_id,
        "Cmd": [*spec.command, *ctx.args],
        "Env": env,
        "Tty": tty,
        "OpenStdin": spec.interactive,
        "StdinOnce": spec.interactive,
        "AttachStdin": spec.interactive,
        "AttachStdout": True,
        "AttachStderr": True,
        "Labels": {
            **ctx.sidekick_labels,
            "org.gateway.session": ctx.session_id,
            "org.gateway.target": ctx.container.id,
        },
        "HostConfig": {
            "VolumesFrom": [volumes],
            "AutoRemove": True,
            "NetworkMode": spec.network,
            "Privileged": False,
            "SecurityOpt": ["no-new-privileges"],
            **({"ConsoleSize": [max(rows, 1), max(cols, 1)]} if tty else {}),
        },
    }


@runs(SidekickAction)
async def run_sidekick(ctx: ActionContext) -> Exit:
    """Create, attach, wait, start; stream; remove."""
    assert isinstance(ctx.spec, SidekickAction)
    assert ctx.container is not None
    spec = ctx.spec
    tty = spec.interactive and ctx.process.get_terminal_type() is not None
    name = f"gw-sidekick-{ctx.session_id}-{secrets.token_hex(3)}"
    try:
        sidekick = await Sidekick.create(ctx.engine, sidekick_config(ctx, spec, tty), name)
    except ImageNotFound:
        image = spec.image or ctx.container.image
        raise Refusal(
            f"gateway: the sidekick image {image} is not on this host",
            reason="image missing",
            kind=RefusalKind.ACTION,
        ) from None
    ctx.summary["sidekick"] = sidekick.id
    try:
        return await _run(ctx, sidekick, tty)
    finally:
        await sidekick.remove()


async def _run(ctx: ActionContext, sidekick: Sidekick, tty: bool) -> Exit:
    spec = ctx.spec
    assert isinstance(spec, SidekickAction)
    async with (
        sidekick.attach(stdin=spec.interactive) as stream,
        Tasks(f"sidekick:{ctx.session_id}") as tasks,
    ):
        waiter = tasks.spawn(sidekick.wait(), "wait")
        await sidekick.start()
        if tty:
            cols, rows, _, _ = ctx.terminal_size()
            await sidekick.resize(cols, rows)
        out = tasks.spawn(pump_output(ctx, stream), "out")
        if spec.interactive:
            tasks.spawn(_input(ctx, sidekick, stream, tty), "in")
        if not await until_hangup(ctx, tasks, [waiter]):
            await sidekick.remove()
            return Exit(255)
        await drain([out], DRAIN_SECONDS)
        return Exit(waiter.result())


async def pump_output(ctx: ActionContext, stream: Stream) -> None:
    """The stream's output to the client, stdout and stderr apart."""
    while (message := await stream.read_out()) is not None:
        if not await send(ctx, message.data, stderr=message.stream == STDERR):
            return


async def _input(ctx: ActionContext, sidekick: Sidekick, stream: Stream, tty: bool) -> None:
    async def resize(cols: int, rows: int, _x: int, _y: int) -> None:
        await sidekick.resize(cols, rows)

    async def deliver(sig: signal.Signals) -> None:
        await ctx.engine.kill(sidekick.id, sig.name)

    async for data in client_input(ctx, on_resize=resize, on_signal=deliver):
        await stream.write_in(data)
    if not tty:
        await close_stdin(stream)
