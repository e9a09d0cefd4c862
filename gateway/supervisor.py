"""``serve --workers N`` (N > 1): a supervisor that serves no client, and N workers that do.

As uvicorn's and gunicorn's: the supervisor holds the port (bound, never
listening) and the door's sockets, loads the policy, writes the gateway's own records (start,
snapshot, reloads, stop, checkpoints), ships the chain, serves /metrics, and
forks the workers, each listening on that port with its own ``SO_REUSEPORT``
socket (the kernel spreads connections evenly over them; a dead worker's
socket leaves the group, and new connections go to the others). It watches each
worker through a pidfd: a worker that dies is replaced at once (its index
kept), with a ``worker.exited`` record and ``gateway_worker_restarts``, and
what it held in the shared limits is given back first (each count has an
owner, ``limits.release_owner``). The policy is loaded once per change, here,
and every worker is told to take that very digest (``control``): one
``policy.reload`` record per change; /readyz names what each worker runs.
SIGTERM stops the workers (each drains its sessions), then the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from gateway import loop, metrics, notify, oplog
from gateway.claim import Claim
from gateway.control import Control, Message
from gateway.dispatch.door_server import DoorServer
from gateway.errors import AuditUnavailable, ConfigError
from gateway.events import Event
from gateway.evidence.recover import mark_interrupted
from gateway.hostkey import load_or_create_host_key
from gateway.jobs import HostJobs, reap_sidekicks
from gateway.reload import watch
from gateway.runtime import Runtime
from gateway.server import (
    announce,
    close,
    finish,
    hangup_signals,
    reload_on_hangup,
    serve_worker,
    started,
    stop_signals,
)
from gateway.settings import Listen, Settings
from gateway.tasks import Tasks

#: how long the workers have to drain and stop once told to, beyond --drain-seconds
STOP_GRACE = 15.0
PR_SET_PDEATHSIG = 1
#: how long the workers may take to start listening
START_SECONDS = 60.0
#: a worker that dies this soon after its start is restarted after a growing delay
QUICK_DEATH = 1.0
RESTART_FIRST = 0.1
RESTART_MAX = 5.0


@dataclass
class Worker:
    """One worker process as the supervisor sees it."""

    index: int
    pid: int
    pidfd: int
    control: Control
    #: the policy digest it reported running
    policy: str = ""
    #: whether its fleet database answers (``up``, ``down``; None: no fleet)
    fleet: str | None = None
    started: float = field(default_factory=time.time)


def reserve(settings: Settings) -> socket.socket:
    """The port, held for the supervisor's life: bound with ``SO_REUSEPORT`` but never listening (so it
    takes no connection), which lets each worker listen there with its own socket (the kernel spreads
    connections evenly over them) and a restarted worker find the same port."""
    family = socket.AF_INET6 if ":" in settings.listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((settings.listen.host, settings.listen.port))
    except OSError:
        sock.close()
        raise
    return sock


def supervise(settings: Settings, on_ready: Callable[[str, int], None], held: Claim | None) -> None:
    """Run the supervisor and its workers until SIGTERM."""
    port = reserve(settings)
    try:
        listen = Listen(host=settings.listen.host, port=int(port.getsockname()[1]))
        loop.run(Supervisor(settings.model_copy(update={"listen": listen}), port, held).run(on_ready))
    finally:
        port.close()


class Supervisor:
    """The parent of the workers; it serves no client."""

    def __init__(self, settings: Settings, listener: socket.socket, held: Claim | None) -> None:
        self.settings = settings
        self.listener = listener
        self.held = held
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self.gone = asyncio.Event()
        #: set once every worker has said it listens
        self.listening = asyncio.Event()
        self.rt: Runtime | None = None
        self.door: DoorServer | None = None
        #: the key fingerprints in force when the workers were last told
        self.keys: set[str] = set()
        #: workers that died as they started, in a row, by index (their restarts back off)
        self.failures: dict[int, int] = {}

    async def run(self, on_ready: Callable[[str, int], None]) -> None:
        """Start, fork the workers, supervise until SIGTERM, stop them, stop."""
        rt = self.rt = Runtime.start(self.settings)
        self.keys = set(rt.keys.by_fingerprint)
        mark_interrupted(self.settings.state, rt.audit)  # before any worker writes to the chain
        await reap_sidekicks(rt)
        jobs = HostJobs.prepare(rt)
        self.door = jobs.door
        load_or_create_host_key(self.settings.state)  # once, here: workers must not race to make it
        for index in range(1, self.settings.workers + 1):
            self._start(index)
        try:  # each worker reports once it listens: only then is the gateway ready
            await asyncio.wait_for(self.listening.wait(), START_SECONDS)
        except TimeoutError:
            for worker in list(self.workers.values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            raise ConfigError(f"the workers did not start within {START_SECONDS:g} s") from None
        port = int(self.listener.getsockname()[1])
        where = f"{self.settings.listen.host}:{port}"
        announce(rt, where, workers=self.settings.workers)
        stop, hangups = stop_signals(), hangup_signals()
        on_ready(self.settings.listen.host, port)
        started(rt, where)
        async with Tasks("supervisor") as tasks:
            tasks.spawn(reload_on_hangup(rt, hangups, self._broadcast_policy), "sighup")
            tasks.spawn(watch(rt, then=self._broadcast_policy), "watch")
            jobs.start(tasks, door=False, workers=self.view, fleet=self.fleet_state)
            try:
                await stop.wait()
            finally:
                notify.stopping()
                await self._stop_workers()
                finish(rt)
                await jobs.finish()
                self.door.close()
                await close(rt)

    # ------------------------------------------------------------ the workers

    def _start(self, index: int) -> None:
        """Fork worker *index* (from the event loop: the child leaves it at once)."""
        ours, theirs = socket.socketpair()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            self._child(index, parent, Control(theirs))
        theirs.close()
        control = Control(ours)
        worker = Worker(index, pid, os.pidfd_open(pid), control)
        self.workers[index] = worker
        asyncio.get_running_loop().add_reader(worker.pidfd, self._exited, worker)
        control.listen(lambda message: self._reported(worker, message), lambda: None)

    def _child(self, index: int, parent: int, control: Control) -> NoReturn:
        """In the new worker: leave the supervisor's loop and signals behind, and serve."""
        status = 0
        try:
            _leave_the_parents_loop()
            _die_with(parent)
            if self.held is not None:
                self.held.close()  # the supervisor holds the address's name
            settings = self.settings.model_copy(update={"worker": index})
            door = self.door if index == 1 else None
            assert self.rt is not None
            loaded = (self.rt.keys, self.rt.policy)  # the supervisor's: one policy, never read again here
            self.listener.close()  # the supervisor's hold on the port; the worker listens with its own
            loop.run(serve_worker(settings, door, control, loaded))
        except BaseException as exc:  # whatever ended it, the worker leaves with a status, and says why
            status = 1
            with contextlib.suppress(Exception):
                oplog.log().error("worker failed", worker=index, error=f"{type(exc).__name__}: {exc}"[:300])
        os._exit(status)

    def _reported(self, worker: Worker, message: Message) -> None:
        if message.get("fleet") in ("up", "down"):
            worker.fleet = message["fleet"]
        if isinstance(message.get("policy"), str):
            worker.policy = message["policy"]
            if all(w.policy for w in self.workers.values()) and len(self.workers) == self.settings.workers:
                self.listening.set()
            if self.rt is not None and worker.policy != self.rt.policy.digest:
                worker.control.send({"policy": self.rt.policy.digest})  # it started on another one

    def _exited(self, worker: Worker) -> None:
        """A worker ended: give back what it held, record it, and (unless stopping) replace it."""
        running = asyncio.get_running_loop()
        running.remove_reader(worker.pidfd)
        os.close(worker.pidfd)
        worker.control.close()
        _, status = os.waitpid(worker.pid, 0)
        self.workers.pop(worker.index, None)
        assert self.rt is not None
        released = self.rt.limits.release_owner(worker.index)
        with contextlib.suppress(Exception):
            metrics.mark_dead(worker.pid)
        if self.stopping:
            if not self.workers:
                self.gone.set()
            return
        quick = time.time() - worker.started < QUICK_DEATH
        self.failures[worker.index] = self.failures.get(worker.index, 0) + 1 if quick else 0
        delay = min(RESTART_MAX, RESTART_FIRST * 2 ** self.failures[worker.index]) if quick else 0.0
        if delay:  # it died as it started: again at once would only spin
            asyncio.get_running_loop().call_later(delay, self._restart, worker, status, released)
            return
        self._restart(worker, status, released)

    def _restart(self, worker: Worker, status: int, released: list[tuple[str, float]]) -> None:
        assert self.rt is not None
        if self.stopping:
            return
        self._start(worker.index)
        replacement = self.workers[worker.index].pid
        metrics.WORKER_RESTARTS.inc()
        how: dict[str, Any] = (
            {"signal": os.WTERMSIG(status)}
            if os.WIFSIGNALED(status)
            else {"status": os.waitstatus_to_exitcode(status)}
        )
        oplog.log().warning(
            "worker replaced", worker=worker.index, pid=worker.pid, replaced_by=replacement, **how
        )
        with contextlib.suppress(AuditUnavailable):
            self.rt.audit.emit(
                Event.WORKER_EXITED,
                worker=worker.index,
                pid=worker.pid,
                replaced_by=replacement,
                released={key: count for key, count in released if not key.startswith("unauth-from:")},
                **how,
            )

    def _broadcast_policy(self) -> None:
        """After a reload (applied or not): every worker runs the policy in force here, and drops the
        keys dropped here (a failed reload still revokes removed keys)."""
        assert self.rt is not None
        now = set(self.rt.keys.by_fingerprint)
        gone, self.keys = sorted(self.keys - now), now
        for worker in self.workers.values():
            worker.control.send({"policy": self.rt.policy.digest, "revoke": gone})

    def view(self) -> dict[str, object]:
        """What /healthz and /readyz show of the workers: pid and the policy each one runs."""
        return {
            str(w.index): {"pid": w.pid, "policy": w.policy, "since": round(w.started, 3)}
            | ({"fleet": w.fleet} if w.fleet else {})
            for w in sorted(self.workers.values(), key=lambda w: w.index)
        }

    def fleet_state(self) -> str | None:
        """``down`` when a worker's fleet database does not answer, ``up`` when all do, None without one."""
        states = {w.fleet for w in self.workers.values() if w.fleet}
        return ("down" if "down" in states else "up") if states else None

    async def _stop_workers(self) -> None:
        """SIGTERM to each worker (each drains its sessions); SIGKILL to any still there after the grace."""
        self.stopping = True
        if not self.workers:
            return
        for worker in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.gone.wait(), self.settings.drain_seconds + STOP_GRACE)
        except TimeoutError:
            for worker in list(self.workers.values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), 5)


def _leave_the_parents_loop() -> None:
    """The fork copied the supervisor's running loop and its signal wiring: drop them (asyncio on 3.11
    does not do this at fork; 3.12 does), so the worker's own loop starts clean."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    asyncio.events._set_running_loop(None)  # asyncio's own low-level API, for event loops
    asyncio.set_event_loop(None)


def _die_with(parent: int) -> None:
    """A worker ends with its supervisor, as abruptly (``kill -9`` of the gateway ends every worker)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the supervisor died before the prctl
        os._exit(1)
