"""``type: shell``: a command inside the target's namespaces, through nsenter.

The child is host root with full capabilities inside the container's mount,
UTS, IPC, network and PID namespaces: the container's seccomp, AppArmor,
capability drops and cgroup do not apply (see docs in the README).
"""

from __future__ import annotations

from gateway.actions.base import ActionContext, Exit
from gateway.actions.bridge import run_local
from gateway.policy.models import ShellAction

NSENTER = ("nsenter", "--mount", "--uts", "--ipc", "--net", "--pid")


def nsenter_argv(pid: int, command: list[str]) -> list[str]:
    """The nsenter argv; ``--`` keeps the client's words from being read as options."""
    return [NSENTER[0], "--target", str(pid), *NSENTER[1:], "--", *command]


async def run_shell(ctx: ActionContext) -> Exit:
    """Run the shell (or, where allowed, the client's argv) in the container."""
    assert isinstance(ctx.spec, ShellAction)
    assert ctx.container is not None
    command = list(ctx.args) if ctx.args else list(ctx.spec.command)
    return await run_local(ctx, nsenter_argv(ctx.container.pid, command))
