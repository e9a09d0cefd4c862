"""asyncssh lifecycle only: listen, run until SIGTERM/SIGINT, stop cleanly.

Two shapes of the same thing: ``serve``, one process that listens and also
does the host's jobs (the door, checkpoints, shipping, metrics); and
``serve_worker``, one of the supervisor's workers (``gateway.supervisor``),
which listens on the supervisor's port with its own socket (``SO_REUSEPORT``:
the kernel spreads connections over the workers), follows the policy the
supervisor loads, and leaves the host's jobs to it (worker 1 also serves the
door).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import asyncssh

from gateway import notify, oplog
from gateway.audit.grants import snapshot_records
from gateway.auth import GatewayServer
from gateway.control import Control, Message
from gateway.dispatch.door_server import DoorServer
from gateway.errors import GatewayError
from gateway.events import Event
from gateway.evidence.recover import mark_interrupted
from gateway.forwarding import server_options
from gateway.hostkey import load_or_create_host_key
from gateway.jobs import HostJobs, reap_sidekicks, refusal_summaries, write_summaries
from gateway.keys import KeyRing
from gateway.policy.compiled import Policy
from gateway.policy.diff import facts
from gateway.privsep.monitor import Separated
from gateway.reload import adopt, reload, revoke, watch
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.sshhooks import skip_packet_logging
from gateway.tasks import Tasks

CLOSE_GRACE = 5.0


async def listen(runtime: Runtime, *, reuse_port: bool = False) -> asyncssh.SSHAcceptor | Separated:
    """Start listening with every forwarding and non-key auth method off (*reuse_port*: beside the
    other workers, each with its own socket: the kernel spreads connections over them).

    With ``--net-user``, an unprivileged network worker listens and this process is its monitor.
    """
    settings = runtime.settings
    if settings.net_user is not None:
        separated = Separated(runtime, reuse_port=reuse_port)
        await separated.started()
        return separated
    return await asyncssh.create_server(
        lambda: GatewayServer(runtime),
        settings.listen.host,
        settings.listen.port,
        reuse_port=reuse_port,
        server_host_keys=[load_or_create_host_key(settings.state)],
        **server_options(runtime.algorithms, settings.login_timeout),
    )


def announce(runtime: Runtime, listen: str, **fields: Any) -> None:
    """``server.start``, then the whole policy in force as ``policy.snapshot`` (for ``audit grants``)."""
    runtime.audit.emit(Event.SERVER_START, listen=listen, policy=runtime.policy.digest, **fields)
    for part in snapshot_records(sorted(facts(runtime.policy)), runtime.policy.digest):
        runtime.audit.emit(Event.POLICY_SNAPSHOT, **part)


def started(runtime: Runtime, listen: str) -> None:
    """The operator's lines once the gateway listens: systemd's READY, and K_0's warning."""
    settings = runtime.settings
    oplog.configure(settings.log_format)
    oplog.log().info("started", listen=listen, workers=settings.workers)
    notify.ready(f"listening on {listen}")
    if (settings.state / "audit" / "initial.key").exists():  # after the first line: it stays first
        oplog.log().warning(
            "initial key still on this host",
            path=str(settings.state / "audit" / "initial.key"),
            why="root here can recompute every MAC and rewrite the chain",
            fix="gateway audit export-key",
        )


