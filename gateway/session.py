"""One SSH session: parse, ask the engine, write the allow record, run, record.

Refusals are one line on stderr, exit status 1, and a ``request.deny`` event.
An unknown target and a target that is not granted get the same line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from gateway import metrics
from gateway.actions import ActionContext, Exit, runner_for, validate
from gateway.actions.base import Channel, clamped
from gateway.actions.shell import pin_target
from gateway.command import Command, is_legacy_scp, parse_command, printable
from gateway.confine import Pinned
from gateway.docker import ContainerInfo
from gateway.errors import (
    AuditUnavailable,
    ContainerNotFound,
    DockerError,
    DockerUnavailable,
    Refusal,
)
from gateway.policy import Allow, DenyCode, Request, Target, decide
from gateway.policy.models import Action
from gateway.recording import AsciicastRecorder, NullRecorder, Recorder

if TYPE_CHECKING:
    from gateway.runtime import Runtime


class Connection(Protocol):
    """What a session needs from its connection: the SSH server's, or the command= door's."""

    rt: Runtime
    session_id: str
    username: str
    principal: str | None
    peer_host: str

    def audit(self, event: str, *, durable: bool = False, **fields: Any) -> None:
        """An audit event tied to the connection."""


REFUSED_STATUS = 1
WATCH_INTERVAL = 0.5


@dataclass(frozen=True)
class Plan:
    """An allowed request, about to run."""

    spec: Action
    grant: str
    command: Command
    container: ContainerInfo | None
    #: the container's process, pinned before the allow record (shell via nsenter)
    pinned: Pinned | None = None

    def close(self) -> None:
        """Release what the plan holds (the pinned process's descriptors)."""
        if self.pinned is not None:
            self.pinned.close()


def _denied_line(action: str, target: str | None) -> str:
    # The same words whether the target is unknown or not granted: no probing.
    where = f"{action} {target}" if target else action
    return f"gateway: {where}: permission denied"


class Session:
    """Runs one session channel to its end."""

    def __init__(self, conn: Connection, process: Channel, number: int) -> None:
        self.conn = conn
        self.rt = conn.rt
        self.process = process
        self.number = number
        self.action = conn.username
        self.ended_by: str | None = None
        self._fields: dict[str, Any] = {
            "channel": number,
            "principal": conn.principal,
            "action": self.action,
        }

    def audit(self, event: str, *, durable: bool = False, **fields: Any) -> None:
        """An audit event for this session."""
        self.conn.audit(event, durable=durable, **self._fields, **fields)

    async def run(self) -> None:
        """Decide, then run or refuse; never raises."""
        try:
            plan = await self._authorize()
        except Refusal as refusal:
            self._refuse(refusal)
            return
        try:
            await self._run_plan(plan)
        finally:
            plan.close()

    async def _run_plan(self, plan: Plan) -> None:
        try:
            self._admit()
        except Refusal as refusal:
            self._refuse(refusal)
            return
        principal = self.conn.principal or ""
        try:
            self.audit("request.allow", durable=True, grant=plan.grant, policy=self.rt.policy.digest)
        except AuditUnavailable:
            self._refuse(
                Refusal(
                    "gateway: the audit log is unavailable; nothing was run",
                    reason="audit unavailable",
                    kind="audit",
                )
            )
            self.rt.limits.release_session(principal)
            return
        self.rt.sessions.add(self)
        metrics.REQUESTS.labels(self._label, "allow").inc()
        metrics.SESSIONS.inc()
        started = time.monotonic()
        try:
            await self._execute(plan)
        finally:
            metrics.SESSIONS.dec()
            metrics.SESSION_SECONDS.labels(self._label).observe(time.monotonic() - started)
            self.rt.sessions.discard(self)
            self.rt.limits.release_session(principal)
            if not self.rt.sessions:
                self.rt.quiet.set()

    def _admit(self) -> None:
        """Session limits (in total, per principal) and the drain; raises Refusal."""
        if self.rt.draining:
            raise Refusal("gateway: the gateway is shutting down", reason="draining", kind="session-limit")
        reason = self.rt.limits.admit_session(self.conn.principal or "")
        if reason is not None:
            raise Refusal("gateway: too many sessions; try again later", reason=reason, kind="session-limit")

    def notify(self, line: str) -> None:
        """One line on the client's stderr (a notice, not an error)."""
        with contextlib.suppress(Exception):
            self.process.stderr.write((line + ("\r\n" if self._pty else "\n")).encode())

    async def _watch_limits(self, ctx: ActionContext, spec: Action) -> None:
        """End the session at the action's idle timeout or maximum duration."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            now = time.monotonic()
            if spec.max_duration is not None and now - started >= spec.max_duration:
                why = f"the {self.action} session reached its maximum duration ({spec.max_duration:g}s)"
                break
            if spec.idle_timeout is not None and now - ctx.traffic.last_activity >= spec.idle_timeout:
                why = f"the {self.action} session was idle for {spec.idle_timeout:g}s"
                break
        self.ended_by = why
        self.notify(f"gateway: {why}; it is being closed")
        with contextlib.suppress(AuditUnavailable):
            self.audit("session.limit", reason=why)
        with contextlib.suppress(Exception):
            self.process.exit(REFUSED_STATUS)

    # ----------------------------------------------------------- deciding

    async def _authorize(self) -> Plan:
        if self.process.subsystem is not None:
            name = printable(self.process.subsystem)
            raise Refusal(
                f"gateway: subsystem {name} is not available",
                reason=f"subsystem {name}",
                kind="subsystem",
            )
        command = parse_command(self.process.command)
        spec = self.rt.policy.actions.get(self.action)
        if spec is not None and spec.takes_query:
            command = Command(None, command.words)  # every word is the query
        self._fields.update(target=command.target, args=list(command.args) or None)
        if is_legacy_scp(command):
            raise Refusal("gateway: scp is not available", reason="legacy scp", kind="scp")
        principal = self.conn.principal or ""
        container = None
        if spec is not None and spec.needs_target and command.target is not None:
            container = await self._resolve(principal, command.target)
        target = Target(container.name, container.labels) if container else _typed_target(command)
        request = Request(principal, self.action, target, command.args, source=self.conn.peer_host)
        decision = decide(self.rt.policy, request)
        if not isinstance(decision, Allow):
            raise Refusal(self._deny_line(decision.code, command), reason=decision.reason, kind="action")
        validate(decision.spec, command.args)
        if container is not None and not container.running:
            raise Refusal(
                f"gateway: {container.name} is not running",
                reason="container not running",
                kind="action",
            )
        pinned = pin_target(decision.spec, container) if container is not None else None
        return Plan(decision.spec, decision.grant, command, container, pinned)

    async def _resolve(self, principal: str, name: str) -> ContainerInfo | None:
        """Resolve the target only for a principal who holds this action at all."""
        if (principal, self.action) not in self.rt.policy.lookup:
            return None
        try:
            info = await self.rt.engine.inspect(name)
        except ContainerNotFound:
            raise Refusal(
                _denied_line(self.action, name), reason="no such container", kind="action"
            ) from None
        except DockerUnavailable as exc:
            raise Refusal(
                "gateway: the Docker engine is not reachable; try again later",
                reason=f"docker unavailable: {exc}",
                kind="action",
            ) from None
        self._fields.update(container=info.id, image=info.image)
        return info

    def _deny_line(self, code: DenyCode, command: Command) -> str:
        if code is DenyCode.NEEDS_TARGET:
            return f"gateway: {self.action} needs a target: ssh {self.action}@HOST TARGET"
        if code is DenyCode.TAKES_NO_TARGET:
            return f"gateway: {self.action} takes no arguments"
        if code is DenyCode.NO_ARGS:
            return f"gateway: {self.action} {command.target}: extra arguments are not allowed"
        return _denied_line(self.action, command.target)

    @property
    def _label(self) -> str:
        return self.action if self.action in self.rt.policy.actions else "other"

    def _refuse(self, refusal: Refusal) -> None:
        metrics.REQUESTS.labels(self._label, "limit" if refusal.kind == "session-limit" else "deny").inc()
        with contextlib.suppress(AuditUnavailable):
            self.audit(
                "request.deny",
                kind=refusal.kind,
                reason=refusal.reason,
                policy=self.rt.policy.digest,
            )
        newline = "\r\n" if self.process.get_terminal_type() else "\n"
        with contextlib.suppress(Exception):
            self.process.stderr.write((refusal.public + newline).encode())
            self.process.exit(REFUSED_STATUS)

    # ----------------------------------------------------------- running

    def _recorder(self, plan: Plan) -> Recorder:
        if not plan.spec.recorded:
            return NullRecorder()
        cols, rows, _, _ = clamped(self.process.get_terminal_size())
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        path = self.rt.recordings / day / f"{self.conn.session_id}-{self.number}.cast"
        title = " ".join([f"{self.conn.principal}:", self.action, *plan.command.words])
        term = self.process.get_terminal_type()
        return AsciicastRecorder(
            path,
            width=cols or 80,
            height=rows or 24,
            term=term,
            record_input=plan.spec.records_input,
            title=title,
            name=str(path.relative_to(self.rt.settings.state)),
            binary_as_size=term is None,
        )

    async def _execute(self, plan: Plan) -> None:
        recorder = self._recorder(plan)
        ctx = ActionContext(
            process=self.process,
            spec=plan.spec,
            args=plan.command.args,
            container=plan.container,
            engine=self.rt.engine,
            recorder=recorder,
            session_id=self.conn.session_id,
            sidekick_labels=self.rt.sidekick_labels,
            state=self.rt.settings.state,
            pinned=plan.pinned,
            checkpoint_public=self.rt.checkpoint_public,
        )
        started = time.monotonic()
        outcome, error = Exit(255), None
        watchdog = None
        if plan.spec.idle_timeout is not None or plan.spec.max_duration is not None:
            watchdog = asyncio.get_running_loop().create_task(
                self._watch_limits(ctx, plan.spec), name="watchdog"
            )
        try:
            self.audit("session.start", recording=recorder.name, pty=self._pty, pid=os.getpid())
            outcome = await runner_for(plan.spec)(ctx)
        except (Refusal, DockerError, OSError, AuditUnavailable) as exc:
            outcome, error = Exit(REFUSED_STATUS), self._failed(exc)
        except Exception as exc:  # a bug must end this session, not the connection or the server
            outcome, error = Exit(REFUSED_STATUS), self._failed(exc)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            error = error or self.ended_by
            with contextlib.suppress(AuditUnavailable):
                self.audit(
                    "session.end",
                    exit_status=outcome.status,
                    signal=outcome.signal,
                    error=error,
                    duration=round(time.monotonic() - started, 3),
                    bytes_in=ctx.traffic.bytes_in,
                    bytes_out=ctx.traffic.bytes_out,
                    **ctx.summary,
                    **recorder.close(),
                )
        self._deliver(outcome)

    @property
    def _pty(self) -> bool:
        return self.process.get_terminal_type() is not None

    def _failed(self, exc: Exception) -> str:
        """Tell the client in one line; return the detail for the audit log."""
        if isinstance(exc, Refusal):
            public, detail = exc.public, exc.reason
        elif isinstance(exc, DockerUnavailable):
            public, detail = (
                "gateway: the Docker engine is not reachable; try again later",
                str(exc),
            )
        elif isinstance(exc, ContainerNotFound):
            public, detail = f"gateway: {self.action}: the container is gone", "container vanished"
        elif isinstance(exc, OSError):
            public, detail = (
                f"gateway: {self.action}: could not start the action",
                f"os error: {exc.strerror}",
            )
        else:
            public, detail = (
                f"gateway: {self.action}: the action failed",
                f"{type(exc).__name__}: {exc}",
            )
        with contextlib.suppress(Exception):
            self.process.stderr.write((public + ("\r\n" if self._pty else "\n")).encode())
        return detail

    def _deliver(self, outcome: Exit) -> None:
        with contextlib.suppress(Exception):
            if outcome.signal is not None:
                self.process.exit_with_signal(outcome.signal)
            else:
                self.process.exit(outcome.status)


def _typed_target(command: Command) -> Target | None:
    return Target(command.target) if command.target is not None else None
