"""Room on the state filesystem: recordings may not eat the space the audit chain needs.

Below the floor (``serve --recordings-min-free``, default 1 GiB or 5% of the
filesystem, whichever is larger) new recorded sessions are refused, while
unrecorded actions and the audit chain go on.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_FLOOR = 1 << 30
DEFAULT_SHARE = 0.05


def room(path: Path, configured: int | None) -> tuple[int, int]:
    """(free bytes, the floor) from one ``statvfs``: it runs on every recorded session start."""
    info = os.statvfs(path)
    free = info.f_bavail * info.f_frsize
    floor = (
        configured
        if configured is not None
        else max(DEFAULT_FLOOR, int(info.f_blocks * info.f_frsize * DEFAULT_SHARE))
    )
    return free, floor
