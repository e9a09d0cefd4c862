"""One session channel, start to end: decide, admit, write the allow record, run, deliver.

Refusals are one line on stderr, exit status 1, and a ``request.deny`` event.
The same Session runs for `gateway serve`'s own SSH clients and for the
OpenSSH door (through the daemon's door socket, or in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from gateway import metrics
from gateway.actions import Exit
from gateway.channel import Channel
from gateway.diskspace import room
from gateway.errors import AuditUnavailable, Refusal
from gateway.events import Event, RefusalKind
from gateway.fleet.down import Full
from gateway.moderation import Moderated
from gateway.session import door, messages
from gateway.session.conditions import satisfy
from gateway.session.decide import Plan, authorize, redecide
from gateway.session.door import Connection
from gateway.session.picker import pick_target
from gateway.session.run import execute

if TYPE_CHECKING:
    from gateway.runtime import Runtime


class Session:
    """Runs one session channel to its end."""

    def __init__(self, conn: Connection, process: Channel, number: int) -> None:
        self.conn = conn
        self.rt: Runtime = conn.rt
        self.process = process
        self.number = number
        self.action = conn.action
        self.ended_by: str | None = None
        #: the moderated session's board entry, while moderators are awaited or watch
        self.moderated: Moderated | None = None
        self._fields: dict[str, Any] = {"channel": number, "principal": conn.principal, "action": self.action}

    @property
    def pty(self) -> bool:
        """Whether the client asked for a terminal."""
        return self.process.get_terminal_type() is not None

    def audit(self, event: Event, *, durable: bool = False, **fields: Any) -> None:
        """An audit event for this session."""
        self.conn.audit(event, durable=durable, **self._fields, **fields)

    def notify(self, line: str) -> None:
        """One line on the client's stderr (a notice, not an error)."""
        with contextlib.suppress(Exception):
            self.process.stderr.write((line + messages.newline(self.pty)).encode())

    def failed(self, exc: Exception) -> str:
        """Tell the client in one line; return the detail for the audit log."""
        public, detail = messages.failure(exc, self.action)
        self.notify(public)
        return detail

    async def run(self) -> None:
        """Decide, then run or refuse; never raises.

        Session starts pass a small gate (STARTS at a time) and yield between
        their steps, so a burst of new sessions (200 at once) does not hold
        the loop while the open sessions' keystrokes wait behind it.
        """
        async with self.rt.starting:
            await asyncio.sleep(0)
            try:
                plan = await authorize(self.conn, self.process, self._fields, await self._target())
            except Refusal as refusal:
                self.refuse(refusal)
                return
            await asyncio.sleep(0)
        try:
            await self._run_plan(plan)
        finally:
            plan.close()

    async def _target(self) -> str | None:
        """A target from the login name, or from the picker (a PTY session that named none)."""
        if self.conn.login_target is not None:
            return self.conn.login_target
        return await pick_target(self)

    async def _run_plan(self, plan: Plan) -> None:
        try:
            await self._run_admitted(plan)
        finally:
            if self.moderated is not None:
                self.rt.moderation.close(self.moderated)

    async def _run_admitted(self, plan: Plan) -> None:
        principal = self.conn.principal or ""
        try:
            extra = await satisfy(self, plan)  # a reason, approvals, moderators: before any slot is taken
            plan = redecide(plan, self.rt.policy, self._fields)  # the policy may have changed meanwhile
            self._admit(plan)
        except Refusal as refusal:
            self.refuse(refusal)
            return
        try:
            slot = await self.rt.fleet.take(principal) if self.rt.fleet is not None else None
        except Full as full:  # the fleet's limits: every host's sessions count
            self.rt.limits.release_session(principal)
            self.refuse(_too_many(f"fleet limit: {full}"))
            return
        try:
            await self._run_allowed(plan, extra)
        finally:
            if self.rt.fleet is not None:
                await self.rt.fleet.give(slot)

    async def _run_allowed(self, plan: Plan, extra: dict[str, Any]) -> None:
        principal = self.conn.principal or ""
        try:
            if getattr(plan.spec, "privileged", False):
                extra["privileged"] = True
            self.audit(Event.REQUEST_ALLOW, durable=True, grant=plan.grant, policy=plan.digest, **extra)
        except AuditUnavailable:
            self.refuse(Refusal(messages.AUDIT_DOWN, reason="audit unavailable", kind=RefusalKind.AUDIT))
            self.rt.limits.release_session(principal)
            return
        self.rt.sessions.add(self)
        metrics.REQUESTS.labels(self._label, "allow").inc()
        metrics.SESSIONS.inc()
        started = time.monotonic()
        try:
            self._deliver(await execute(self, plan))
        finally:
            metrics.SESSIONS.dec()
            metrics.SESSION_SECONDS.labels(self._label).observe(time.monotonic() - started)
            self.rt.sessions.discard(self)
            self.rt.limits.release_session(principal)

    def _admit(self, plan: Plan) -> None:
        """Session limits (in total, per principal), the drain, the disk; raises Refusal."""
        if self.rt.draining:
            raise Refusal(
                "gateway: the gateway is shutting down", reason="draining", kind=RefusalKind.SESSION_LIMIT
            )
        if plan.spec.recorded:
            free, floor = room(self.rt.settings.state, self.rt.settings.recordings_min_free)
            metrics.STATE_FREE.set(free)
            if free < floor:
                raise Refusal(
                    "gateway: the gateway's disk is nearly full; recorded sessions are refused for now",
                    reason=f"recordings: {free} bytes free, below the floor of {floor}",
                    kind=RefusalKind.SESSION_LIMIT,
                )
        reason = self.rt.limits.admit_session(self.conn.principal or "")
        if reason is not None:
            raise _too_many(reason)

    @property
    def _label(self) -> str:
        return self.action if self.action in self.rt.policy.actions else "other"

    def refuse(self, refusal: Refusal) -> None:
        """Refuse this session: the one refusal path for every door (metrics, ``request.deny``, one line)."""
        outcome = "limit" if refusal.kind == RefusalKind.SESSION_LIMIT else "deny"
        metrics.REQUESTS.labels(self._label, outcome).inc()
        fields = {k: v for k, v in self._fields.items() if k not in ("principal", "action")}  # the door's
        door.refused(self.conn, refusal.kind, **fields, reason=refusal.reason, policy=self.rt.policy.digest)
        if refusal.public:  # empty: the client has gone
            self.notify(refusal.public)
        with contextlib.suppress(Exception):
            self.process.exit(messages.REFUSED_STATUS)

    def _deliver(self, outcome: Exit) -> None:
        with contextlib.suppress(Exception):
            if outcome.signal is not None:
                self.process.exit_with_signal(outcome.signal)
            else:
                self.process.exit(outcome.status)


def _too_many(reason: str) -> Refusal:
    """The one line for a session over a limit (this host's or the fleet's)."""
    return Refusal(
        "gateway: too many sessions; try again later", reason=reason, kind=RefusalKind.SESSION_LIMIT
    )
