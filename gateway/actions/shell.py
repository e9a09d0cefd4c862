"""``type: shell``: a command inside the target container.

``via: nsenter`` (the default): the container's main process is pinned and
checked before anything is entered (``confine.pin``), the child joins the
container's cgroups and a cgroup of the session's own (``confine.cgroups``),
and nsenter enters the pinned namespaces by descriptor. When the session
ends, every process it left behind is killed and counted
(``ended_processes`` in the session-end record). The child is host root with
full capabilities inside the container's namespaces: seccomp, AppArmor and
capability drops do not apply (see the README's security notes).

``via: exec``: the Engine API's exec (``exec.run_exec``); the container's own
user, capabilities, seccomp and AppArmor profiles and cgroup stay in force.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from gateway.actions.base import ActionContext, Exit
from gateway.actions.bridge import run_local
from gateway.actions.exec import run_exec
from gateway.confine import ContainerChanged, Pinned, SessionCgroup, launcher_argv, pin
from gateway.confine.cgroups import CgroupError, mounts
from gateway.docker import ContainerInfo
from gateway.errors import Refusal
from gateway.policy.models import Action, ShellAction


def nsenter_argv(pinned: Pinned, command: list[str], user: str | None = None) -> list[str]:
    """The nsenter argv: namespaces by descriptor; ``--`` keeps the client's words from being options."""
    ids: list[str] = []
    if user is not None:
        uid, _, gid = user.partition(":")
        ids = ["--setuid", uid, "--setgid", gid or uid]
    return ["nsenter", *pinned.nsenter_options(), *ids, "--", *command]


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
            kind="action",
        ) from None


def _numeric_user(pinned: Pinned, user: str | None) -> str | None:
    """A user name resolved in the container's own /etc/passwd (uid:gid), or the number as given."""
    if user is None or user[0].isdigit():
        return user
    try:
        passwd = Path(f"/proc/{pinned.pid}/root/etc/passwd")
        with passwd.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split(":")
                if len(fields) >= 4 and fields[0] == user:
                    return f"{int(fields[2])}:{int(fields[3])}"
    except (OSError, ValueError):
        pass
    raise Refusal(f"gateway: no user {user} in the container", reason=f"unknown user {user!r}", kind="action")


async def run_shell(ctx: ActionContext) -> Exit:
    """Run the shell (or, where allowed, the client's argv) in the container."""
    assert isinstance(ctx.spec, ShellAction)
    assert ctx.container is not None
    command = list(ctx.args) if ctx.args else list(ctx.spec.command)
    if ctx.spec.via == "exec":
        return await run_exec(ctx, command)
    assert ctx.pinned is not None
    pinned = ctx.pinned
    user = _numeric_user(pinned, ctx.spec.user)
    try:
        name = f"gateway-{ctx.session_id}-{secrets.token_hex(4)}"
        cgroup = SessionCgroup.create(pinned.cgroups, name, mounts())
    except (CgroupError, OSError) as exc:
        raise Refusal(
            f"gateway: {ctx.container.name}: could not confine the session; nothing was run",
            reason=f"cgroup: {exc}",
            kind="action",
        ) from None
    try:
        argv = launcher_argv(cgroup.join, nsenter_argv(pinned, command, user))
        return await run_local(ctx, argv, pass_fds=pinned.fds)
    finally:
        ctx.summary["ended_processes"] = await cgroup.end()
