"""systemd's notify protocol (``Type=notify``): READY, RELOADING, STOPPING and the watchdog.

Datagrams to ``$NOTIFY_SOCKET`` (``@name`` is the abstract namespace). With no
socket in the environment every call does nothing, so the gateway runs the
same under systemd and without it. The watchdog is fed from the event loop,
so a loop that stops turning stops feeding it and systemd restarts the
service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time


def notify(*fields: str) -> bool:
    """Send ``KEY=VALUE`` lines to systemd; False when there is no socket (or it is gone)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto("\n".join(fields).encode(), address)
        return True
    return False


def ready(status: str) -> None:
    """The gateway listens: READY=1."""
    notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def reloading() -> None:
    """A reload begins (SIGHUP): RELOADING=1 with the monotonic time, as systemd wants it."""
    notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def reloaded(status: str) -> None:
    """The reload is over (applied or refused): READY=1 again."""
    notify("READY=1", f"STATUS={status}")


def stopping() -> None:
    """Shutting down: STOPPING=1."""
    notify("STOPPING=1", "STATUS=draining")


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, when systemd asks for the watchdog (and it is meant for this process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def feed_watchdog(interval: float) -> None:
    """WATCHDOG=1 every *interval* seconds, from the event loop."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
