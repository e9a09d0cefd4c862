"""asyncssh lifecycle only: listen, run until SIGTERM/SIGINT, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

import asyncssh

from gateway import notify, oplog
from gateway.audit.grants import snapshot_records
from gateway.auth import GatewayServer
from gateway.events import Event
from gateway.evidence.recover import mark_interrupted
from gateway.hostkey import load_or_create_host_key
from gateway.jobs import HostJobs, reap_sidekicks, refusal_summaries, write_summaries
from gateway.policy.diff import facts
from gateway.reload import reload, watch
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.sshhooks import skip_packet_logging
from gateway.tasks import Tasks

CLOSE_GRACE = 5.0


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
    runtime = Runtime.start(settings)
    skip_packet_logging()
    jobs = None
    if primary:
        mark_interrupted(settings.state, runtime.audit)
        await reap_sidekicks(runtime)
        jobs = HostJobs.prepare(runtime)
    acceptor = await listen(runtime)
    port = acceptor.get_port()
    runtime.audit.emit(
        Event.SERVER_START, listen=f"{settings.listen.host}:{port}", policy=runtime.policy.digest
    )
    if primary:  # the policy in force, for `audit grants` (reloads then carry only the change)
        for part in snapshot_records(sorted(facts(runtime.policy)), runtime.policy.digest):
            runtime.audit.emit(Event.POLICY_SNAPSHOT, **part)
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
        notify.ready(f"listening on {settings.listen.host}:{port}")
        if (settings.state / "audit" / "initial.key").exists():  # after the first line: it stays first
            oplog.log().warning(
                "initial key still on this host",
                path=str(settings.state / "audit" / "initial.key"),
                why="root here can recompute every MAC and rewrite the chain",
                fix="gateway audit export-key",
            )
    async with Tasks("server") as tasks:
        tasks.spawn(_reload_on_hangup(runtime, hangups), "sighup")
        tasks.spawn(watch(runtime), "watch")
        tasks.spawn(refusal_summaries(runtime), "refusals")
        if jobs is not None:
            jobs.start(tasks)
        try:
            await stop.wait()
        finally:
            if primary:
                notify.stopping()
            _signal_children(children, signal.SIGTERM)
            await _shutdown(runtime, acceptor)
            if jobs is not None:
                await jobs.finish()
            oplog.log().info("stopped")


async def _reload_on_hangup(runtime: Runtime, hangups: asyncio.Event) -> None:
    """Reload once per SIGHUP (several at once fold into one), off the signal handler."""
    while True:
        await hangups.wait()
        hangups.clear()
        notify.reloading()
        applied = await reload(runtime, "SIGHUP")
        notify.reloaded(
            f"policy {runtime.policy.digest[:12]}" + ("" if applied else " (the reload was refused)")
        )


def _signal_children(children: tuple[int, ...], sig: signal.Signals) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def _drain(runtime: Runtime) -> None:
    """Tell the open sessions, and give them until the deadline to finish."""
    seconds = runtime.settings.drain_seconds
    if not runtime.sessions:
        return
    oplog.log().info("draining", sessions=len(runtime.sessions), seconds=seconds)
    with contextlib.suppress(Exception):
        runtime.audit.emit(Event.SERVER_DRAIN, sessions=len(runtime.sessions), seconds=seconds)
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
    write_summaries(runtime, everything=True)
    with contextlib.suppress(Exception):
        runtime.audit.emit(Event.SERVER_STOP)
    with contextlib.suppress(OSError, ValueError):
        runtime.write_checkpoint()
    await runtime.engine.close()
    runtime.audit.close()
