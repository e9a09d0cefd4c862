"""The audit log: structlog builds each event, the chain writer seals and appends it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from gateway.audit import chain, store
from gateway.audit.store import ChainState
from gateway.audit.writer import ChainWriter
from gateway.errors import AuditUnavailable
from gateway.events import Event, check


class _StructlogSink:
    """structlog's final logger: hands the finished event dict to the chain writer."""

    def __init__(self, writer: ChainWriter) -> None:
        self.writer = writer

    def info(self, **event: Any) -> None:
        durable = bool(event.pop("_durable", False))
        self.writer.write(event, durable=durable)


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
        self._writer = ChainWriter(directory)
        self._logger = structlog.wrap_logger(
            _StructlogSink(self._writer),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                _drop_none,
            ],
        )

    def emit(self, event: Event, *, durable: bool = False, **fields: Any) -> None:
        """Seal and append one record; raise AuditUnavailable if it did not reach the file.

        The record is checked against its event's payload first (``events.check``): a field that is
        not the event's, or of the wrong type, is a PayloadError here, where it is written.
        """
        check(event, fields)
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
