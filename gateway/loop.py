"""The event loop every asyncio entry point runs on: the standard loop with a pidfd child watcher.

asyncio's default child watcher on Python 3.11 starts one thread per child
(200 sessions, 200 threads); a pidfd watcher needs none. uvloop was measured
here too, and was *slower* under 200 typing sessions (p99 over 800 ms against
about 40 ms): libuv forks the whole process for every child, where Python's
subprocess uses vfork.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run *main* to completion on the gateway's event loop."""
    return asyncio.run(_with_pidfd_watcher(main))


async def _with_pidfd_watcher(main: Coroutine[Any, Any, T]) -> T:
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    return await main
