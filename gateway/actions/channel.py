"""The SSH side of every runner: send output, read input, notice the hang-up.

Every byte that crosses the channel passes here, so this is where the
recorder is tapped and the traffic counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from gateway.actions.base import ActionContext
from gateway.channel import Break, Resize, Signal
from gateway.tasks import Tasks

CHUNK = 65536
# Signals a client may deliver (RFC 4254 names); anything else is ignored.
CLIENT_SIGNALS = frozenset({"HUP", "INT", "QUIT", "TERM", "KILL", "USR1", "USR2", "ALRM", "PIPE"})

OnResize = Callable[[int, int, int, int], Awaitable[None]]
OnSignal = Callable[[signal.Signals], Awaitable[None]]


def deliver(ctx: ActionContext, data: bytes, *, stderr: bool = False) -> bool:
    """Record and queue *data* for the client, without waiting; False once the channel is gone."""
    ctx.recorder.output(data)
    if ctx.recorder.full:
        return False  # what was not recorded is not shown: the session is ending
    ctx.traffic.bytes_out += len(data)
    ctx.traffic.last_activity = time.monotonic()
    try:
        (ctx.process.stderr if stderr else ctx.process.stdout).write(data)
    except OSError:  # the adapters turn their transport's errors into OSError
        return False
    return True


async def drained(ctx: ActionContext, *, stderr: bool = False) -> bool:
    """Wait for the client's window; False once the channel is gone."""
    try:
        await (ctx.process.stderr if stderr else ctx.process.stdout).drain()
    except OSError:
        return False
    return True


async def send(ctx: ActionContext, data: bytes, *, stderr: bool = False) -> bool:
    """Record and send *data*, waiting for the client's window; False once the channel is gone."""
    return deliver(ctx, data, stderr=stderr) and await drained(ctx, stderr=stderr)


async def _ignore(*_args: Any) -> None:
    return None


async def client_input(
    ctx: ActionContext,
    *,
    on_resize: OnResize = _ignore,
    on_signal: OnSignal = _ignore,
    echo_off: Callable[[], bool] = lambda: False,
) -> AsyncIterator[bytes]:
    """What the client types, recorded unless *echo_off*; resizes and signals go to the callbacks."""
    while True:
        data = await ctx.process.receive(CHUNK)
        if isinstance(data, Resize):
            ctx.recorder.resize(data.cols, data.rows)
            await on_resize(data.cols, data.rows, data.xpix, data.ypix)
            continue
        if isinstance(data, Signal):
            if data.name in CLIENT_SIGNALS:
                await on_signal(signal.Signals[f"SIG{data.name}"])
            continue
        if isinstance(data, Break):
            continue
        if not data:
            return
        took(ctx, data, echo_off=echo_off)
        yield data


def took(ctx: ActionContext, data: bytes, *, echo_off: Callable[[], bool]) -> None:
    """What the client typed: recorded (unless *echo_off*: a password) and counted."""
    if echo_off():
        ctx.recorder.withhold_input()
    else:
        ctx.recorder.input(data)
    ctx.traffic.bytes_in += len(data)
    ctx.traffic.last_activity = time.monotonic()


async def until_hangup(ctx: ActionContext, tasks: Tasks, work: list[asyncio.Task[Any]]) -> bool:
    """Wait for every task in *work*, or for the channel to close; True if the work finished.

    asyncssh does not cancel a session when the client goes away, so each
    runner races its work against the channel closing.
    """
    closed = tasks.spawn(ctx.process.wait_closed(), "closed")
    finished = tasks.spawn(asyncio.wait(work), "work")
    done, _ = await asyncio.wait({closed, finished}, return_when=asyncio.FIRST_COMPLETED)
    return finished in done


async def drain(tasks: list[asyncio.Task[Any]], seconds: float) -> None:
    """Give output pumps a bounded time to finish after the work ended."""
    with contextlib.suppress(ValueError):
        await asyncio.wait(tasks, timeout=seconds)
