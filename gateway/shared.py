"""Numbers every worker process shares: a small keyed table in shared memory, changed under a lock.

``serve --workers N`` forks N processes that accept on one port. Limits that
are meant for the whole gateway (``--max-sessions``, per principal, the
unauthenticated connections, per-source failures and penalties) live here,
so that a limit holds across the processes instead of per process. The table
is an anonymous ``MAP_SHARED`` mapping made before the fork (every worker
inherits it), with open addressing on a CRC of the key; each change happens
under ``flock`` on a lock file (each process opens its own, so the lock is
really shared; a process that dies releases it). A record is a key of at most
63 bytes and four numbers; a record whose numbers are all zero is free.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

SLOT = struct.Struct("<64s4d")
SLOTS = 16384
Values = tuple[float, float, float, float]
ZERO: Values = (0.0, 0.0, 0.0, 0.0)


class TableFull(Exception):
    """No free record for a new key (even after dropping the expired ones)."""


class SharedTable:
    """Keyed records of four numbers, shared by every process forked after it was made."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, slots * SLOT.size, flags=mmap.MAP_SHARED)
        self._lock_path: Path | None = None
        self._lock: tuple[int, int] | None = None  # (pid, fd): reopened after a fork

    def lock_at(self, path: Path) -> None:
        """Where the lock file is (the state directory); until then, the table is this process's alone."""
        self._lock_path = path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the table across processes."""
        if self._lock_path is None:
            yield
            return
        if self._lock is None or self._lock[0] != os.getpid():
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._lock = (os.getpid(), fd)
        fd = self._lock[1]
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _key(self, key: str) -> bytes:
        raw = key.encode("utf-8", "replace")[:63]
        return raw + b"\0" * (64 - len(raw))

    def _read(self, index: int) -> tuple[bytes, Values]:
        key, *values = SLOT.unpack_from(self._map, index * SLOT.size)
        return key, (values[0], values[1], values[2], values[3])

    def _find(self, key: bytes) -> tuple[int | None, int | None]:
        """(the record holding *key*, a free record to put it in); call under the lock."""
        start = zlib.crc32(key) % self.slots
        free = None
        for step in range(self.slots):
            index = (start + step) % self.slots
            found, values = self._read(index)
            if found[0] == 0:  # never used: the key is not further on
                return None, free if free is not None else index
            if found == key:
                return index, None
            if free is None and values == ZERO:
                free = index
        return None, free

    def get(self, key: str) -> Values:
        """The record's numbers (zeros when there is none)."""
        with self.locked():
            index, _ = self._find(self._key(key))
            return self._read(index)[1] if index is not None else ZERO

    def update(
        self, key: str, change: Callable[[Values], Values], expired: Callable[[str, Values], bool]
    ) -> Values:
        """Replace the record with ``change(old)``, atomically; TableFull when a new key has no room.

        *expired* says which records may be dropped to make room.
        """
        return self.update_all([(key, change)], expired)[0]

    def update_all(
        self, changes: list[tuple[str, Callable[[Values], Values]]], expired: Callable[[str, Values], bool]
    ) -> list[Values]:
        """Several records changed as one, under one lock: every change is computed before any is
        written, so one that raises leaves every record as it was."""
        with self.locked():
            planned = []
            for key, change in changes:
                raw = self._key(key)
                index, _ = self._find(raw)
                old = self._read(index)[1] if index is not None else ZERO
                planned.append((raw, key, change(old)))
            out = []
            for raw, key, new in planned:
                out.append(self._write(raw, key, new, expired))
            return out

    def _write(self, raw: bytes, key: str, new: Values, expired: Callable[[str, Values], bool]) -> Values:
        """Put *new* under *raw* (under the lock); TableFull when a new key has no room."""
        index, free = self._find(raw)
        if index is None and new != ZERO:
            if free is None:
                self._sweep(expired)
                index, free = self._find(raw)
                if free is None:
                    raise TableFull(key)
            index = free
        if index is not None:
            SLOT.pack_into(self._map, index * SLOT.size, raw, *new)
        return new

    def release_owned(self, prefix: str) -> list[tuple[str, float]]:
        """Give back what one owner held, in one lock: each record ``PREFIX+KEY`` is zeroed and its count
        taken off ``KEY``. Returns (KEY, count) for each."""
        wanted, out = prefix.encode("utf-8", "replace"), []
        with self.locked():
            for index in range(self.slots):
                raw, values = self._read(index)
                if raw[0] == 0 or values == ZERO or not raw.startswith(wanted):
                    continue
                SLOT.pack_into(self._map, index * SLOT.size, raw, *ZERO)
                key = raw.rstrip(b"\0")[len(wanted) :].decode("utf-8", "replace")
                found, _ = self._find(self._key(key))
                if found is not None:
                    held = self._read(found)[1]
                    left = (max(0.0, held[0] - values[0]), *held[1:])
                    SLOT.pack_into(self._map, found * SLOT.size, self._key(key), *left)
                out.append((key, values[0]))
        return out

    def take(self, key: str, when: Callable[[Values], bool]) -> Values | None:
        """The record's numbers, zeroing it, if it exists and *when* says so (atomically); else None."""
        raw = self._key(key)
        with self.locked():
            index, _ = self._find(raw)
            if index is None:
                return None
            values = self._read(index)[1]
            if values == ZERO or not when(values):
                return None
            SLOT.pack_into(self._map, index * SLOT.size, raw, *ZERO)
            return values

    def _sweep(self, expired: Callable[[str, Values], bool]) -> None:
        """Zero the records *expired* allows to drop (under the lock)."""
        for index in range(self.slots):
            key, values = self._read(index)
            if (
                key[0] != 0
                and values != ZERO
                and expired(key.rstrip(b"\0").decode("utf-8", "replace"), values)
            ):
                SLOT.pack_into(self._map, index * SLOT.size, key, *ZERO)


#: the table of this process tree; made before ``serve`` forks its workers
TABLE: SharedTable | None = None


def table() -> SharedTable:
    """The process tree's table, made on first use (before the fork, by ``workers.run``)."""
    global TABLE  # noqa: PLW0603 - one per process tree, inherited by the forked workers
    if TABLE is None:
        TABLE = SharedTable()
    return TABLE