def stop_signals() -> asyncio.Event:
    """Set on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def hangup_signals() -> asyncio.Event:
    """Set on SIGHUP (several at once fold into one)."""
    hangups = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangups.set)
    return hangups


async def serve(settings: Settings, on_ready: Callable[[str, int], None]) -> None:
    """Run the gateway in this one process until SIGTERM or SIGINT; *on_ready* gets the bound address."""
    runtime = Runtime.start(settings)
    skip_packet_logging()
    mark_interrupted(settings.state, runtime.audit)
    await reap_sidekicks(runtime)
    jobs = HostJobs.prepare(runtime)
    await runtime.join_fleet(leader=True)
    acceptor = await listen(runtime)
    where = f"{settings.listen.host}:{acceptor.get_port()}"
    announce(runtime, where)
    stop, hangups = stop_signals(), hangup_signals()
    on_ready(settings.listen.host, acceptor.get_port())
    started(runtime, where)
    async with Tasks("server") as tasks:
        tasks.spawn(reload_on_hangup(runtime, hangups), "sighup")
        tasks.spawn(watch(runtime), "watch")
        tasks.spawn(refusal_summaries(runtime), "refusals")
        jobs.start(tasks)
        try:
            await stop.wait()
        finally:
            notify.stopping()
            await _shutdown(runtime, acceptor)
            await runtime.leave_fleet()
            finish(runtime)
            await jobs.finish()
            await close(runtime)
    failed(acceptor)


async def serve_worker(
    settings: Settings, door: DoorServer | None, control: Control, loaded: tuple[KeyRing, Policy]
) -> None:
    """One of the supervisor's workers, until SIGTERM (or the supervisor's end), starting with the keys
    and policy the supervisor has in force (*loaded*), on the port the supervisor holds."""
    runtime = Runtime.start(settings, loaded)
    skip_packet_logging()
    await runtime.join_fleet(
        leader=settings.worker == 1, on_change=lambda state: control.send({"fleet": state})
    )
    acceptor = await listen(runtime, reuse_port=True)
    stop = stop_signals()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor reloads
    oplog.configure(settings.log_format)
    follow_supervisor(runtime, control, stop)
    async with Tasks(f"worker{settings.worker}") as tasks:
        tasks.spawn(refusal_summaries(runtime), "refusals")
        if door is not None:  # the door's tickets live in one process: worker 1's
            door.rt = runtime
            tasks.spawn(door.run(unlink=False), "door")
        try:
            await stop.wait()
        finally:
            control.close()
            await _shutdown(runtime, acceptor)
            await runtime.leave_fleet()
            await close(runtime)
    failed(acceptor)


def failed(acceptor: asyncssh.SSHAcceptor | Separated) -> None:
    """GatewayError when this process stopped because its network worker ended by itself."""
    if isinstance(acceptor, Separated) and acceptor.failed:
        raise GatewayError("the network worker ended unexpectedly; this gateway process stopped")


def follow_supervisor(runtime: Runtime, control: Control, stop: asyncio.Event) -> None:
    """Run the policy the supervisor names, drop the keys it drops, and say what this worker runs."""
    tasks: set[asyncio.Task[None]] = set()

    def report() -> None:
        fleet = runtime.fleet.state if runtime.fleet is not None else None
        control.send({"policy": runtime.policy.digest, "pid": os.getpid(), "worker": runtime.settings.worker,
                      "fleet": fleet})  # fmt: skip

    async def apply(message: Message) -> None:
        if isinstance(message.get("policy"), str):
            await adopt(runtime, message["policy"])
        if isinstance(message.get("revoke"), list):
            revoke(runtime, message["revoke"])
        report()

    def on_message(message: Message) -> None:
        task = asyncio.get_running_loop().create_task(apply(message), name="control")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    control.listen(on_message, stop.set)  # the supervisor gone: this worker ends too
    report()


async def reload_on_hangup(
    runtime: Runtime, hangups: asyncio.Event, then: Callable[[], None] | None = None
) -> None:
    """Reload once per SIGHUP (several at once fold into one), off the signal handler; then call *then*."""
    while True:
        await hangups.wait()
        hangups.clear()
        notify.reloading()
        applied = await reload(runtime, "SIGHUP")
        if then is not None:
            then()
        notify.reloaded(
            f"policy {runtime.policy.digest[:12]}" + ("" if applied else " (the reload was refused)")
        )


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


async def _shutdown(runtime: Runtime, acceptor: asyncssh.SSHAcceptor | Separated) -> None:
    """Stop accepting, drain, close every connection, and let the sessions write their end."""
    runtime.draining = True
    acceptor.close()
    await acceptor.wait_closed()
    await _drain(runtime)
    for conn in list(runtime.connections):
        conn.close()
    if isinstance(acceptor, Separated):
        await acceptor.stop()
    for conn in list(runtime.connections):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.wait_closed(), CLOSE_GRACE)
    await runtime.sessions.wait_quiet(
        CLOSE_GRACE
    )  # their children are being ended: let them write session.end
    write_summaries(runtime, everything=True)


def finish(runtime: Runtime) -> None:
    """The gateway's last records (``server.stop``, a signed checkpoint), then close (after its jobs)."""
    with contextlib.suppress(Exception):
        runtime.audit.emit(Event.SERVER_STOP)
    with contextlib.suppress(OSError, ValueError):
        runtime.write_checkpoint()


async def close(runtime: Runtime) -> None:
    """Close the engine client and the audit log."""
    await runtime.engine.close()
    runtime.audit.close()
