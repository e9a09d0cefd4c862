"""``type: approve``: the approvers' side of access requests, over plain SSH.

::

    ssh approve@HOST                  the pending requests this principal may approve, and the
                                      moderated sessions they may watch
    ssh approve@HOST --json           the same, one JSON object per request
    ssh approve@HOST R-ID             approve (never one's own request)
    ssh approve@HOST deny R-ID WHY    deny, with a reason the requester sees
    ssh approve@HOST watch R-ID       moderate a moderated session (``actions.moderate``)

Each decision is a ``request.approved`` or ``request.denied`` audit record; a
waiting requester is woken at once. A moderator the policy names may list and
watch without an approve grant, and do nothing else here.
"""

from __future__ import annotations

import contextlib
import json
import time

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.channel import send
from gateway.actions.moderate import moderate
from gateway.approvals import APPROVED, ID_RE, ApprovalError, Approvals, Request
from gateway.command import printable
from gateway.errors import AuditUnavailable, Refusal
from gateway.events import Event, RefusalKind
from gateway.fleet.down import FleetDown, unavailable
from gateway.moderation import Moderated
from gateway.policy.models import ApproveAction
from gateway.textsafe import visible

USAGE = "gateway: usage: ssh approve@HOST [--json] | R-ID | deny R-ID WHY... | watch R-ID"


def _usage() -> Refusal:
    return Refusal(USAGE, reason="approve: bad words", kind=RefusalKind.COMMAND)


def _line(request: Request, now: float) -> str:
    given = ", ".join(request.approvers) or "none yet"
    reason = visible(request.reason or "-")
    what = f"{request.action} {request.target}".rstrip() + (f"  on {request.host}" if request.host else "")
    age = int(now - request.filed)
    return f"{request.id}  {request.requester}  {what}  {age}s ago  needs {request.describe()}  " + (
        f"approved by: {given}  reason: {reason}"
    )


def _moderation_line(moderated: Moderated) -> str:
    state = "running" if moderated.state == "running" else "waiting for a moderator"
    who = f"{moderated.key}  {moderated.requester}  {visible(moderated.what)}"
    return f"{who}  {state}  needs {moderated.needs()}  join: ssh approve@HOST watch {moderated.key}"


def _moderation_json(moderated: Moderated) -> str:
    fields = {
        "id": moderated.key,
        "kind": "moderation",
        "requester": moderated.requester,
        "what": moderated.what,
        "session": moderated.session_id,
        "state": moderated.state,
        "needs": moderated.needs(),
        "watch": f"ssh approve@HOST watch {moderated.key}",
    }
    return json.dumps(fields, sort_keys=True)


def _json(request: Request) -> str:
    fields = {
        "id": request.id,
        "kind": "request",
        "requester": request.requester,
        "action": request.action,
        "target": request.target,
        "reason": request.reason,
        "needs": request.describe(),
        "approvers": request.approvers,
        "filed": request.filed,
        "host": request.host,
    }
    return json.dumps(fields, sort_keys=True)


@runs(ApproveAction)
async def run_approve(ctx: ActionContext) -> Exit:
    """List, approve or deny."""
    book, words = ctx.requests, list(ctx.args)
    if book is None:
        raise Refusal(
            "gateway: approvals are not available here", reason="no request book", kind=RefusalKind.ACTION
        )
    if words in ([], ["--json"]):
        try:
            listing = await _listing(ctx, book, as_json=bool(words))
        except FleetDown:
            raise unavailable() from None
        await send(ctx, listing.encode())
        return Exit(0)
    if len(words) == 1 and ID_RE.match(words[0].upper()):
        _approver_only(ctx)
        return await _decide(ctx, words[0], None)
    if len(words) == 2 and words[0] == "watch" and ctx.moderation is not None:
        moderated = ctx.moderation.find(words[1])
        if moderated is None:
            raise Refusal(f"gateway: no moderated session {printable(words[1])}", reason="no such moderation",
                          kind=RefusalKind.APPROVAL)  # fmt: skip
        return await moderate(ctx, ctx.moderation, moderated)
    if len(words) >= 3 and words[0] == "deny" and ID_RE.match(words[1].upper()):
        _approver_only(ctx)
        return await _decide(ctx, words[1], " ".join(words[2:]))
    raise _usage()


async def _listing(ctx: ActionContext, book: Approvals, *, as_json: bool) -> str:
    """The requests this principal may approve, then the moderated sessions they may watch (here, and
    waiting on the fleet's other hosts)."""
    now = time.time()
    pending = await book.for_approver(ctx.principal) if _approver(ctx) else []
    moderated = ctx.moderation.for_moderator(ctx.principal) if ctx.moderation is not None else []
    elsewhere = await ctx.fleet.moderations(ctx.principal, as_json=as_json) if ctx.fleet is not None else []
    if as_json:
        return "".join(
            f"{line}\n" for line in [*map(_json, pending), *map(_moderation_json, moderated), *elsewhere]
        )
    lines = [_line(r, now) for r in pending] + [_moderation_line(m) for m in moderated] + elsewhere
    return "".join(f"{line}\n" for line in lines) or "no pending requests you may approve\n"


def _approver(ctx: ActionContext) -> bool:
    """Whether a grant gives this principal the approve action (a moderator alone may only list and watch)."""
    policy = ctx.policy
    return policy is not None and any(
        (ctx.principal, name) in policy.lookup
        for name, spec in policy.actions.items()
        if spec.kind == "approve"
    )


def _approver_only(ctx: ActionContext) -> None:
    if not _approver(ctx):
        raise Refusal(
            "gateway: approve: you may only watch the sessions you moderate (ssh approve@HOST watch R-ID)",
            reason="a moderator without an approve grant",
            kind=RefusalKind.APPROVAL,
        )


async def _decide(ctx: ActionContext, request_id: str, why: str | None) -> Exit:
    assert ctx.requests is not None
    try:
        if why is None:
            request = await ctx.requests.approve(request_id, ctx.principal)
        else:
            request = await ctx.requests.deny(request_id, ctx.principal, printable(why)[:200])
    except ApprovalError as exc:
        raise Refusal(f"gateway: {exc}", reason=str(exc), kind=RefusalKind.APPROVAL) from None
    except FleetDown:
        raise unavailable() from None
    if ctx.audit is not None:
        with contextlib.suppress(AuditUnavailable):
            if why is None:
                ctx.audit(Event.REQUEST_APPROVED, durable=True, request=request.id, by=ctx.principal,
                          met=request.state == APPROVED, requester=request.requester)  # fmt: skip
            else:
                ctx.audit(Event.REQUEST_DENIED, durable=True, request=request.id, by=ctx.principal,
                          why=request.why, requester=request.requester)  # fmt: skip
    if why is not None:
        line = f"denied {request.id} ({request.requester}: {request.action} {request.target})"
    elif request.state == APPROVED:
        what = f"{request.action} {request.target}".rstrip()
        line = f"approved {request.id}: every rule is met; {request.requester} may run {what}"
    else:
        line = f"approved {request.id}; it still needs more approvals ({request.describe()})"
    await send(ctx, (line + "\n").encode())
    return Exit(0)
