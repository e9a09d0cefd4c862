"""Everything a running gateway shares across connections."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.algorithms import Algorithms
from gateway.approvals import Approvals, LocalApprovals, RequestBook
from gateway.audit import AuditLog, checkpoint
from gateway.docker import Engine
from gateway.docker.engine import SIDEKICK_LABEL
from gateway.errors import AuditUnavailable, ConfigError
from gateway.events import Event
from gateway.fleet.down import in_fleet, mark_member
from gateway.hostkey import load_or_create_host_key
from gateway.keys import KeyRing, load_keys
from gateway.limits import Limits
from gateway.moderation import ModerationBoard
from gateway.policy import Policy
from gateway.policy_files import Fingerprint, fingerprint, load_policy
from gateway.session.registry import LiveSessions
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.fleet.member import Member


def load_snapshot(settings: Settings) -> tuple[KeyRing, Policy]:
    """Keys then policy (grants are checked against the principals)."""
    keys = load_keys(settings.keys)
    return keys, load_policy(settings.policies, keys)


STARTS = 4


@dataclass
class Runtime:
    """The settings, the policy in force, the audit log and the Engine client."""

    settings: Settings
    keys: KeyRing
    policy: Policy
    audit: AuditLog
    engine: Engine
    trusted_cas: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=lambda: Limits(Settings()))
    connections: set[Any] = field(default_factory=set)  # asyncssh connections, for shutdown
    sessions: LiveSessions = field(default_factory=LiveSessions)  # for the drain and /healthz
    #: session starts in progress at once (see session.core.Session.run)
    starting: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(STARTS))
    draining: bool = False
    algorithms: Algorithms = field(default_factory=lambda: Algorithms.from_options(None, None, None))
    #: the policy and key files as they were just before the policy in force was loaded
    loaded_from: Fingerprint = field(default_factory=list)
    #: access requests (filed, approved, denied), kept under STATE/requests
    requests: RequestBook = field(default_factory=lambda: RequestBook(Path("/nonexistent")))
    #: moderated sessions and their watchers
    moderation: ModerationBoard = field(default_factory=ModerationBoard)
    #: this process as a member of a fleet (None: everything stays on this host)
    fleet: Member | None = None
    #: the state's gateway is in a fleet, and this process is not its member (the in-process door)
    fleet_elsewhere: bool = False

    @classmethod
    def start(cls, settings: Settings, loaded: tuple[KeyRing, Policy] | None = None) -> Runtime:
        """Load everything; raise LoadError or ConfigError before anything listens.

        *loaded*: the keys and policy already in force (a worker starts with its supervisor's, never
        reading the files itself: one policy for the whole gateway, and no file can stop a worker).
        """
        loaded_from = fingerprint(settings.policies, settings.keys)  # before: no change is missed
        keys, policy = loaded if loaded is not None else load_snapshot(settings)
        try:
            settings.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create state directory {settings.state}: {exc}") from exc
        return cls(
            settings=settings,
            keys=keys,
            policy=policy,
            audit=AuditLog(settings.state / "audit"),
            engine=Engine(),
            trusted_cas=_trusted_cas(settings.trusted_user_ca_keys),
            limits=Limits(settings),
            loaded_from=loaded_from,
            requests=RequestBook(settings.state / "requests"),
            moderation=ModerationBoard(settings.state / "moderation"),
            fleet_elsewhere=in_fleet(settings.state),
            algorithms=Algorithms.from_options(settings.ciphers, settings.macs, settings.kex_algs),
        )

    @property
    def approvals(self) -> Approvals:
        """Where access requests are filed and decided: the fleet's database, or this host's files."""
        return self.fleet.approvals if self.fleet is not None else LocalApprovals(self.requests)

    async def join_fleet(self, *, leader: bool, on_change: Callable[[str], None] | None = None) -> None:
        """Become a member of the fleet, when ``--fleet`` names one (see ``gateway.fleet.member``)."""
        from gateway.fleet.member import Member  # noqa: PLC0415 - psycopg only with --fleet

        def audit(event: Event, fields: dict[str, Any]) -> None:
            with contextlib.suppress(AuditUnavailable):
                self.audit.emit(event, durable=True, **fields)

        self.fleet = Member.create(self.settings, load_or_create_host_key(self.settings.state), audit)
        mark_member(self.settings.state, self.fleet.host if self.fleet is not None else None)
        self.fleet_elsewhere = False
        if self.fleet is not None:
            self.fleet.running = lambda: (self.policy.digest, self.limits.sessions)
            await self.fleet.start(leader=leader, on_change=on_change)

    async def leave_fleet(self) -> None:
        """Close the fleet's connections (what this process held is given back)."""
        if self.fleet is not None:
            await self.fleet.close()

    @property
    def checkpoint_public(self) -> Path | None:
        """Where the checkpoint public key is, when this gateway signs checkpoints."""
        if self.settings.checkpoint_interval <= 0:
            return None
        return self.settings.state / "audit" / "checkpoint.pub"

    def write_checkpoint(self) -> None:
        """Sign the chain's head now (when this gateway signs checkpoints)."""
        if self.settings.checkpoint_interval <= 0:
            return
        checkpoint.write_checkpoint(self.audit.directory, self._signing_key)

    @functools.cached_property
    def _signing_key(self) -> Ed25519PrivateKey:
        """The checkpoint key, read (or made) once; a bad key raises on every try, nothing is cached."""
        return checkpoint.signing_key(self.audit.directory, self.settings.checkpoint_key)

    @functools.cached_property
    def sidekick_labels(self) -> dict[str, str]:
        """Labels that mark a sidekick as started by the gateway on this state directory."""
        digest = hashlib.sha256(str(self.settings.state.resolve()).encode()).hexdigest()[:16]
        return {SIDEKICK_LABEL: "1", "org.gateway.state": digest}

    @property
    def recordings(self) -> Path:
        """Where asciicast files go."""
        return self.settings.state / "recordings"


def _trusted_cas(path: Path | None) -> frozenset[str]:
    """SHA-256 fingerprints of the CA keys in *path* (OpenSSH public key lines)."""
    if path is None:
        return frozenset()
    import asyncssh  # noqa: PLC0415 - only `serve` with certificates needs it

    try:
        keys = asyncssh.read_public_key_list(str(path))
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"cannot read trusted CA keys {path}: {exc}") from exc
    return frozenset(k.get_fingerprint("sha256") for k in keys)
