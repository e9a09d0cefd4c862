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


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on *path*'s filesystem."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def floor_bytes(path: Path, configured: int | None) -> int:
    """The configured floor, or the default: 1 GiB or 5% of the filesystem, whichever is larger."""
    if configured is not None:
        return configured
    info = os.statvfs(path)
    return max(DEFAULT_FLOOR, int(info.f_blocks * info.f_frsize * DEFAULT_SHARE))
