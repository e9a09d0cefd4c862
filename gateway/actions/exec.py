"""``type: shell`` with ``via: exec``: the Engine API's exec, point for point like nsenter.

PTY and resize, signals (delivered through a pidfd), the exit status, stdin
EOF without a PTY, stderr apart, recording with input, and the idle and
duration limits (the session's watchdog closes the channel; the hang-up
kills the process) all behave as for ``via: nsenter``.
"""

from __future__ import annotations

import signal

from aiodocker.stream import Stream

from gateway.actions.base import ActionContext, Exit
from gateway.actions.channel import client_input, drain, until_hangup
from gateway.actions.sidekick import pump_output
from gateway.docker.execs import Exec
from gateway.docker.sidekick import close_stdin
from gateway.policy.models import ShellAction
from gateway.tasks import Tasks

DRAIN_SECONDS = 5.0


async def run_exec(ctx: ActionContext, command: list[str]) -> Exit:
    """Run *command* in the target through the Engine API's exec."""
    assert isinstance(ctx.spec, ShellAction)
    assert ctx.container is not None
    tty = ctx.process.get_terminal_type() is not None
    env = {k: v for k, v in ctx.clean_env().items() if k in ("TERM", "LANG")}
    job = await Exec.create(ctx.engine, ctx.container.id, command, tty=tty, env=env, user=ctx.spec.user or "")
    ctx.summary["exec"] = job.id
    try:
        return await _run(ctx, job, tty)
    finally:
        job.close()


async def _run(ctx: ActionContext, job: Exec, tty: bool) -> Exit:
    async with job.start() as stream, Tasks(f"exec:{ctx.session_id}") as tasks:
        if tty:
            cols, rows, _, _ = ctx.terminal_size()
            await job.resize(cols, rows)
        await job.pin()
        out = tasks.spawn(pump_output(ctx, stream), "out")
        tasks.spawn(_input(ctx, job, stream, tty), "in")
        if not await until_hangup(ctx, tasks, [out]):
            job.signal(signal.SIGHUP)
            job.signal(signal.SIGKILL)
            return Exit(255)
        await drain([out], DRAIN_SECONDS)
    code = await job.exit_code()
    return Exit.from_returncode(code) if code is None or code < 128 else _by_signal(code)


def _by_signal(code: int) -> Exit:
    """Docker reports a signal death as 128+N: say which signal, as nsenter's path does."""
    try:
        return Exit(code, signal.Signals(code - 128).name.removeprefix("SIG"))
    except ValueError:
        return Exit(code)


async def _input(ctx: ActionContext, job: Exec, stream: Stream, tty: bool) -> None:
    async def resize(cols: int, rows: int, _x: int, _y: int) -> None:
        await job.resize(cols, rows)

    async def deliver(sig: signal.Signals) -> None:
        job.signal(sig)

    async for data in client_input(ctx, on_resize=resize, on_signal=deliver):
        await stream.write_in(data)
    if not tty:
        await close_stdin(stream)
