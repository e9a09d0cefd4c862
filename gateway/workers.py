"""``serve``: one process, or a supervisor and N workers (``--workers``, default one per core).

Handshakes and keystrokes are CPU-bound on one core (asyncio and the GIL), so
more cores need more processes. With one, the process serves clients and does
the host's jobs itself (``server.serve``); with several, a supervisor that
serves no client runs them (``supervisor``). Either way, before anything
starts: the strict modes, one gateway per listen address (``claim``), the
shared limits table (made before any fork), and the metrics' mode.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from gateway import claim, loop, shared, strictmodes
from gateway.confine.spawn import SPAWNER, unanswered
from gateway.settings import Settings


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


def reach_spawner(path: Path) -> None:
    """``--spawner``: every process of this gateway asks the daemon at *path*, when one answers there.

    When none does (the unit's command line run without its ``ExecStartPre=+``), the gateway starts its
    own, as without the option, and says so on stderr: under a sandbox that spawner cannot read a
    container's filter, and every confined shell is refused with that reason (it fails closed).
    """
    why = unanswered(path)
    if why is not None:
        sys.stderr.write(
            f"gateway: --spawner {path}: none answers ({why}); starting its own (the unit starts it with"
            " its ExecStartPre=+ line)\n"
        )
        return
    SPAWNER.path = str(path)


def run(settings: Settings, on_ready: Callable[[str, int], None]) -> None:
    """Serve in this process, or as a supervisor of N workers."""
    if settings.strict_modes:  # before anything starts: nothing serves from files others can change
        strictmodes.check(settings.policies, settings.keys, settings.state)
    held = claim.claim(settings.listen, settings.state)  # one gateway per address: a second one stops here
    try:
        if settings.spawner is not None:
            reach_spawner(settings.spawner)
        shared.table()  # before any fork: every worker inherits the one table
        _metrics_files(settings)
        if settings.fleet is not None:  # before any worker: a wrong fleet.yaml or schema stops here, once
            from gateway.fleet.config import checked_config  # noqa: PLC0415 - only with --fleet
            from gateway.fleet.schema import at_start  # noqa: PLC0415 - psycopg only with --fleet

            checked_config(settings)
            at_start(settings.fleet, migrations=settings.fleet_migrate)
        if held is not None:
            held.answer()
        if settings.workers <= 1:
            from gateway.server import serve  # noqa: PLC0415 - after the metrics' mode is chosen

            loop.run(serve(settings, on_ready))
        else:
            from gateway.supervisor import supervise  # noqa: PLC0415 - after the metrics' mode is chosen

            supervise(settings, on_ready, held)
    finally:
        if held is not None:
            held.close()
