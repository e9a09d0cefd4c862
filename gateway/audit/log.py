"""Append-only, hash-linked JSON Lines audit log, built through structlog."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from gateway.errors import AuditUnavailable

GENESIS = "0" * 64


def canonical_json(obj: Any, **_: Any) -> str:
    """The one serialisation every digest is computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class _Sink:
    """structlog's final logger: writes the rendered line, fsyncs on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: TextIO | None = None
        self.durable_next = False
        self.last_line = ""

    def _open(self) -> TextIO:
        if self.file is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self.file = os.fdopen(fd, "a", encoding="utf-8")
        return self.file

    def msg(self, line: str) -> None:
        try:
            f = self._open()
            f.write(line + "\n")
            f.flush()
            if self.durable_next:
                os.fsync(f.fileno())
            self.last_line = line
        except OSError as exc:
            self.close()
            raise AuditUnavailable(f"cannot write the audit log: {exc.strerror}") from exc

    info = msg

    def close(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None


class AuditLog:
    """The audit log under ``STATE/audit``; one instance per process."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / "audit.jsonl"
        self._sink = _Sink(self.path)
        self._seq, self._prev = _tail(self.path)
        self._logger = structlog.wrap_logger(
            self._sink,
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                self._chain,
                structlog.processors.JSONRenderer(serializer=canonical_json),
            ],
        )

    def _chain(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        event_dict["seq"] = self._seq + 1
        event_dict["prev"] = self._prev
        return event_dict

    def emit(self, event: str, *, durable: bool = False, **fields: Any) -> None:
        """Write one record; raise AuditUnavailable if it did not reach the file."""
        self._sink.durable_next = durable
        fields = {k: v for k, v in fields.items() if v is not None}
        self._logger.info(event, **fields)
        self._seq += 1
        self._prev = hashlib.sha256(self._sink.last_line.encode()).hexdigest()

    def close(self) -> None:
        """Close the file; later emits reopen it."""
        self._sink.close()


def _tail(path: Path) -> tuple[int, str]:
    """Continue the chain after the last complete record of an existing log."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return 0, GENESIS
    for raw in reversed(lines):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            return record["seq"], hashlib.sha256(raw).hexdigest()
    return 0, GENESIS
