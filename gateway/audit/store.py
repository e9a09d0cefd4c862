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
import hashlib
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


# chain.state holds two fixed-size slots, each ``MAGIC JSON LF SHA256(JSON)`` padded with NULs.
# A write fills the invalid (or older) slot in place, then wipes the other: no rename
# (about 100x cheaper than write-and-rename here, which ext4 flushes on every record),
# a torn write leaves the other slot intact, and only the current key stays on disk.
SLOT = 512
STATE = "chain.state"


MAGIC = b"gateway-chain-state 1\n"


def _slot(raw: bytes) -> ChainState | None:
    if not raw.startswith(MAGIC):
        return None
    text, _, digest = raw[len(MAGIC) :].rstrip(b"\0").rpartition(b"\n")
    if not text or hashlib.sha256(text).hexdigest().encode() != digest:
        return None
    try:
        return typed_state(json.loads(text))
    except (ValueError, TypeError, KeyError):
        return None


def typed_state(fields: object) -> ChainState:
    """A chain state from parsed JSON, every field of its own type (TypeError or KeyError otherwise)."""
    if not isinstance(fields, dict):
        raise TypeError("not an object")
    state = ChainState(**{name: fields[name] for name in ChainState._fields if name in fields})
    for name, kind in (("seq", int), ("prev", str), ("key", str), ("file", str), ("size", int)):
        value = getattr(state, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"{name} is not a {kind.__name__}")
    bytes.fromhex(state.key)  # ValueError when it is not hex
    return state


def _slots(data: bytes) -> list[ChainState | None]:
    return [_slot(data[i * SLOT : (i + 1) * SLOT]) for i in range(2)]


def read_state(directory: Path) -> ChainState | None:
    """The chain state (the valid slot with the highest seq), or None before the first record."""
    try:
        data = (directory / STATE).read_bytes()
    except FileNotFoundError:
        return None
    return parse_state(data, directory / STATE)


def parse_state(data: bytes, where: Path) -> ChainState | None:
    """The state in *data* (both forms); None when empty."""
    if not data:
        return None
    if data.startswith(b"{"):  # the single-JSON form of earlier versions
        try:
            return typed_state(json.loads(data))
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{where}: not a chain state ({type(exc).__name__}: {str(exc)[:40]})") from None
    found = [s for s in _slots(data) if s is not None]
    if not found:
        raise ValueError(f"{where}: no valid chain state slot")
    return max(found, key=lambda s: s.seq)


def write_state(directory: Path, state: ChainState) -> None:
    """Write the chain state in place: the other slot first, then wipe the old one (and its key)."""
    fd = os.open(directory / STATE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        write_state_fd(fd, state)
    finally:
        os.close(fd)


def write_state_fd(fd: int, state: ChainState) -> None:
    """write_state on an open chain.state descriptor (the chain writer keeps one)."""
    text = json.dumps(state._asdict()).encode()
    record = MAGIC + text + b"\n" + hashlib.sha256(text).hexdigest().encode()
    if len(record) > SLOT:
        raise ValueError("chain state too large for its slot")
    current = os.pread(fd, 2 * SLOT, 0)
    legacy = current.startswith(b"{")
    slots = [None, None] if legacy else _slots(current)
    first_is_live = slots[0] is not None and (slots[1] is None or slots[0].seq >= slots[1].seq)
    target = 1 if first_is_live else 0
    os.pwrite(fd, record.ljust(SLOT, b"\0"), target * SLOT)
    os.pwrite(fd, b"\0" * SLOT, (1 - target) * SLOT)
    if legacy:
        os.ftruncate(fd, 2 * SLOT)  # an earlier version's single JSON, longer than the slots


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
