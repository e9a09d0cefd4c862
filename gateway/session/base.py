"""What the session's helpers (picker, conditions, run) see of a Session, without importing it.

``core.Session`` satisfies this; ``picker``, ``conditions`` and ``run`` are
written against it, so ``core`` imports them and nothing imports ``core``
back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.channel import Channel
    from gateway.events import Event
    from gateway.moderation import Moderated
    from gateway.runtime import Runtime
    from gateway.session.door import Connection


class SessionBase(Protocol):
    """One session channel, as its helpers use it."""

    rt: Runtime
    conn: Connection
    process: Channel
    number: int
    action: str
    #: why a limit ended the session, once one did
    ended_by: str | None
    #: the moderated session's board entry, while moderators are awaited or watch
    moderated: Moderated | None

    @property
    def pty(self) -> bool:
        """Whether the client asked for a terminal."""

    def audit(self, event: Event, *, durable: bool = False, **fields: Any) -> None:
        """An audit event for this session."""

    def notify(self, line: str) -> None:
        """One line on the client's stderr."""

    def failed(self, exc: Exception) -> str:
        """Tell the client in one line; return the detail for the audit log."""
