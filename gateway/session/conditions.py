"""Four eyes before the allow record: the reason a grant asks for, and the approvals it needs.

``satisfy`` runs after the decision and before the session is admitted: it
takes the reason (``GATEWAY_REASON``, or asked for on a PTY), checks it, and
for a grant with ``approval:`` either finds an approval still in its window
or files a request and waits for it in this same connection (on a PTY and
without one), up to ``serve --approval-wait``. A refusal here is one line and
exit 1; the request stays on file when the requester hangs up. A moderated
grant then waits until enough moderators watch (``moderation``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no stubs

from gateway.approvals import APPROVED, DENIED, Request
from gateway.channel import read_bytes
from gateway.command import printable
from gateway.environment import MAX_REASON, REASON, checked_reason
from gateway.errors import AuditUnavailable, Refusal
from gateway.events import Event, RefusalKind
from gateway.fleet.down import FleetDown, unavailable
from gateway.moderation import Moderated
from gateway.policy.compiled import Conditions
from gateway.session.decide import Plan

if TYPE_CHECKING:
    from gateway.session.base import SessionBase

ASK_SECONDS = 120.0
ERASE = (b"\x7f", b"\x08")
CANCEL = (b"\x03", b"\x04")


async def satisfy(session: SessionBase, plan: Plan) -> dict[str, Any]:
    """What the allow record adds (reason, request, approvers); Refusal when a condition fails."""
    cond = plan.conditions
    if cond is None:
        return {}
    target = plan.container.name if plan.container is not None else (plan.command.target or "")
    what = f"{session.action} {target}".strip()
    reason = await _reason(session, cond, what)
    fields: dict[str, Any] = {"reason": reason} if reason else {}
    fleet = session.rt.fleet
    if (cond.approval or cond.moderated is not None) and session.rt.fleet_elsewhere:
        raise unavailable()  # this process has no fleet connection: a request filed here would go unseen
    try:
        if cond.approval:
            request = await _approved(session, cond, what, target, reason)
            fields.update(request=request.id, approvers=request.approvers)
        if cond.moderated is not None:
            moderated = session.moderated = session.rt.moderation.open(
                session.conn.session_id, session.conn.principal or "", what, cond.moderated
            )
            if fleet is not None:  # listed by every host's approve@ while it waits
                await fleet.publish(moderated)
            try:
                await _moderators(session, moderated)
            finally:
                if fleet is not None:
                    with contextlib.suppress(FleetDown):
                        await fleet.withdraw(moderated)
            fields.update(moderation=moderated.key, moderators=moderated.moderators)
    except FleetDown:
        raise unavailable() from None
    return fields


async def _moderators(session: SessionBase, moderated: Moderated) -> None:
    """Until enough moderators watch; Refusal when the wait ends or the requester leaves."""
    session.notify(
        f"gateway: {moderated.what} is moderated ({moderated.need.describe()}): waiting for a moderator:"
        f" ssh approve@HOST watch {moderated.key}"
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + session.rt.settings.approval_wait
    closed = loop.create_task(session.process.wait_closed())
    try:
        while not moderated.enough():
            left = deadline - loop.time()
            changed = loop.create_task(moderated.changed.wait())
            done, _ = await asyncio.wait(
                {changed, closed}, timeout=max(left, 0), return_when=asyncio.FIRST_COMPLETED
            )
            changed.cancel()
            if closed in done:
                raise Refusal(
                    "",
                    reason=f"the requester left while waiting for {moderated.key}",
                    kind=RefusalKind.APPROVAL,
                )
            if not done:
                raise Refusal(
                    f"gateway: no moderator joined {moderated.key} in time; nothing was run",
                    reason=f"{moderated.key}: no moderator in time",
                    kind=RefusalKind.APPROVAL,
                )
    finally:
        closed.cancel()


async def _reason(session: SessionBase, cond: Conditions, what: str) -> str | None:
    wanted = cond.reason_required or cond.reason_pattern is not None
    given = session.process.env.get(REASON)
    if given is None and wanted and session.pty:
        given = await _ask(session)
    if not wanted:
        return given
    if not given:
        raise Refusal(
            f"gateway: {what} needs a reason: ssh -o 'SetEnv={REASON}=\"...\"' {session.action}@HOST"
            + (f" {what.partition(' ')[2]}" if " " in what else ""),
            reason="no reason given",
            kind=RefusalKind.REASON,
        )
    if cond.reason_pattern is not None and re2.search(cond.reason_pattern, given) is None:
        raise Refusal(
            f"gateway: the reason for {what} must match {cond.reason_pattern}",
            reason=f"reason {printable(given)!r} does not match {cond.reason_pattern}",
            kind=RefusalKind.REASON,
        )
    return given


async def _ask(session: SessionBase) -> str | None:
    """``reason: `` on the client's terminal; the line typed (echoed here: the client is in raw mode)."""
    out = session.process.stdout
    out.write(b"reason: ")
    typed = bytearray()
    try:
        async with asyncio.timeout(ASK_SECONDS):
            while True:
                data = await read_bytes(session.process)
                if not data:
                    return None
                for byte in (data[k : k + 1] for k in range(len(data))):
                    if byte in (b"\r", b"\n"):
                        out.write(b"\r\n")
                        return checked_reason(typed.decode("utf-8", "replace"))
                    if byte in CANCEL:
                        out.write(b"\r\n")
                        return None
                    if byte in ERASE:
                        if typed:
                            del typed[-1]
                            out.write(b"\b \b")
                    elif byte >= b" " and len(typed) < MAX_REASON:
                        typed += byte
                        out.write(byte)
    except (TimeoutError, OSError):
        return None


