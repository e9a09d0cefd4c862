"""The policy schema (version 1) as frozen pydantic models.

Actions are a discriminated union on ``type``; each model says whether it
needs a target container and whether it accepts extra words from the client.
"""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime
from ipaddress import ip_network
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    StringConstraints,
    WithJsonSchema,
    create_model,
    field_validator,
)

from gateway.sizes import DURATION_PATTERN, SIZE_PATTERN, parse_duration, parse_size

ACTION_NAME = r"^[a-z][a-z0-9_-]{0,31}$"


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


#: a signal name as the loader accepts it: any case, with or without SIG (checked against this Python)
SIGNAL_PATTERN = (
    f"^({_any_case('SIG')})?("
    + "|".join(
        _any_case(n[3:]) for n in sorted(signal.Signals.__members__) if n.startswith("SIG") and "_" not in n
    )
    + ")$"
)
#: ``expires``: a date, or a date and time (UTC unless it says otherwise)
EXPIRES_PATTERN = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)?)?$"
)
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_H16 = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(({_H16}:){{7}}{_H16}|({_H16}:){{1,7}}:|({_H16}:){{1,6}}:{_H16}|({_H16}:){{1,5}}(:{_H16}){{1,2}}"
    rf"|({_H16}:){{1,4}}(:{_H16}){{1,3}}|({_H16}:){{1,3}}(:{_H16}){{1,4}}|({_H16}:){{1,2}}(:{_H16}){{1,5}}"
    rf"|{_H16}:(:{_H16}){{1,6}}|:((:{_H16}){{1,7}}|:))"
)
#: ``from``: an IPv4 or IPv6 address or network (host bits are cleared, as ip_network(strict=False))
CIDR_PATTERN = (
    rf"^({_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(/(3[0-2]|[12]?\d))?"
    rf"|{_IPV6}(/(12[0-8]|1[01]\d|[1-9]?\d))?)$"
)
ActionName = Annotated[str, StringConstraints(pattern=ACTION_NAME)]
Argv = Annotated[tuple[Annotated[str, StringConstraints(min_length=1)], ...], Field(min_length=1)]
AbsPath = Annotated[str, StringConstraints(pattern=r"^/[^\x00-\x1f]*$")]
#: bytes, or a number with K, M, G or T (powers of 1024), as in ``50M``
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    Field(gt=0),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}]}
    ),
]
#: a recording's default limit: 1 GiB
RECORDING_MAX_BYTES = 1 << 30
#: seconds, or a number with s, m, h or d, as in ``1h``
Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    Field(gt=0),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": DURATION_PATTERN}]}
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: every action type by its ``type`` word: filled as each model class is defined (built-in or not)
ACTION_REGISTRY: dict[str, type[ActionBase]] = {}


class ActionBase(_Model):
    """What every action type says about itself; a subclass with a ``type`` literal registers itself.

    Adding a type is its model (here, or anywhere) plus its runner module
    (``actions.base.runs``); the loader, the schema, the key lines and the
    session read everything else from these.
    """

    #: container actions need a target; host actions take none
    needs_target: ClassVar[bool] = True
    #: whether the session is recorded as asciicast (False: metadata only)
    recorded: ClassVar[bool] = True
    #: whether every word of the command is an argument (no target word)
    takes_query: ClassVar[bool] = False
    #: whether it works on a stopped target (it needs no running process); else it is refused
    runs_on_stopped: ClassVar[bool] = False

    #: seconds without input or output before the session is ended (None: never)
    idle_timeout: Annotated[float, Field(gt=0)] | None = None
    #: seconds after which the session is ended whatever happens (None: never)
    max_duration: Annotated[float, Field(gt=0)] | None = None
    #: the most a session's recording may hold; the session ends when it is reached
    recording_max_bytes: Size = RECORDING_MAX_BYTES

    def stopped_line(self, action: str, target: str) -> str:
        """The refusal for a stopped *target* (when it does not run on one)."""
        del action
        return f"gateway: {target} is not running"

    @property
    def enters(self) -> bool:
        """Whether a session of it joins a container's namespaces and cgroups itself (nsenter)."""
        return False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Register a concrete type (one with a ``type`` literal) by its word."""
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("type")
        words: tuple[object, ...] = getattr(field.annotation, "__args__", ()) if field is not None else ()
        word = words[0] if len(words) == 1 else None
        if isinstance(word, str):
            ACTION_REGISTRY[word] = cls
            if "PolicyFile" in globals():  # a type added after this module loaded
                _rebuild_policy_file()

    @property
    def wants_pty(self) -> bool:
        """Whether a client should ask for a terminal (``ssh -t``): key lines get ``pty`` for it."""
        return bool(getattr(self, "interactive", False))

    @property
    def accepts_args(self) -> bool:
        """Whether the client may add words after the target."""
        return bool(getattr(self, "allow_args", False))

    @property
    def records_input(self) -> bool:
        """Whether typed input goes into the recording."""
        return bool(getattr(self, "record_input", False))

    @property
    def kind(self) -> str:
        """The type, with what distinguishes one action of it from another (shell: the mode)."""
        return str(getattr(self, "type", ""))

    @property
    def consequence(self) -> str:
        """What a grant of it means for privileges, where that needs saying."""
        return ""


#: a user inside the container: a name, or uid[:gid]
USER = r"^([A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10}(:[0-9]{1,10})?)$"
User = Annotated[str, StringConstraints(pattern=USER)]


class ShellAction(ActionBase):
    """A command (a shell by default) inside the target container.

    ``via: nsenter`` (the default) enters its pinned namespaces and takes the
    container's own confinement (capabilities, ``no_new_privs``, seccomp, cgroups),
    as ``docker exec`` would; ``privileged: true`` keeps host root's full
    capabilities and no seccomp instead. ``via: exec`` uses the Engine API's exec.
    """

    type: Literal["shell"]
    command: Argv = ("/bin/sh",)
    allow_args: bool = False
    record_input: bool = True
    via: Literal["nsenter", "exec"] = "nsenter"
    user: User | None = None
    privileged: bool = False

    @property
    def enters(self) -> bool:
        """``via: nsenter``: the spawner's child joins the container's namespaces and cgroups."""
        return self.via == "nsenter"

    @property
    def kind(self) -> str:
        """What a grant of this action gives, in words (for explain and show)."""
        who = f" as {self.user}" if self.user else ""
        root = " (host root)" if self.privileged else ""
        return f"shell via {self.via}{who}{root}"

    @property
    def consequence(self) -> str:
        """What that means for the session's privileges."""
        if self.via == "exec":
            return "the container's own user, capabilities, seccomp and AppArmor profiles stay in force"
        if self.privileged:
            return "host root inside the container's namespaces, with full capabilities and no seccomp"
        return "the container's own capabilities, no_new_privs, seccomp filter and cgroups, as docker exec"

    @property
    def wants_pty(self) -> bool:
        """A shell is used on a terminal."""
        return True


