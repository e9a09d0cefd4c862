"""The audit directory: day files, the chain state, the writers' lock.

::

    STATE/audit/
      audit-YYYY-MM-DD-NNN.jsonl   the records (append-only; a new file each day,
                                   and after a crash left a torn last line)
      chain.state                  seq, prev and the *current* key (replaced by rename)
      chain.lock                   flock: several writers, one chain
      initial.key                  K_0 for the verifier: export it, then delete it here
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

FILE_RE = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})-(\d{3})\.jsonl$")


class ChainState(NamedTuple):
    """Where the chain stands: the last seq, its line digest, the next key, the file."""

    seq: int
    prev: str
    key: str
    file: str = ""
    size: int = 0

    @property
    def key_bytes(self) -> bytes:
        """The current key."""
        return bytes.fromhex(self.key)


def log_files(directory: Path) -> list[Path]:
    """Every audit file, in chain order."""
    return sorted(p for p in directory.glob("audit-*.jsonl") if FILE_RE.match(p.name))


def today() -> str:
    """The UTC day that names today's file."""
    return datetime.now(UTC).strftime("%Y-%m-%d")


def next_file(directory: Path, after: Path | None) -> Path:
    """The file to start: today's first, or the one after *after* on the same day."""
    day, number = today(), 0
    if after is not None:
        match = FILE_RE.match(after.name)
        if match and match.group(1) == day:
            number = int(match.group(2)) + 1
    return directory / f"audit-{day}-{number:03d}.jsonl"


def ends_torn(path: Path) -> bool:
    """Whether *path* ends with a partial line (a crash mid-write)."""
    size = path.stat().st_size
    if size == 0:
        return False
    with path.open("rb") as f:
        f.seek(size - 1)
        return f.read(1) != b"\n"


def last_line(path: Path) -> bytes | None:
    """The last complete line of *path*, without its newline."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        start = max(0, end - (1 << 16))
        f.seek(start)
        data = f.read()
    lines = data.split(b"\n")
    complete = lines[:-1]  # after the last newline is empty or a torn tail
    return complete[-1] if complete and complete[-1] else None


def read_state(directory: Path) -> ChainState | None:
    """The chain state, or None before the first record."""
    try:
        data = json.loads((directory / "chain.state").read_text())
    except FileNotFoundError:
        return None
    return ChainState(**data)


def write_state(directory: Path, state: ChainState) -> None:
    """Replace the chain state atomically (the old key is gone with the old file)."""
    tmp = directory / "chain.state.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(state._asdict()))
    tmp.replace(directory / "chain.state")


def write_new(path: Path, data: str) -> None:
    """Create *path* with mode 0600; never overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the writers' lock."""
    fd = os.open(directory / "chain.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
