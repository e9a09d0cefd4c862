"""The target picker: a PTY session that names no target for a container action.

It lists the targets this principal may use with this action *and* that are
running now, numbered, and reads one answer: a number or a name proceeds as
if the client had typed ``ssh ACTION@HOST TARGET``; anything else (or
nothing, or Ctrl-C) refuses as before. Without a PTY nothing changes. The
list is the policy's own decision for each running container, so it names
nothing the principal could not reach anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from gateway.channel import read_bytes
from gateway.command import printable
from gateway.errors import DockerError, Refusal
from gateway.events import RefusalKind
from gateway.policy import Allow, Request, Target, decide

if TYPE_CHECKING:
    from gateway.session.base import SessionBase

ANSWER_SECONDS = 60.0
MAX_ANSWER = 64
MAX_LISTED = 50


async def pick_target(session: SessionBase) -> str | None:
    """The chosen target, or None (no PTY, a command was given, nothing to pick, no valid answer)."""
    rt, action = session.rt, session.action
    spec = rt.policy.actions.get(action)
    principal = session.conn.principal or ""
    if (
        not session.pty
        or session.process.command
        or session.process.subsystem is not None
        or spec is None
        or not spec.needs_target
        or (principal, action) not in rt.policy.lookup
    ):
        return None
    choices = await _choices(session, principal)
    if not choices:
        return None
    menu = "".join(f"  {i}) {name}\r\n" for i, name in enumerate(choices, start=1))
    _write(session, f"{action}: choose a target\r\n{menu}number or name: ")
    try:
        answer = await asyncio.wait_for(_read_line(session), ANSWER_SECONDS)
    except TimeoutError:
        answer = None
    _write(session, "\r\n")
    if answer is None:
        return None
    if answer.isdigit() and 1 <= int(answer) <= len(choices):
        return choices[int(answer) - 1]
    if answer in choices:
        return answer
    if not answer.strip():
        return None  # nothing chosen: the usual "needs a target" line
    # the same words for a name that exists but is not granted and one that does not exist
    shown = printable(answer.strip())
    raise Refusal(
        f"gateway: {shown} is not one of your targets", reason=f"picker: {shown}", kind=RefusalKind.ACTION
    )


async def _choices(session: SessionBase, principal: str) -> list[str]:
    rt = session.rt
    try:
        running = await rt.engine.running()
    except DockerError:
        return []
    allowed = []
    for name, labels in running:
        request = Request(principal, session.action, Target(name, labels), (), source=session.conn.peer_host)
        if isinstance(decide(rt.policy, request), Allow):
            allowed.append(name)
    return allowed[:MAX_LISTED]


def _write(session: SessionBase, text: str) -> None:
    with contextlib.suppress(Exception):
        session.process.stdout.write(text.encode())


async def _read_line(session: SessionBase) -> str | None:
    """One line typed on the client's raw terminal, echoed as typed; None on Ctrl-C, Ctrl-D or EOF."""
    line = ""
    while True:
        data = await read_bytes(session.process)
        if not data:
            return None
        for byte in data:
            char = chr(byte)
            if char in "\r\n":
                return line
            if char in "\x03\x04":
                return None
            if char in "\x7f\x08" and line:
                line = line[:-1]
                _write(session, "\b \b")
            elif char.isprintable() and char.isascii() and len(line) < MAX_ANSWER:
                line += char
                _write(session, char)