class HostAction(ActionBase):
    """A fixed argv on the Docker host; no target and no extra words."""

    needs_target: ClassVar[bool] = False
    type: Literal["host"]
    command: Argv
    record_input: bool = False


class SidekickAction(ActionBase):
    """``docker run --rm --volumes-from TARGET IMAGE COMMAND`` through the Engine API."""

    type: Literal["sidekick"]
    command: Argv
    image: Annotated[str, StringConstraints(min_length=1)] | None = None
    interactive: bool = False
    volumes_read_only: bool = False
    network: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = "none"
    allow_args: bool = False
    record_input: bool | None = None

    def stopped_line(self, action: str, target: str) -> str:
        """Say what the sidekick would do, and why it does not: it would not start the target."""
        command = " ".join(self.command)
        return (
            f"gateway: {target} is not running: {action} runs `{command}` in a sidekick beside a running"
            f" {target} and does not start it; start {target} first"
        )

    @property
    def records_input(self) -> bool:
        """Input is recorded for interactive sidekicks unless the policy says otherwise."""
        return self.interactive if self.record_input is None else self.record_input


class SignalAction(ActionBase):
    """``docker kill -s SIGNAL TARGET``."""

    recorded: ClassVar[bool] = False
    type: Literal["signal"]
    signal: Annotated[str, WithJsonSchema({"type": "string", "pattern": SIGNAL_PATTERN})]

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, value: str) -> str:
        if not re.fullmatch(SIGNAL_PATTERN, value):
            raise ValueError(f"unknown signal {value!r} (expected a name such as HUP, TERM, USR1)")
        name = value.upper()
        return name[3:] if name.startswith("SIG") else name


class LogsAction(ActionBase):
    """The target's recent log lines, optionally followed."""

    runs_on_stopped: ClassVar[bool] = True  # a stopped container's logs are still there

    type: Literal["logs"]
    tail: Annotated[int, Field(ge=0)] | Literal["all"] = 100
    follow: bool = False
    timestamps: bool = False


class BackupAction(ActionBase):
    """A tar stream of the target's paths on stdout."""

    recorded: ClassVar[bool] = False  # a tar stream: size and SHA-256 only
    runs_on_stopped: ClassVar[bool] = True  # the Engine API's archive endpoint reads a stopped container
    type: Literal["backup"]
    paths: Annotated[tuple[AbsPath, ...], Field(min_length=1)]


class AuditAction(ActionBase):
    """Charlotte's read-only queries over SSH: ``ssh audit@HOST sessions list --since 1d``."""

    needs_target: ClassVar[bool] = False
    takes_query: ClassVar[bool] = True
    recorded: ClassVar[bool] = False  # read-only queries: size and status in the session-end record
    type: Literal["audit"]

    @property
    def accepts_args(self) -> bool:
        """The command words are the query."""
        return True


