"""The once-per-host jobs of the primary worker, beside the SSH listener.

The door socket, audit shipping, signed checkpoints, the per-minute summary of
turned-away connections, /metrics with /healthz and /readyz, readiness checks,
the systemd watchdog, and reaping a killed run's sidekicks.
"""

from __future__ import annotations

import asyncio
import contextlib
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway import notify, oplog
from gateway.audit.ship import Shipper, backlog, hostname, tls_context
from gateway.audit.syslog import Destination
from gateway.dispatch.door_server import DoorServer
from gateway.errors import AuditUnavailable, ConfigError, DockerError
from gateway.events import Event
from gateway.metrics import MetricsServer
from gateway.readiness import Readiness
from gateway.runtime import Runtime
from gateway.tasks import Tasks

SHIP_FLUSH_SECONDS = 5.0
REAP_TIMEOUT = 15.0


@dataclass
class HostJobs:
    """What the primary worker runs besides SSH; built before anything listens (bad options fail early)."""

    runtime: Runtime
    door: DoorServer
    shippers: list[Shipper]
    readiness: Readiness
    exporter: MetricsServer | None = field(default=None)

    @classmethod
    def prepare(cls, runtime: Runtime) -> HostJobs:
        """Bind the door socket and check the shipping destinations."""
        settings = runtime.settings
        door_socket = settings.door_socket or settings.state / "door.sock"
        door = DoorServer(
            runtime,
            door_socket,
            _uid("--door-user", settings.door_user),
            settings.keys_socket or door_socket.with_name("keys.sock"),
            _uid("--keys-user", settings.keys_user),
        )
        return cls(runtime, door, _shippers(runtime), Readiness(runtime))

    def start(
        self,
        tasks: Tasks,
        *,
        door: bool = True,
        workers: Callable[[], object] | None = None,
        fleet: Callable[[], str | None] | None = None,
    ) -> None:
        """Start every job as a task of *tasks* (and the metrics thread); the door too unless a worker
        serves it. *workers* adds what each worker runs to /healthz and /readyz; *fleet* says whether the
        fleet database answers (default: this process's own member)."""
        rt = self.runtime
        if fleet is not None:
            self.readiness.fleet = fleet
        self.exporter = _metrics(rt, self.readiness, workers)
        if door:
            tasks.spawn(self.door.run(), "door")
        if rt.settings.checkpoint_interval > 0:
            tasks.spawn(_checkpoints(rt), "checkpoints")
        if self.exporter is not None:
            tasks.spawn(self.readiness.run(), "readiness")
        interval = notify.watchdog_interval()
        if interval is not None:
            tasks.spawn(notify.feed_watchdog(interval), "watchdog")
        for shipper in self.shippers:
            tasks.spawn(shipper.run(), f"ship:{shipper.destination.label}")

    async def finish(self) -> None:
        """After the drain: ship the last records (server.stop, the final checkpoint), stop /metrics."""
        for shipper in self.shippers:
            await shipper.flush(SHIP_FLUSH_SECONDS)
        if self.exporter is not None:
            self.exporter.stop()


def _shippers(runtime: Runtime) -> list[Shipper]:
    """One shipper per ``--audit-syslog`` destination."""
    settings = runtime.settings
    destinations = [Destination.parse(url) for url in settings.audit_syslog]
    tls = None
    if any(d.scheme == "tls" for d in destinations):
        tls = tls_context(settings.audit_syslog_ca, settings.audit_syslog_cert, settings.audit_syslog_key)
    name = settings.host_name or hostname()
    return [
        Shipper(runtime.audit.directory, d, name, tls if d.scheme == "tls" else None) for d in destinations
    ]


def _uid(flag: str, user: str | None) -> int | None:
    """``--door-user`` or ``--keys-user`` as a uid (a name is looked up)."""
    if user is None:
        return None
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ConfigError(f"{flag}: no user {user!r}") from None


def _metrics(
    runtime: Runtime, readiness: Readiness, workers: Callable[[], object] | None
) -> MetricsServer | None:
    """/metrics, /healthz and /readyz, when asked for."""
    where = runtime.settings.metrics
    if where is None:
        return None

    def with_workers(found: dict[str, object]) -> dict[str, object]:
        return {**found, "workers": workers()} if workers is not None else found

    def health() -> dict[str, object]:
        audit, urls = runtime.audit.directory, runtime.settings.audit_syslog
        shipping = [backlog(audit, Destination.parse(u)).as_dict() for u in urls]
        return with_workers(
            {
                "status": "draining" if runtime.draining else "ok",
                "sessions": runtime.limits.sessions,  # every worker's (the shared count)
                "policy": runtime.policy.digest,
                "audit_shipping": shipping,
            }
        )

    exporter = MetricsServer(where.host, where.port, health, lambda: with_workers(readiness.snapshot()))
    exporter.start()
    oplog.log().info("metrics", listen=f"{where.host}:{exporter.port}")
    return exporter


async def _checkpoints(runtime: Runtime) -> None:
    """Sign the audit head every interval (and once more at shutdown, by _shutdown)."""
    while True:  # the first one at start-up: a verifier always finds the file
        try:
            runtime.write_checkpoint()
        except (OSError, ValueError) as exc:
            oplog.log().warning("checkpoint not written", error=str(exc))
        await asyncio.sleep(runtime.settings.checkpoint_interval)


SUMMARY_POLL = 5.0


def write_summaries(runtime: Runtime, *, everything: bool = False) -> None:
    """One record per source and reason for the connections turned away in a minute."""
    for source, reason, count in runtime.limits.refusals.due(everything=everything):
        with contextlib.suppress(AuditUnavailable):
            runtime.audit.emit(Event.CONNECTION_REFUSED, source=source, reason=reason, count=count)


async def refusal_summaries(runtime: Runtime) -> None:
    """Flush the per-minute summaries of turned-away connections (every worker its own)."""
    while True:
        await asyncio.sleep(SUMMARY_POLL)
        write_summaries(runtime)


async def reap_sidekicks(runtime: Runtime) -> None:
    """Remove sidekicks a previous run left behind (it was killed mid-session)."""
    try:
        count = await asyncio.wait_for(runtime.engine.reap(runtime.sidekick_labels), REAP_TIMEOUT)
    except (DockerError, TimeoutError):
        return  # no engine yet: container actions will say so
    if count:
        runtime.audit.emit(Event.SIDEKICK_REAPED, count=count)
