"""The decision core: pure, no I/O, no asyncio.

``decide(policy, request)`` returns ``Allow`` with the grant that allowed it,
or ``Deny`` with a code and a reason. Deny is the default: only a grant that
covers (principal, action, target) allows.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from gateway.policy.compiled import Conditions, Policy, Target

if TYPE_CHECKING:
    from gateway.policy.models import Action


class DenyCode(enum.Enum):
    """Why a request was denied; the session maps each to the client's line."""

    UNKNOWN_ACTION = "unknown action"
    NEEDS_TARGET = "the action needs a target"
    TAKES_NO_TARGET = "the action takes no target"
    NO_ARGS = "the action takes no arguments"
    NOT_GRANTED = "no grant covers this principal, action and target"
    EXPIRED = "the grant that covers this has expired"
    SOURCE = "the grant that covers this does not allow this source address"


class Request(NamedTuple):
    """Who asks for which action on which target, with which extra words."""

    principal: str
    action: str
    target: Target | None = None
    args: tuple[str, ...] = ()
    #: the client's address, for grants with ``from`` (None: unknown, which they refuse)
    source: str | None = None
    #: the time of the request, for grants with ``expires`` (None: now)
    now: datetime | None = None


class Allow(NamedTuple):
    """Allowed by ``grant`` (``file:line``), under its ``conditions`` (reason, approval, moderation)."""

    spec: Action
    grant: str
    conditions: Conditions | None = None


class Deny(NamedTuple):
    """Denied, with a code; ``reason`` is the detail for the audit log."""

    code: DenyCode
    reason: str


Decision = Allow | Deny

#: the "grant" named by a help request's allow record: help needs none
HELP_GRANT = "built-in: every principal with a key"
#: the "grant" of a moderator's approve request without an approve grant: list and watch only
MODERATOR_GRANT = "built-in: a moderator named by the policy (list and watch only)"


def decide(policy: Policy, request: Request) -> Decision:
    """Decide *request* against *policy*; deny unless a grant covers it."""
    spec = policy.actions.get(request.action)
    if spec is None:
        return Deny(DenyCode.UNKNOWN_ACTION, f"no action named {request.action!r}")
    shape = _check_shape(spec, request)
    if shape is not None:
        return shape
    if spec.kind == "help":  # the caller's own grants: every principal with a key may ask
        return Allow(spec, HELP_GRANT)
    now = request.now or datetime.now(UTC)
    near_miss: Deny | None = None
    grants = policy.lookup.get((request.principal, request.action))
    for grant in grants.covering(request.target) if grants is not None else ():
        if grant.expired(now):
            near_miss = Deny(DenyCode.EXPIRED, f"{DenyCode.EXPIRED.value} ({grant.where}, {grant.expires})")
        elif not grant.admits(request.source):
            near_miss = near_miss or Deny(DenyCode.SOURCE, f"{DenyCode.SOURCE.value} ({grant.where})")
        else:
            return Allow(spec, grant.where, grant.conditions)
    if near_miss is None and spec.kind == "approve" and request.principal in policy.moderators:
        return Allow(spec, MODERATOR_GRANT)  # a moderator the policy names may list and watch, no more
    return near_miss or Deny(DenyCode.NOT_GRANTED, DenyCode.NOT_GRANTED.value)


def _check_shape(spec: Action, request: Request) -> Deny | None:
    if spec.needs_target and request.target is None:
        return Deny(DenyCode.NEEDS_TARGET, DenyCode.NEEDS_TARGET.value)
    if not spec.needs_target and request.target is not None:
        return Deny(DenyCode.TAKES_NO_TARGET, DenyCode.TAKES_NO_TARGET.value)
    if request.args and not spec.accepts_args:
        return Deny(DenyCode.NO_ARGS, DenyCode.NO_ARGS.value)
    return None
