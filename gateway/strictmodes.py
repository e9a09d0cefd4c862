"""StrictModes, as sshd has it: refuse to serve from files others could change.

The policy, key and state directories (and every file in them) must not be
writable by group or others, and must belong to root or to the user running
the gateway. ``serve --no-strict-modes`` turns this off for development.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.errors import ConfigError


def _problem(path: Path) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if info.st_uid not in (0, os.getuid()):
        return f"{path} is owned by uid {info.st_uid}, not root or the gateway's user"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others (mode {stat.filemode(info.st_mode)})"
    return None


def check(*directories: Path) -> None:
    """Raise ConfigError naming the first unsafe directory or file."""
    for directory in directories:
        for path in (directory, *(sorted(directory.rglob("*")) if directory.is_dir() else ())):
            problem = _problem(path)
            if problem:
                raise ConfigError(
                    f"refusing to start: {problem} (fix it, or use --no-strict-modes for development)"
                )
