"""The event loop every asyncio entry point runs on: uvloop where it is installed.

uvloop (libuv) runs the same asyncio code with less overhead per event, and
watches child processes without a thread each (asyncio's default watcher on
Python 3.11 starts one thread per child: 200 sessions, 200 threads). Without
uvloop, or with ``GATEWAY_EVENT_LOOP=asyncio``, the standard loop runs with a
pidfd child watcher, which needs no threads either.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run *main* to completion on the gateway's event loop."""
    if os.environ.get("GATEWAY_EVENT_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop  # noqa: PLC0415
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(_with_pidfd_watcher(main))


async def _with_pidfd_watcher(main: Coroutine[Any, Any, T]) -> T:
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    return await main
