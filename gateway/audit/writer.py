"""The chain writer: seq, prev and MAC under the lock, then append. No structlog here.

The server builds events through structlog (``log.AuditLog``), which hands
each finished event, a plain dict, to this writer.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from gateway.audit import chain, store
from gateway.audit.store import ChainState
from gateway.errors import AuditUnavailable
from gateway.events import Event


class ChainWriter:
    """Seal each event into the chain and append it, under the writers' lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._path: Path | None = None
        self._fd: int | None = None
        # kept open: the lock and the state are touched on every record
        self._lock_fd: int | None = None
        self._state_fd: int | None = None

    def write(self, event: dict[str, Any], *, durable: bool = False) -> None:
        """Append *event* (it gains seq, prev and mac); fsync when *durable*."""
        self.write_many([event], durable=durable)

    def write_many(self, events: list[dict[str, Any]], *, durable: bool = False) -> None:
        """Append several events under one lock, in one write, with one state update."""
        if self._lock_fd is None:
            self._lock_fd = os.open(self.directory / "chain.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._write_locked(events, durable=durable)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _write_locked(self, events: list[dict[str, Any]], *, durable: bool) -> None:
        state = self._read_state()
        if state is None:
            raise AuditUnavailable("the audit chain state is missing")
        fast = self._appending(state)  # the usual case: this writer wrote the last record
        if fast is not None:
            self._append(fast, list(events), state, durable=durable)
            return
        state = self._state(state)
        path = self._file(state)
        records = list(events)
        if path.name != state.file and state.file and store.ends_torn(self.directory / state.file):
            torn = (self.directory / state.file).stat().st_size - state.size
            recovered = {"event": Event.AUDIT_RECOVERED, "ts": records[0].get("ts"), "torn_file": state.file}
            records.insert(0, {**recovered, "torn_bytes": torn})
            durable = True
        self._append(path, records, state, durable=durable)

    def _appending(self, state: ChainState) -> Path | None:
        """The file this writer has open, when the state says the chain ends exactly there (no stat)."""
        if self._fd is None or self._path is None or self._path.name != state.file:
            return None
        if not state.file.startswith(f"audit-{store.today()}-"):
            return None  # a new day: a new file
        return self._path if os.fstat(self._fd).st_size == state.size else None

    def _read_state(self) -> ChainState | None:
        if self._state_fd is None:
            try:
                self._state_fd = os.open(self.directory / store.STATE, os.O_RDWR)
            except FileNotFoundError:
                return None
        return store.parse_state(os.pread(self._state_fd, 2 * store.SLOT + 4096, 0), self.directory)

    def _state(self, state: ChainState) -> ChainState:
        current = self.directory / state.file if state.file else None
        if current is not None and current.exists() and current.stat().st_size != state.size:
            state = self._catch_up(state, current)
        return state

    def _catch_up(self, state: ChainState, current: Path) -> ChainState:
        """Another writer, or a crash, left the log ahead of the state file."""
        line = store.last_line(current)
        if line is None:
            return state
        record = json.loads(line)
        ahead = int(record["seq"]) - state.seq
        if ahead > 0:
            key = chain.evolve(state.key_bytes, ahead).hex()
            state = ChainState(int(record["seq"]), chain.digest(line), key, state.file, state.size)
        size = current.stat().st_size if not store.ends_torn(current) else state.size
        return state._replace(size=size)

    def _file(self, state: ChainState) -> Path:
        current = self.directory / state.file if state.file else None
        if current is None or not current.exists():
            return store.next_file(self.directory, None)
        if store.ends_torn(current) or not current.name.startswith(f"audit-{store.today()}-"):
            return store.next_file(self.directory, current)
        return current

    def _append(self, path: Path, records: list[dict[str, Any]], state: ChainState, *, durable: bool) -> None:
        seq, prev, key = state.seq, state.prev, state.key_bytes
        lines = []
        for record in records:
            line = chain.seal(record, seq=seq + 1, prev=prev, key=key)
            lines.append(line + "\n")
            seq, prev, key = seq + 1, chain.digest(line), chain.evolve(key)
        fd = self._open(path)
        data = memoryview("".join(lines).encode())
        while data:
            data = data[os.write(fd, data) :]
        if durable:
            os.fsync(fd)
        after = ChainState(seq, prev, key.hex(), path.name, os.fstat(fd).st_size)
        if self._state_fd is None:
            store.write_state(self.directory, after)
        else:
            store.write_state_fd(self._state_fd, after)

    def _open(self, path: Path) -> int:
        if self._path != path or self._fd is None:
            self._close_file()
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._path = path
        return self._fd

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path = None, None

    def close(self) -> None:
        """Close the current file, the lock and the state descriptors."""
        for fd in (self._fd, self._lock_fd, self._state_fd):
            if fd is not None:
                os.close(fd)
        self._fd, self._path, self._lock_fd, self._state_fd = None, None, None, None
