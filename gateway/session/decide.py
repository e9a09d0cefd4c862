"""Deciding a session request: parse, resolve the target, ask the policy, pin the container.

Everything here happens before the allow record; a Refusal raised here means
nothing ran. The result is a Plan: what runs, under which grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.actions import prepare, validate
from gateway.channel import Channel
from gateway.command import Command, is_legacy_scp, parse_command, printable
from gateway.confine import Pinned
from gateway.docker import ContainerInfo
from gateway.errors import ContainerNotFound, DockerUnavailable, Refusal
from gateway.events import RefusalKind
from gateway.policy import Allow, Request, Target, decide
from gateway.policy.compiled import Conditions, Policy
from gateway.policy.models import Action, HelpAction
from gateway.session import messages
from gateway.session.door import Connection
from gateway.sshhooks import requested_subsystem

if TYPE_CHECKING:
    from gateway.runtime import Runtime


@dataclass(frozen=True)
class Plan:
    """An allowed request, about to run."""

    spec: Action
    grant: str
    command: Command
    container: ContainerInfo | None
    #: the container's process, pinned before the allow record (shell via nsenter)
    pinned: Pinned | None = None
    #: what the grant asks for besides the request (reason, approval, moderation)
    conditions: Conditions | None = None

    def close(self) -> None:
        """Release what the plan holds (the pinned process's descriptors)."""
        if self.pinned is not None:
            self.pinned.close()


async def authorize(
    conn: Connection, process: Channel, fields: dict[str, Any], named: str | None = None
) -> Plan:
    """Decide the request on *process*; raise Refusal. *fields* collects what the audit records name.

    *named* is a target from the login name (``ACTION+TARGET``) or the target picker.
    """
    rt, action = conn.rt, conn.action
    subsystem = requested_subsystem(process.subsystem)
    if subsystem is not None:
        name = printable(subsystem)
        line = messages.SFTP_UNAVAILABLE if name == "sftp" else f"gateway: subsystem {name} is not available"
        raise Refusal(line, reason=f"subsystem {name}", kind=RefusalKind.SUBSYSTEM)
    command = parse_command(process.command)
    if named is not None:  # ssh ACTION+TARGET@HOST [ARGS]: the same as ssh ACTION@HOST TARGET [ARGS]
        command = Command(named, command.words)
    spec = rt.policy.actions.get(action)
    if spec is not None and spec.takes_query:
        command = Command(None, command.words)  # every word is the query
    fields.update(target=command.target, args=list(command.args) or None)
    if is_legacy_scp(command):
        raise Refusal("gateway: scp is not available", reason="legacy scp", kind=RefusalKind.SCP)
    principal = conn.principal or ""
    container = None
    if spec is not None and spec.needs_target and command.target is not None:
        container = await _resolve(rt, principal, action, command.target, fields)
    wanted = Target(container.name, container.labels) if container else _typed_target(command)
    decision = decide(rt.policy, Request(principal, action, wanted, command.args, source=conn.peer_host))
    if not isinstance(decision, Allow):
        line = messages.deny_line(decision.code, action, command) + help_hint(rt.policy, principal)
        raise Refusal(line, reason=decision.reason, kind=RefusalKind.ACTION)
    validate(decision.spec, command.args)
    if container is not None and not container.running and not decision.spec.runs_on_stopped:
        line = decision.spec.stopped_line(action, container.name)
        raise Refusal(line, reason="container not running", kind=RefusalKind.ACTION)
    pinned = prepare(decision.spec, container) if container is not None else None
    return Plan(decision.spec, decision.grant, command, container, pinned, decision.conditions)


async def _resolve(
    rt: Runtime, principal: str, action: str, name: str, fields: dict[str, Any]
) -> ContainerInfo | None:
    """Resolve the target only for a principal who holds this action at all."""
    if (principal, action) not in rt.policy.lookup:
        return None
    try:
        info = await rt.engine.inspect(name)
    except ContainerNotFound:
        line = messages.denied(action, name) + help_hint(rt.policy, principal)
        raise Refusal(line, reason="no such container", kind=RefusalKind.ACTION) from None
    except DockerUnavailable as exc:
        raise Refusal(
            messages.ENGINE_DOWN, reason=f"docker unavailable: {exc}", kind=RefusalKind.ACTION
        ) from None
    fields.update(container=info.id, image=info.image)
    return info


def help_hint(policy: Policy, principal: str) -> str:
    """`` (ssh help@HOST lists what you may do)``: every principal with a key may ask for help."""
    del principal  # help answers everyone: the hint never points to a command the caller may not have
    for name, spec in policy.actions.items():
        if isinstance(spec, HelpAction):
            return f" (ssh {name}@HOST lists what you may do)"
    return ""


def _typed_target(command: Command) -> Target | None:
    return Target(command.target) if command.target is not None else None
