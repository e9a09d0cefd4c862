"""``type: shell``: a command inside the target container.

``via: nsenter`` (the default): the container's main process is pinned and
checked before anything is entered (``confine.pin``); what ``docker exec``
would give a process in it is read from that process (``confine.profile``:
its bounding set, ``no_new_privs`` and seccomp filters); the spawner
(``confine.spawn``) starts the child in the pinned namespaces, in the
container's cgroups and a cgroup of the session's own, with a PTY in the
container's devpts, under that confinement. ``privileged: true`` skips the
confinement (host root's capabilities, no seccomp), as the seed did. When the
session ends, every process it left behind is killed and counted
(``ended_processes`` in the session-end record).

``via: exec``: the Engine API's exec (``exec.run_exec``); the container's own
user, capabilities, seccomp and AppArmor profiles and cgroup stay in force.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Any

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.bridge import Pipes, bridge_pipes, bridge_pty
from gateway.actions.exec import run_exec
from gateway.confine import ContainerChanged, Pinned, SessionCgroup, pin
from gateway.confine.cgroups import CgroupError, mounts
from gateway.confine.profile import ProfileError
from gateway.confine.profile import read as read_profile
from gateway.confine.spawn import SPAWNER, Confined
from gateway.confine.warm import WARMER
from gateway.docker import ContainerInfo
from gateway.errors import Refusal
from gateway.events import RefusalKind
from gateway.policy.models import Action, ShellAction


def pin_target(spec: Action, container: ContainerInfo) -> Pinned | None:
    """Before the allow record: pin the container's process, or refuse (nothing runs)."""
    if not isinstance(spec, ShellAction) or spec.via != "nsenter":
        return None
    try:
        return pin(container.pid, container.id)
    except ContainerChanged as exc:
        raise Refusal(
            f"gateway: {container.name} changed while connecting; try again",
            reason=f"container changed: {exc}",
            kind=RefusalKind.ACTION,
        ) from None


def _refuse(container: str, reason: str) -> Refusal:
    return Refusal(
        f"gateway: {container}: could not confine the session; nothing was run",
        reason=reason,
        kind=RefusalKind.ACTION,
    )


async def confinement(spec: ShellAction, pinned: Pinned, container: str) -> dict[str, Any] | None:
    """What the child takes on before exec (None: privileged, host root as it is)."""
    if spec.privileged:
        return None
    try:
        found = await read_profile(pinned)
    except ProfileError as exc:
        raise _refuse(container, f"confinement: {exc}") from None
    return (found.for_user if spec.user is not None else found).wire


@runs(ShellAction, prepare=pin_target)
async def run_shell(ctx: ActionContext) -> Exit:
    """Run the shell (or, where allowed, the client's argv) in the container."""
    assert isinstance(ctx.spec, ShellAction)
    assert ctx.container is not None
    command = list(ctx.args) if ctx.args else list(ctx.spec.command)
    if ctx.spec.via == "exec":
        return await run_exec(ctx, command)
    assert ctx.pinned is not None
    pinned, name = ctx.pinned, ctx.container.name
    confine = await confinement(ctx.spec, pinned, name)
    try:
        own = f"gateway-{ctx.session_id}-{secrets.token_hex(4)}"
        cgroup = SessionCgroup.create(pinned.cgroups, own, mounts())
    except (CgroupError, OSError) as exc:
        raise _refuse(name, f"cgroup: {exc}") from None
    try:
        child, pipes = await _start(ctx, pinned, cgroup, command, confine)
        if pipes is not None:
            return await bridge_pipes(ctx, pipes, child)
        assert child.master is not None
        return await bridge_pty(ctx, child.master, child)
    finally:
        ctx.summary["ended_processes"] = await cgroup.end()


async def _start(
    ctx: ActionContext,
    pinned: Pinned,
    cgroup: SessionCgroup,
    command: list[str],
    confine: dict[str, Any] | None,
) -> tuple[Confined, Pipes | None]:
    """Hand the request to the spawner: the child, started, and its pipes (None on a PTY)."""
    assert isinstance(ctx.spec, ShellAction)
    assert ctx.container is not None
    joins: list[int] = []
    pipes = None if ctx.process.get_terminal_type() is not None else Pipes()
    try:
        joins = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in cgroup.join]
        request = {
            "argv": command,
            "env": ctx.clean_env(),
            "ns": list(pinned.namespaces),
            "cgroups": len(joins),
            "user": ctx.spec.user,
            "confine": confine,
            "pty": list(ctx.terminal_size()) if pipes is None else None,
        }
        fds = [*pinned.namespaces.values(), *joins, *(pipes.child if pipes else ())]
        try:
            child = await SPAWNER.spawn(request, fds)
        finally:
            WARMER.done()
    except BaseException as exc:
        if pipes is not None:
            pipes.close()
        if isinstance(exc, OSError):
            raise _refuse(ctx.container.name, f"cgroup: {exc}") from None
        raise
    finally:
        for fd in joins:
            with contextlib.suppress(OSError):
                os.close(fd)
    if pipes is not None:
        pipes.close_child()
    return child, pipes
