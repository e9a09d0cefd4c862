"""``type: help``: ``ssh help@HOST`` lists the caller's own grants, and how to use each.

Only the caller's: each action, its targets (the running containers they
cover marked), the conditions (reason, approval, moderation), the sources and
the expiry. Nothing about other principals, and nothing a refusal would not
already say: a target that is not running is listed as the pattern it is.
"""

from __future__ import annotations

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.channel import send
from gateway.errors import DockerError
from gateway.policy.compiled import CompiledGrant, Policy, Target
from gateway.policy.models import HelpAction
from gateway.textsafe import visible


def usage(name: str, policy: Policy) -> str:
    """How to call action *name*: ``ssh -t debug@HOST TARGET [ARGS...]``."""
    spec = policy.actions[name]
    pty = "-t " if spec.wants_pty else ""
    words = " TARGET" if spec.needs_target else ""
    words += " [ARGS...]" if spec.accepts_args else ""
    return f"ssh {pty}{name}@HOST{words}"


def _targets(grant: CompiledGrant, running: list[tuple[str, dict[str, str]]]) -> str:
    if not grant.targets:
        return "-"
    up = [n for n, labels in running if grant.covers(Target(n, labels))]
    shown = ", ".join(m.pattern for m in grant.targets)
    return f"{shown} (running: {', '.join(up) or 'none'})"


def lines(policy: Policy, principal: str, running: list[tuple[str, dict[str, str]]]) -> list[str]:
    """One line per (action, grant) of *principal*."""
    out = []
    for grant in policy.grants:
        if principal not in grant.principals:
            continue
        for name in sorted(grant.actions):
            spec = policy.actions[name]
            parts = [usage(name, policy), spec.kind]
            if grant.targets:
                parts.append(f"targets: {_targets(grant, running)}")
            if grant.conditions is not None:
                parts.append(grant.conditions.describe())
            if grant.sources:
                parts.append("from " + ", ".join(str(n) for n in grant.sources))
            if grant.expires is not None:
                parts.append(f"until {grant.expires.isoformat()}")
            out.append("  ".join(visible(p) for p in parts))
    return out


@runs(HelpAction)
async def run_help(ctx: ActionContext) -> Exit:
    """Print the caller's grants."""
    policy = ctx.policy
    if policy is None:
        return Exit(1)
    try:
        running = [(n, dict(labels)) for n, labels in await ctx.engine.running()]
    except DockerError:
        running = []
    found = lines(policy, ctx.principal, running)
    head = f"what {ctx.principal} may do (policy {policy.digest[:12]}):"
    text = "\n".join(
        [head, *(f"  {line}" for line in found)] if found else [f"{ctx.principal} may do nothing"]
    )
    await send(ctx, (text + "\n").encode())
    return Exit(0)