async def _approved(
    session: SessionBase, cond: Conditions, what: str, target: str, reason: str | None
) -> Request:
    book, principal = session.rt.approvals, session.conn.principal or ""
    found = await book.usable(principal, session.action, target, cond)
    if found is not None:
        return found
    request = await book.pending(principal, session.action, target, cond)
    if request is None:
        request = await book.file(principal, session.action, target, reason, cond)
        with contextlib.suppress(AuditUnavailable):
            session.audit(
                Event.REQUEST_FILED, durable=True, request=request.id, reason=reason, needs=request.describe()
            )
    session.notify(f"gateway: {what} needs approval ({request.describe()}): request {request.id}; waiting")
    wait = session.rt.settings.approval_wait
    try:
        await _until_decided(session, request, wait)
    except TimeoutError:
        await book.expire(request)
        with contextlib.suppress(AuditUnavailable):
            session.audit(Event.REQUEST_EXPIRED, request=request.id)
        raise Refusal(
            f"gateway: request {request.id} was not approved within {wait:g}s; nothing was run",
            reason=f"request {request.id}: no approval in time",
            kind=RefusalKind.APPROVAL,
        ) from None
    if request.state == DENIED:
        why = f": {request.why}" if request.why else ""
        raise Refusal(
            f"gateway: request {request.id} was denied by {request.denied_by}{printable(why)}",
            reason=f"request {request.id} denied by {request.denied_by}",
            kind=RefusalKind.APPROVAL,
        )
    return request


async def _until_decided(session: SessionBase, request: Request, seconds: float) -> None:
    """Until the request is approved or denied (TimeoutError after *seconds*); a hang-up ends the wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    closed = loop.create_task(session.process.wait_closed())
    try:
        while request.state not in (APPROVED, DENIED):
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            changed = loop.create_task(session.rt.approvals.changed(request, left))
            done, _ = await asyncio.wait({changed, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                changed.cancel()
                raise Refusal(
                    "",
                    reason=f"the requester left; request {request.id} stays pending",
                    kind=RefusalKind.APPROVAL,
                )
            changed.result()
    finally:
        closed.cancel()
