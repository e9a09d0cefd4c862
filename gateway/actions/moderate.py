"""A moderator's side of a moderated session: join, watch it live, end it with Ctrl-].

Reached by ``ssh approve@HOST watch R-ID`` and by ``ssh audit@HOST sessions
watch SESSION`` when SESSION is moderated. Joining and leaving are audit
records (``moderator.joined``, ``moderator.left``); the moderated session
starts once enough moderators watch and ends if too few remain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from gateway.actions.base import ActionContext, Exit
from gateway.actions.channel import send, until_hangup
from gateway.channel import read_bytes
from gateway.errors import AuditUnavailable, Refusal
from gateway.events import Event, RefusalKind
from gateway.moderation import STOP, Moderated, ModerationBoard
from gateway.tasks import Tasks

POLL = 0.1


async def moderate(ctx: ActionContext, board: ModerationBoard, moderated: Moderated) -> Exit:
    """Watch *moderated* until it ends or this moderator leaves."""
    if not moderated.eligible(ctx.principal):
        raise Refusal(
            f"gateway: you may not moderate {moderated.key}",
            reason=f"not a moderator of {moderated.key}",
            kind=RefusalKind.APPROVAL,
        )
    token = board.join(moderated, ctx.principal)
    _record(ctx, Event.MODERATOR_JOINED, moderated)
    try:
        who = f"{moderated.requester}: {moderated.what}"
        hello = f"gateway: moderating {moderated.key} ({who}); Ctrl-] ends it\r\n"
        await send(ctx, hello.encode())
        async with Tasks(f"moderate:{ctx.session_id}") as tasks:
            follow = tasks.spawn(_follow(ctx, moderated), "follow")
            tasks.spawn(_keys(ctx, moderated), "keys")
            await until_hangup(ctx, tasks, [follow])
    finally:
        board.leave(moderated, token)
        _record(ctx, Event.MODERATOR_LEFT, moderated)
    return Exit(0)


def _record(ctx: ActionContext, event: Event, moderated: Moderated) -> None:
    if ctx.audit is not None:
        with contextlib.suppress(AuditUnavailable):
            ctx.audit(event, durable=True, moderation=moderated.key, moderated_session=moderated.session_id,
                      requester=moderated.requester)  # fmt: skip


async def _keys(ctx: ActionContext, moderated: Moderated) -> None:
    """Ctrl-] from the moderator ends the moderated session at once."""
    while True:
        data = await read_bytes(ctx.process)
        if not data:
            return
        if STOP in data and moderated.end is not None:
            moderated.end(
                f"ended by moderator {ctx.principal}", f"gateway: ended by moderator {ctx.principal}"
            )


async def _follow(ctx: ActionContext, moderated: Moderated) -> None:
    """The session's output as it is recorded, from its start until it ends."""
    while moderated.recording is None:
        if moderated.finished.is_set():
            return
        await asyncio.sleep(POLL)
    await follow_output(ctx, moderated.recording, moderated.finished.is_set, POLL)


async def follow_output(ctx: ActionContext, path: Path, ended: Callable[[], bool], poll: float) -> None:
    """Send a recording's output events to the client as they are written, until *ended* says so."""
    with path.open(encoding="utf-8", errors="replace") as f:
        f.readline()  # the header
        pending = ""
        while True:
            chunk = f.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    text, pending = _output(pending), ""
                    if text is not None and not await send(ctx, text.encode()):
                        return
                continue
            if ended():
                return
            await asyncio.sleep(poll)


def _output(line: str) -> str | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if isinstance(event, list) and len(event) == 3 and event[1] == "o":
        return str(event[2])
    return None