class ApproveAction(ActionBase):
    """Approvers' queue: ``ssh approve@HOST`` lists, ``R-ID`` approves, ``deny R-ID why`` denies."""

    needs_target: ClassVar[bool] = False
    takes_query: ClassVar[bool] = True
    recorded: ClassVar[bool] = False  # decisions are audit records of their own
    type: Literal["approve"]

    @property
    def accepts_args(self) -> bool:
        """The command words are the request and the verb."""
        return True


class HelpAction(ActionBase):
    """``ssh help@HOST``: the caller's own grants, and how to use each."""

    needs_target: ClassVar[bool] = False
    recorded: ClassVar[bool] = False  # it only reads the policy
    type: Literal["help"]


#: the built-in types, for type checkers; at run time the registry is what counts
Action = Annotated[
    ShellAction
    | HostAction
    | SidekickAction
    | SignalAction
    | LogsAction
    | BackupAction
    | AuditAction
    | ApproveAction
    | HelpAction,
    Field(discriminator="type"),
]


def action_models() -> tuple[type[ActionBase], ...]:
    """Every registered action type's model."""
    return tuple(ACTION_REGISTRY.values())


class LabelSelector(_Model):
    """``{label: "key=value"}``: the container must carry that label with that value."""

    label: Annotated[str, StringConstraints(pattern=r"^[^=\s]+=.*$")]

    @property
    def pair(self) -> tuple[str, str]:
        """(key, value)."""
        key, _, value = self.label.partition("=")
        return key, value


def _network(value: object) -> object:
    """A ``from`` entry: checked against CIDR_PATTERN (as the schema does), host bits cleared."""
    if not (isinstance(value, str) and re.fullmatch(CIDR_PATTERN, value)):
        raise ValueError(f"not an IPv4 or IPv6 address or network: {value!r}")
    return ip_network(value, strict=False)


Network = Annotated[
    IPvAnyNetwork, BeforeValidator(_network), WithJsonSchema({"type": "string", "pattern": CIDR_PATTERN})
]
Names = Annotated[tuple[Annotated[str, StringConstraints(min_length=1)], ...], Field(min_length=1)]
TargetEntry = Annotated[str, StringConstraints(min_length=1)] | LabelSelector


class ApprovalRule(_Model):
    """``{from: [GROUP-OR-PRINCIPAL...], count: N}``: N different approvers from those."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    approvers: Names = Field(alias="from")
    count: Annotated[int, Field(ge=1, le=100)] = 1


class Moderation(_Model):
    """``{by: [GROUP-OR-PRINCIPAL...], count: N}``: the session runs only while N of them watch."""

    by: Names
    count: Annotated[int, Field(ge=1, le=100)] = 1


class Grant(_Model):
    """Who (principals or ``@group``) may do what (actions) to which containers (globs or labels).

    ``expires`` time-boxes a grant (break-glass); ``from`` limits it to source networks.
    ``reason`` (``required`` or a pattern the reason must match), ``approval`` (every
    rule must be met, never by the requester) with ``approval_window``, and
    ``moderated`` ask for a second person.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    principals: Names
    actions: Names
    targets: Annotated[tuple[TargetEntry, ...], Field(min_length=1)] | None = None
    expires: Annotated[datetime, WithJsonSchema({"type": "string", "pattern": EXPIRES_PATTERN})] | None = None
    sources: (
        Annotated[
            tuple[Network, ...],
            Field(min_length=1),
        ]
        | None
    ) = Field(default=None, alias="from")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    approval: Annotated[tuple[ApprovalRule, ...], Field(min_length=1)] | None = None
    approval_window: Duration = 3600
    moderated: Moderation | None = None

    @field_validator("expires", mode="before")
    @classmethod
    def _time_text(cls, value: object) -> object:
        if value is not None and not (isinstance(value, str) and re.fullmatch(EXPIRES_PATTERN, value)):
            raise ValueError("expected a date (2026-12-31) or a date and time (2026-12-31T18:00:00Z)")
        return value

    @field_validator("expires")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


GroupName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]


class PolicyFile(_Model):
    """One file under ``policies/``; files are merged by the loader."""

    version: Literal[1]
    groups: dict[GroupName, Names] = Field(default_factory=dict)
    actions: dict[ActionName, Action] = Field(default_factory=dict)
    grants: tuple[Grant, ...] = ()


_current_policy_file: type[PolicyFile] = PolicyFile


def policy_file_model() -> type[PolicyFile]:
    """The model a policy file is validated with: ``actions`` takes every registered type."""
    return _current_policy_file


def _rebuild_policy_file() -> None:
    """After a type registers: ``PolicyFile`` with ``actions`` as the union of every registered type."""
    global _current_policy_file  # noqa: PLW0603 - the one model the loader and the schema read, kept current
    models = tuple(ACTION_REGISTRY.values())
    union = Annotated[Union[models], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
    _current_policy_file = create_model(
        "PolicyFile",
        __base__=PolicyFile,
        __doc__=PolicyFile.__doc__,
        actions=(dict[ActionName, union], Field(default_factory=dict)),
    )
