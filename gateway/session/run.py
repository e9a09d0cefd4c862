"""Running an allowed plan: the recorder, the runner, the limits watchdog, the session-end record."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.actions import ActionContext, Exit, runner_for
from gateway.channel import clamped
from gateway.errors import AuditUnavailable, DockerError, Refusal
from gateway.events import Event
from gateway.recording import AsciicastRecorder, NullRecorder, Recorder
from gateway.session import messages
from gateway.session.decide import Plan

if TYPE_CHECKING:
    from gateway.moderation import Moderated
    from gateway.session.base import SessionBase

WATCH_INTERVAL = 0.5


def recorder_for(session: SessionBase, plan: Plan) -> Recorder:
    """The session's asciicast recorder, or a NullRecorder for an unrecorded action."""
    if not plan.spec.recorded:
        return NullRecorder()
    rt, process = session.rt, session.process
    cols, rows, _, _ = clamped(process.get_terminal_size())
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    path = rt.recordings / day / f"{session.conn.session_id}-{session.number}.cast"
    title = " ".join([f"{session.conn.principal}:", session.action, *plan.command.words])
    term = process.get_terminal_type()
    return AsciicastRecorder(
        path,
        width=cols or 80,
        height=rows or 24,
        term=term,
        record_input=plan.spec.records_input,
        title=title,
        name=str(path.relative_to(rt.settings.state)),
        binary_as_size=term is None,
        limit=plan.spec.recording_max_bytes,
        on_full=lambda: end_session(
            session,
            f"recording limit reached (recording_max_bytes: {plan.spec.recording_max_bytes})",
            "gateway: recording limit reached",
        ),
    )


async def execute(session: SessionBase, plan: Plan) -> Exit:
    """Run *plan* to its end; write session.start and session.end; return how it ended."""
    rt = session.rt
    recorder = recorder_for(session, plan)
    ctx = ActionContext(
        process=session.process,
        spec=plan.spec,
        args=plan.command.args,
        container=plan.container,
        engine=rt.engine,
        recorder=recorder,
        session_id=session.conn.session_id,
        sidekick_labels=rt.sidekick_labels,
        state=rt.settings.state,
        pinned=plan.pinned,
        checkpoint_public=rt.checkpoint_public,
        checkpoint=rt.write_checkpoint,
        principal=session.conn.principal or "",
        requests=rt.approvals,
        fleet=rt.fleet,
        audit=session.audit,
        moderation=rt.moderation,
        policy=rt.policy,
    )
    started = time.monotonic()
    outcome, error = Exit(255), None
    watchdog = None
    if plan.spec.idle_timeout is not None or plan.spec.max_duration is not None:
        watchdog = asyncio.get_running_loop().create_task(watch_limits(session, ctx), name="watchdog")
    moderated = session.moderated
    if moderated is not None:  # moderators follow the recording; too few of them end the session
        rt.moderation.running(
            moderated, getattr(recorder, "path", None), lambda why, line: end_session(session, why, line)
        )
        moderators = asyncio.get_running_loop().create_task(watch_moderators(session, moderated))
    try:
        session.audit(Event.SESSION_START, recording=recorder.name, pty=session.pty, pid=os.getpid())
        outcome = await runner_for(plan.spec)(ctx)
    except (Refusal, DockerError, OSError, AuditUnavailable) as exc:
        outcome, error = Exit(messages.REFUSED_STATUS), session.failed(exc)
    except Exception as exc:  # a bug must end this session, not the connection or the server
        outcome, error = Exit(messages.REFUSED_STATUS), session.failed(exc)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if moderated is not None:
            moderators.cancel()
        with contextlib.suppress(AuditUnavailable):
            session.audit(
                Event.SESSION_END,
                exit_status=outcome.status,
                signal=outcome.signal,
                error=error or session.ended_by,
                duration=round(time.monotonic() - started, 3),
                bytes_in=ctx.traffic.bytes_in,
                bytes_out=ctx.traffic.bytes_out,
                **ctx.summary,
                **recorder.close(),
            )
    return outcome


async def watch_limits(session: SessionBase, ctx: ActionContext) -> None:
    """End the session at the action's idle timeout or maximum duration."""
    spec, started = ctx.spec, time.monotonic()
    while True:
        await asyncio.sleep(WATCH_INTERVAL)
        now = time.monotonic()
        if spec.max_duration is not None and now - started >= spec.max_duration:
            why = f"the {session.action} session reached its maximum duration ({spec.max_duration:g}s)"
            break
        if spec.idle_timeout is not None and now - ctx.traffic.last_activity >= spec.idle_timeout:
            why = f"the {session.action} session was idle for {spec.idle_timeout:g}s"
            break
    end_session(session, why, f"gateway: {why}; it is being closed")


async def watch_moderators(session: SessionBase, moderated: Moderated) -> None:
    """End the session as soon as fewer moderators watch than its grant needs."""
    while moderated.enough():
        await moderated.changed.wait()
    end_session(session, "the moderators left", "gateway: the moderators left; the session is ended")


def end_session(session: SessionBase, why: str, line: str) -> None:
    """End the session at a limit: one line to the client, a ``session.limit`` record, exit 1."""
    if session.ended_by is not None:
        return
    session.ended_by = why
    session.notify(line)
    with contextlib.suppress(AuditUnavailable):
        session.audit(Event.SESSION_LIMIT, reason=why)
    with contextlib.suppress(Exception):
        session.process.exit(messages.REFUSED_STATUS)
