"""Reading a configuration file that must be a regular file: never a link, FIFO, socket or device;
and replacing a small state file whole.

Whoever may write ``policies/`` or ``keys/`` must not be able to make the
daemon block (a FIFO), read a root-only file for them (a symlink to
``/etc/shadow``, whose first line would land in an error message), or hang
on a device. ``lstat`` names what the entry is; the file is then opened with
``O_NOFOLLOW | O_NONBLOCK`` and checked again with ``fstat`` (it may have been
swapped in between), and read up to a bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
#: the most of a file's content any message may quote
QUOTE = 40


class NotRegular(OSError):
    """The entry is not a regular file; the message says what it is."""


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def read_regular(path: Path, limit: int) -> bytes:
    """Up to *limit* + 1 bytes of *path*; NotRegular unless it is a regular file."""
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise NotRegular(f"not a regular file ({kind(mode)})")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(f"not a regular file ({kind(mode)})")
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def quoted(text: str) -> str:
    """At most QUOTE characters of file content, for a message."""
    return text if len(text) <= QUOTE else text[:QUOTE] + "..."


def write_replacing(path: Path, text: str) -> None:
    """Replace *path* with *text* at once: readers see the old file or the new one, never half.

    The text goes to a hidden file of this process beside it (``.NAME.PID``:
    no glob for ``NAME*`` sees it, two worker processes never share it), then
    replaces *path*.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    temporary.replace(path)
