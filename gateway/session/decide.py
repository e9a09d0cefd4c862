"""Deciding a session request: parse, resolve the target, ask the policy, pin the container.

Everything here happens before the allow record; a Refusal raised here means
nothing ran. The result is a Plan: what runs, under which grant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    #: the compiled policy that decided, and the request it decided: a decision is a value
    policy: Policy | None = None
    request: Request | None = None

    @property
    def digest(self) -> str:
        """The digest of the policy that allowed this plan."""
        return self.policy.digest if self.policy is not None else ""

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
    policy = rt.policy  # the one policy this request is decided by, whatever a reload does meanwhile
    subsystem = requested_subsystem(process.subsystem)
    if subsystem is not None:
        name = printable(subsystem)
        line = messages.SFTP_UNAVAILABLE if name == "sftp" else f"gateway: subsystem {name} is not available"
        raise Refusal(line, reason=f"subsystem {name}", kind=RefusalKind.SUBSYSTEM)
    command = parse_command(process.command)
    if named is not None:  # ssh ACTION+TARGET@HOST [ARGS]: the same as ssh ACTION@HOST TARGET [ARGS]
        command = Command(named, command.words)
    spec = policy.actions.get(action)
    if spec is not None and spec.takes_query:
        command = Command(None, command.words)  # every word is the query
    fields.update(target=command.target, args=list(command.args) or None)
    if is_legacy_scp(command):
        raise Refusal("gateway: scp is not available", reason="legacy scp", kind=RefusalKind.SCP)
    principal = conn.principal or ""
    container = None
    if spec is not None and spec.needs_target and command.target is not None:
        container = await _resolve(rt, policy, principal, action, command.target, fields)
    wanted = Target(container.name, container.labels) if container else _typed_target(command)
    request = Request(principal, action, wanted, command.args, source=conn.peer_host)
    decision = decide(policy, request)
    if not isinstance(decision, Allow):
        line = messages.deny_line(decision.code, action, command) + help_hint(policy)
        raise Refusal(line, reason=decision.reason, kind=RefusalKind.ACTION)
    validate(decision.spec, command.args)
    if container is not None and not container.running and not decision.spec.runs_on_stopped:
        line = decision.spec.stopped_line(action, container.name)
        raise Refusal(line, reason="container not running", kind=RefusalKind.ACTION)
    pinned = prepare(decision.spec, container) if container is not None else None
    return Plan(
        decision.spec, decision.grant, command, container, pinned, decision.conditions, policy, request
    )


def redecide(plan: Plan, current: Policy, fields: dict[str, Any]) -> Plan:
    """*plan* decided again by the policy in force now (after a wait for approvers or moderators).

    The same request must be allowed by the same action under the same conditions,
    or it is refused: a grant removed (or changed) during the wait never runs.
    *fields* gets the digest that decided first, for the refusal's record.
    """
    if plan.policy is None or plan.request is None or current is plan.policy:
        return plan
    decision = decide(current, plan.request)
    if isinstance(decision, Allow) and (decision.spec, decision.conditions) == (plan.spec, plan.conditions):
        return replace(plan, grant=decision.grant, policy=current)
    fields["decided_policy"] = plan.policy.digest
    what = f"{plan.request.action} {plan.request.target.name if plan.request.target else ''}".rstrip()
    why = decision.reason if not isinstance(decision, Allow) else "the grant's action or conditions changed"
    raise Refusal(
        f"gateway: {what}: permission denied: the policy changed while it waited; ask again",
        reason=f"decided by policy {plan.policy.digest[:12]}, refused by policy {current.digest[:12]}: {why}",
        kind=RefusalKind.ACTION,
    )


async def _resolve(
    rt: Runtime, policy: Policy, principal: str, action: str, name: str, fields: dict[str, Any]
) -> ContainerInfo | None:
    """Resolve the target only for a principal who holds this action at all."""
    if (principal, action) not in policy.lookup:
        return None
    try:
        info = await rt.engine.inspect(name)
    except ContainerNotFound:
        line = messages.denied(action, name) + help_hint(policy)
        raise Refusal(line, reason="no such container", kind=RefusalKind.ACTION) from None
    except DockerUnavailable as exc:
        raise Refusal(
            messages.ENGINE_DOWN, reason=f"docker unavailable: {exc}", kind=RefusalKind.ACTION
        ) from None
    fields.update(container=info.id, image=info.image)
    return info


def help_hint(policy: Policy) -> str:
    """`` (ssh help@HOST lists what you may do)``: every principal with a key may ask for help, so the
    hint never points to a command the caller may not have."""
    for name, spec in policy.actions.items():
        if isinstance(spec, HelpAction):
            return f" (ssh {name}@HOST lists what you may do)"
    return ""


def _typed_target(command: Command) -> Target | None:
    return Target(command.target) if command.target is not None else None
