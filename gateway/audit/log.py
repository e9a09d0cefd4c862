"""The audit log: structlog builds each event, the chain writer seals and appends it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from gateway.audit import chain, store
from gateway.audit.store import ChainState
from gateway.errors import AuditUnavailable


class _ChainWriter:
    """structlog's final logger: seal the event into the chain and append it, under the lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._path: Path | None = None
        self._fd: int | None = None

    def info(self, **event: Any) -> None:
        durable = bool(event.pop("_durable", False))
        with store.locked(self.directory):
            state = self._state()
            path = self._file(state)
            if path.name != state.file and state.file and store.ends_torn(self.directory / state.file):
                torn = (self.directory / state.file).stat().st_size - state.size
                recovered = {
                    "event": "audit.recovered",
                    "ts": event.get("ts"),
                    "torn_file": state.file,
                    "torn_bytes": torn,
                }
                state = self._append(path, recovered, state, durable=True)
            self._append(path, event, state, durable=durable)

    def _state(self) -> ChainState:
        state = store.read_state(self.directory)
        if state is None:
            raise AuditUnavailable("the audit chain state is missing")
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
        state.size = current.stat().st_size if not store.ends_torn(current) else state.size
        return state

    def _file(self, state: ChainState) -> Path:
        current = self.directory / state.file if state.file else None
        if current is None or not current.exists():
            return store.next_file(self.directory, None)
        if store.ends_torn(current) or not current.name.startswith(f"audit-{store.today()}-"):
            return store.next_file(self.directory, current)
        return current

    def _append(self, path: Path, record: dict[str, Any], state: ChainState, *, durable: bool) -> ChainState:
        line = chain.seal(record, seq=state.seq + 1, prev=state.prev, key=state.key_bytes)
        fd = self._open(path)
        os.write(fd, (line + "\n").encode())
        if durable:
            os.fsync(fd)
        new = ChainState(
            state.seq + 1,
            chain.digest(line),
            chain.evolve(state.key_bytes).hex(),
            path.name,
            os.fstat(fd).st_size,
        )
        store.write_state(self.directory, new)
        return new

    def _open(self, path: Path) -> int:
        if self._path != path or self._fd is None:
            self.close()
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._path = path
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path = None, None


def _drop_none(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    return {k: v for k, v in event_dict.items() if v is not None}


class AuditLog:
    """The audit log under ``STATE/audit``; safe for several processes at once."""

    def __init__(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with store.locked(directory):
                _genesis(directory)
        except OSError as exc:
            raise AuditUnavailable(f"cannot open the audit log: {exc.strerror}") from exc
        self.directory = directory
        self._writer = _ChainWriter(directory)
        self._logger = structlog.wrap_logger(
            self._writer,
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                _drop_none,
            ],
        )

    def emit(self, event: str, *, durable: bool = False, **fields: Any) -> None:
        """Seal and append one record; raise AuditUnavailable if it did not reach the file."""
        try:
            self._logger.info(event, _durable=durable, **fields)
        except OSError as exc:
            self._writer.close()
            raise AuditUnavailable(f"cannot write the audit log: {exc.strerror}") from exc

    def close(self) -> None:
        """Close the file; later emits reopen it."""
        self._writer.close()


def _genesis(directory: Path) -> None:
    """Create K_0 (initial.key, 0600) and the chain state before the first record."""
    if store.read_state(directory) is not None:
        return
    if store.log_files(directory):
        raise AuditUnavailable("audit records exist but the chain state is missing")
    key = os.urandom(32)
    initial = directory / "initial.key"
    if not initial.exists():
        store.write_new(initial, key.hex() + "\n")
    else:
        key = bytes.fromhex(initial.read_text().strip())
    store.write_state(directory, ChainState(0, chain.GENESIS, key.hex()))
