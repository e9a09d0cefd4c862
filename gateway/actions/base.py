"""What every action runner receives and returns."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.channel import Channel, TerminalSize, clamped
from gateway.environment import checked_term, clean_env
from gateway.events import Event

if TYPE_CHECKING:
    from gateway.approvals import Approvals
    from gateway.confine import Pinned
    from gateway.docker import ContainerInfo, Engine
    from gateway.fleet.member import Member
    from gateway.moderation import ModerationBoard
    from gateway.policy.compiled import Policy
    from gateway.policy.models import Action, ActionBase
    from gateway.recording import Recorder


class Audit(Protocol):
    """An audit record tied to the session: an event from the catalogue and its fields."""

    def __call__(self, event: Event, *, durable: bool = ..., **fields: Any) -> None:
        """Write it; raise AuditUnavailable when it did not reach the chain."""


@dataclass
class Traffic:
    """Bytes that crossed the session, for the session-end record."""

    bytes_in: int = 0
    bytes_out: int = 0
    #: monotonic time of the last byte either way, for idle timeouts
    last_activity: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Exit:
    """How the action ended: an exit status, or the signal that killed it."""

    status: int = 0
    signal: str | None = None

    @classmethod
    def from_returncode(cls, code: int | None) -> Exit:
        """asyncio's returncode (negative for a signal) -> Exit."""
        if code is None:
            return cls(255)
        if code < 0:
            try:
                return cls(128 - code, signal.Signals(-code).name.removeprefix("SIG"))
            except ValueError:
                return cls(128 - code)
        return cls(code)


@dataclass
class ActionContext:
    """One allowed request, ready to run."""

    process: Channel
    spec: Action
    args: tuple[str, ...]
    container: ContainerInfo | None
    engine: Engine
    recorder: Recorder
    session_id: str
    #: the state directory (the audit action reads it)
    state: Path = Path("state")
    #: the container's process, pinned before the allow record (shell via nsenter)
    pinned: Pinned | None = None
    #: the checkpoint public key the SSH ``verify`` query checks against (None: not signing)
    checkpoint_public: Path | None = None
    #: sign the chain's head now (an export's record must be anchored before the bundle is written)
    checkpoint: Callable[[], None] | None = None
    #: labels that mark a sidekick as this gateway's (reaped at start-up)
    sidekick_labels: Mapping[str, str] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)
    #: extra fields for the session-end audit record (e.g. a stream's digest)
    summary: dict[str, Any] = field(default_factory=dict)
    #: who is asking (the approve action needs it)
    principal: str = ""
    #: access requests (the approve action decides them)
    requests: Approvals | None = None
    #: the fleet this gateway is a member of (sessions list and show answer for it; None: this host only)
    fleet: Member | None = None
    #: an audit record tied to this session
    audit: Audit | None = None
    #: moderated sessions (moderators join them through approve or audit watch)
    moderation: ModerationBoard | None = None
    #: the policy in force (the help action reads it)
    policy: Policy | None = None

    def terminal_size(self) -> TerminalSize:
        """The client's terminal size, clamped to what a terminal can hold."""
        return clamped(self.process.get_terminal_size())

    @property
    def term(self) -> str | None:
        """The client's terminal type when it asked for a PTY (checked)."""
        return checked_term(self.process.get_terminal_type())

    def clean_env(self) -> dict[str, str]:
        """A child's whole environment: nothing from the client but a checked TERM and locale."""
        return clean_env(self.term, self.process.env)


class Runner(Protocol):
    """One action type's implementation."""

    async def __call__(self, ctx: ActionContext) -> Exit:
        """Run the action to its end and say how it ended."""


Validate = Callable[[tuple[str, ...]], object]
Prepare = Callable[["Action", "ContainerInfo"], "Pinned | None"]


@dataclass(frozen=True)
class ActionType:
    """What one action type's module adds to its model: how it runs, and what it does before the allow."""

    run: Runner
    #: checks the client's words (a Refusal) before the allow record: the audit query's parser
    validate: Validate | None = None
    #: before the allow record, with the target resolved: pin its process (the shell), or refuse
    prepare: Prepare | None = None


#: every action type's module, by its model (``runs`` fills it at import)
RUNNERS: dict[type[ActionBase], ActionType] = {}


def runs(
    model: type[ActionBase], *, validate: Validate | None = None, prepare: Prepare | None = None
) -> Callable[[Runner], Runner]:
    """Register the decorated runner as *model*'s, with its checks before the allow record."""

    def register(run: Runner) -> Runner:
        RUNNERS[model] = ActionType(run, validate, prepare)
        return run

    return register
