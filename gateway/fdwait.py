"""Wait on the event loop until a descriptor is ready: the one helper every pump uses."""

from __future__ import annotations

import asyncio


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_fd(fd: int, *, write: bool = False, ready: asyncio.Future[None] | None = None) -> None:
    """Until *fd* is readable (or writable), or until *ready* is set by someone else."""
    loop = asyncio.get_running_loop()
    future = ready if ready is not None else loop.create_future()
    (loop.add_writer if write else loop.add_reader)(fd, _wake, future)
    try:
        await future
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)
