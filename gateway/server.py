"""asyncssh lifecycle only: listen, run until SIGTERM/SIGINT, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
from collections.abc import Callable

import asyncssh

from gateway import oplog, strictmodes
from gateway.audit import checkpoint
from gateway.audit.ship import Shipper, backlog, hostname, tls_context
from gateway.audit.syslog import Destination
from gateway.auth import GatewayServer
from gateway.dispatch.door_server import DoorServer
from gateway.errors import AuditUnavailable, ConfigError, DockerError
from gateway.hostkey import load_or_create_host_key
from gateway.metrics import MetricsServer
from gateway.reload import reload, watch
from gateway.runtime import Runtime
from gateway.sessions.recover import mark_interrupted
from gateway.settings import Settings
from gateway.tasks import Tasks

CLOSE_GRACE = 5.0
SHIP_FLUSH_SECONDS = 5.0
REAP_TIMEOUT = 15.0


async def listen(runtime: Runtime) -> asyncssh.SSHAcceptor:
    """Start listening with every forwarding and non-key auth method off."""
    settings = runtime.settings
    return await asyncssh.create_server(
        lambda: GatewayServer(runtime),
        settings.listen.host,
        settings.listen.port,
        server_host_keys=[load_or_create_host_key(settings.state)],
        server_version="gateway",
        encoding=None,
        line_editor=False,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
        password_auth=False,
        kbdint_auth=False,
        host_based_auth=False,
        gss_host=None,
        login_timeout=settings.login_timeout,
        reuse_port=settings.reuse_port,
        # The offer is narrowed per client to the fast ciphers it has (sshhooks.install_kex_hooks).
        encryption_algs=list(runtime.algorithms.ciphers),
        mac_algs=list(runtime.algorithms.macs),
        kex_algs=list(runtime.algorithms.kex),
    )


async def serve(
    settings: Settings, on_ready: Callable[[str, int], None], children: tuple[int, ...] = ()
) -> None:
    """Run the gateway until SIGTERM or SIGINT; *on_ready* gets the bound address.

    With several workers, the first (``worker == 0``) also does the once-per-host
    jobs (crash recovery, reaping sidekicks, checkpoints, metrics) and passes
    SIGTERM and SIGHUP on to the *children*.
    """
    primary = settings.worker == 0
    if settings.strict_modes and primary:
        strictmodes.check(settings.policies, settings.keys, settings.state)
    runtime = Runtime.start(settings)
    if primary:
        mark_interrupted(settings.state, runtime.audit)
        await _reap_sidekicks(runtime)
    shippers = _shippers(runtime) if primary else []  # bad URLs fail here, before anything listens
    door = (
        DoorServer(runtime, settings.door_socket or settings.state / "door.sock", _door_uid(settings))
        if primary
        else None
    )
    acceptor = await listen(runtime)
    port = acceptor.get_port()
    runtime.audit.emit("server.start", listen=f"{settings.listen.host}:{port}", policy=runtime.policy.digest)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    hangups = asyncio.Event()

    def hangup() -> None:
        _signal_children(children, signal.SIGHUP)
        hangups.set()

    loop.add_signal_handler(signal.SIGHUP, hangup)
    on_ready(settings.listen.host, port)
    oplog.configure(settings.log_format)
    if primary:  # the "listening on" line stays the first line on stdout
        oplog.log().info("started", listen=f"{settings.listen.host}:{port}", workers=settings.workers)
    exporter = _metrics(runtime) if primary else None
    async with Tasks("server") as tasks:
        tasks.spawn(_reload_on_hangup(runtime, hangups), "sighup")
        if door is not None:
            tasks.spawn(door.run(), "door")
        if settings.checkpoint_interval > 0 and primary:
            tasks.spawn(_checkpoints(runtime), "checkpoints")
        tasks.spawn(watch(runtime), "watch")
        tasks.spawn(_refusal_summaries(runtime), "refusals")
        for shipper in shippers:
            tasks.spawn(shipper.run(), f"ship:{shipper.destination.label}")
        try:
            await stop.wait()
        finally:
            _signal_children(children, signal.SIGTERM)
            await _shutdown(runtime, acceptor)
            for shipper in shippers:  # server.stop and the final checkpoint go out too
                await shipper.flush(SHIP_FLUSH_SECONDS)
            if exporter is not None:
                exporter.stop()
            oplog.log().info("stopped")


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


def _door_uid(settings: Settings) -> int | None:
    """``--door-user`` as a uid (a name is looked up)."""
    user = settings.door_user
    if user is None:
        return None
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ConfigError(f"--door-user: no user {user!r}") from None


async def _reload_on_hangup(runtime: Runtime, hangups: asyncio.Event) -> None:
    """Reload once per SIGHUP (several at once fold into one), off the signal handler."""
    while True:
        await hangups.wait()
        hangups.clear()
        await reload(runtime, "SIGHUP")


def _signal_children(children: tuple[int, ...], sig: signal.Signals) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _metrics(runtime: Runtime) -> MetricsServer | None:
    """/metrics and /healthz, when asked for."""
    where = runtime.settings.metrics
    if where is None:
        return None

    def health() -> dict[str, object]:
        status = "draining" if runtime.draining else "ok"
        audit, urls = runtime.audit.directory, runtime.settings.audit_syslog
        shipping = [backlog(audit, Destination.parse(u)).as_dict() for u in urls]
        return {
            "status": status,
            "sessions": len(runtime.sessions),
            "policy": runtime.policy.digest,
            "audit_shipping": shipping,
        }

    exporter = MetricsServer(where.host, where.port, health)
    exporter.start()
    oplog.log().info("metrics", listen=f"{where.host}:{exporter.port}")
    return exporter


async def _checkpoints(runtime: Runtime) -> None:
    """Sign the audit head every interval (and once more at shutdown, by _shutdown)."""
    directory = runtime.audit.directory
    key = checkpoint.signing_key(directory, runtime.settings.checkpoint_key)
    while True:  # the first one at start-up: a verifier always finds the file
        with contextlib.suppress(OSError):
            checkpoint.write_checkpoint(directory, key)
        await asyncio.sleep(runtime.settings.checkpoint_interval)


SUMMARY_POLL = 5.0


def _write_summaries(runtime: Runtime, *, everything: bool = False) -> None:
    """One record per source and reason for the connections turned away in a minute."""
    for source, reason, count in runtime.limits.refusals.due(everything=everything):
        with contextlib.suppress(AuditUnavailable):
            runtime.audit.emit("connection.refused", source=source, reason=reason, count=count)


async def _refusal_summaries(runtime: Runtime) -> None:
    """Flush the per-minute summaries of turned-away connections."""
    while True:
        await asyncio.sleep(SUMMARY_POLL)
        _write_summaries(runtime)


async def _reap_sidekicks(runtime: Runtime) -> None:
    """Remove sidekicks a previous run left behind (it was killed mid-session)."""
    try:
        count = await asyncio.wait_for(runtime.engine.reap(runtime.sidekick_labels), REAP_TIMEOUT)
    except (DockerError, TimeoutError):
        return  # no engine yet: container actions will say so
    if count:
        runtime.audit.emit("sidekick.reaped", count=count)


async def _drain(runtime: Runtime) -> None:
    """Tell the open sessions, and give them until the deadline to finish."""
    seconds = runtime.settings.drain_seconds
    if not runtime.sessions:
        return
    oplog.log().info("draining", sessions=len(runtime.sessions), seconds=seconds)
    with contextlib.suppress(Exception):
        runtime.audit.emit("server.drain", sessions=len(runtime.sessions), seconds=seconds)
    for session in runtime.sessions:
        session.notify(f"gateway: the gateway is shutting down; this session ends within {seconds:g}s")
    await runtime.sessions.wait_quiet(seconds)


async def _shutdown(runtime: Runtime, acceptor: asyncssh.SSHAcceptor) -> None:
    runtime.draining = True
    acceptor.close()
    await acceptor.wait_closed()
    await _drain(runtime)
    for conn in list(runtime.connections):
        conn.close()
    for conn in list(runtime.connections):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.wait_closed(), CLOSE_GRACE)
    await runtime.sessions.wait_quiet(
        CLOSE_GRACE
    )  # their children are being ended: let them write session.end
    _write_summaries(runtime, everything=True)
    with contextlib.suppress(Exception):
        runtime.audit.emit("server.stop")
    if runtime.settings.checkpoint_interval > 0:
        with contextlib.suppress(OSError):
            directory = runtime.audit.directory
            checkpoint.write_checkpoint(
                directory, checkpoint.signing_key(directory, runtime.settings.checkpoint_key)
            )
    await runtime.engine.close()
    runtime.audit.close()
