"""``serve --workers N``: N processes accepting on one port (SO_REUSEPORT), one audit chain.

Handshakes and keystrokes are CPU-bound on one core (asyncio and the GIL), so
more cores need more processes. The audit chain is shared under its lock; the
limits are shared too (``shared.table``, made here before the fork), so
``--max-sessions`` and the rest hold for the gateway as a whole. The first
process does the once-per-host jobs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
from collections.abc import Callable

from gateway import claim, loop, shared, strictmodes
from gateway.settings import Listen, Settings


def _reserve(listen: Listen) -> tuple[socket.socket, int]:
    """Bind (not listen) with SO_REUSEPORT, to learn the port when 0 was asked for."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    probe.bind((listen.host, listen.port))
    return probe, int(probe.getsockname()[1])


def _die_with(parent: int) -> None:
    """A worker ends with its primary, as abruptly (``kill -9`` of the gateway ends every worker)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the primary died before the prctl
        os._exit(1)


PR_SET_PDEATHSIG = 1


def _metrics_files(settings: Settings) -> None:
    """With several workers, prometheus_client's multiprocess files (set before it is imported)."""
    os.environ.pop(METRICS_ENV, None)
    if settings.workers <= 1:
        return
    settings.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = settings.state / "metrics"
    shutil.rmtree(directory, ignore_errors=True)  # last run's processes are gone
    directory.mkdir(mode=0o700)
    os.environ[METRICS_ENV] = str(directory)


METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def run(settings: Settings, on_ready: Callable[[str, int], None]) -> None:
    """Serve in this process, or in N processes sharing the port."""
    if settings.strict_modes:  # before anything starts: nothing serves from files others can change
        strictmodes.check(settings.policies, settings.keys, settings.state)
    held = claim.claim(settings.listen, settings.state)  # one gateway per address: a second one stops here
    try:
        _run(settings, on_ready, held)
    finally:
        if held is not None:
            held.close()


def _run(settings: Settings, on_ready: Callable[[str, int], None], held: claim.Claim | None) -> None:
    shared.table()  # before any fork: every worker inherits the one table
    _metrics_files(settings)
    from gateway.server import serve  # noqa: PLC0415 - after the metrics' mode is chosen

    if settings.workers <= 1:
        if held is not None:
            held.answer()
        loop.run(serve(settings, on_ready))
        return
    probe, port = _reserve(settings.listen)
    common = settings.model_copy(
        update={"listen": Listen(host=settings.listen.host, port=port), "reuse_port": True}
    )
    children: list[int] = []
    for index in range(1, settings.workers):
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # a worker: serve, then leave without running the parent's cleanup
            _die_with(parent)
            probe.close()
            if held is not None:
                held.close()  # the primary holds the address's name (this drops only our copy)
            status = 0
            try:
                loop.run(serve(common.model_copy(update={"worker": index}), lambda _h, _p: None))
            except BaseException:
                status = 1
            os._exit(status)
        children.append(pid)
    if held is not None:
        held.answer()
    try:
        loop.run(serve(common, on_ready, tuple(children)))
    except BaseException:
        for pid in children:  # the primary could not start (or failed): its workers stop too
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise
    finally:
        probe.close()
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
