"""Shipping the audit chain off the host, as it is written, to syslog collectors.

The local chain is written first (as always); each destination's shipper
reads it in order from a saved position (``STATE/audit/ship-ID.json``),
which survives restarts, and sends each complete line, then the signed
checkpoints. When the collector is down or slow, records wait: sessions
never do, since nothing here is on their path. Delivery is at least once:
plain TCP syslog has no acknowledgement, so after a failure the shipper
resends everything it sent in the last RESEND_SECONDS (every record carries
its ``seq``, so a duplicate is harmless and a gap is visible).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import ssl
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import metrics
from gateway.audit import store
from gateway.audit.checkpoint import LOG as CHECKPOINTS
from gateway.audit.syslog import Destination, frame
from gateway.safefile import write_replacing

BATCH = 500
POLL = 0.2
RESEND_SECONDS = 10.0
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
SEND_TIMEOUT = 30.0


@dataclass
class Position:
    """Where a destination's shipping stands: the chain file and offset, and the checkpoints offset."""

    file: str = ""
    offset: int = 0
    seq: int = 0
    checkpoints: int = 0


def position_path(audit: Path, destination: Destination) -> Path:
    """``ship-ID.json``: one per destination."""
    digest = hashlib.sha256(destination.label.encode()).hexdigest()[:12]
    return audit / f"ship-{digest}.json"


def load_position(path: Path) -> Position:
    """The saved position, or the start."""
    try:
        data = json.loads(path.read_text())
        return Position(**{k: data[k] for k in ("file", "offset", "seq", "checkpoints")})
    except (OSError, ValueError, KeyError, TypeError):
        return Position()


def save_position(path: Path, position: Position, destination: Destination) -> None:
    """Replace the saved position atomically."""
    write_replacing(path, json.dumps({"url": destination.label, **asdict(position)}))


@dataclass
class Line:
    """One complete line read from the chain or the checkpoints, and where it ends."""

    raw: bytes
    msgid: str
    ts: object
    seq: int | None
    after: Position


def read_chain(audit: Path, at: Position, limit: int = BATCH) -> list[Line]:
    """Up to *limit* complete chain lines after *at*, across day files."""
    out: list[Line] = []
    position = Position(**asdict(at))
    for path in store.log_files(audit):
        if position.file and path.name < position.file:
            continue
        start = position.offset if path.name == position.file else 0
        with path.open("rb") as f:
            f.seek(start)
            offset = start
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn or still being written
                offset += len(raw)
                record = _parse(raw)
                seq = record.get("seq") if isinstance(record.get("seq"), int) else None
                position = Position(path.name, offset, seq or position.seq, position.checkpoints)
                out.append(Line(raw[:-1], str(record.get("event", "-")), record.get("ts"), seq, position))
                if len(out) >= limit:
                    return out
        position = Position(path.name, offset, position.seq, position.checkpoints)
    return out


def read_checkpoints(audit: Path, at: Position, limit: int = BATCH) -> list[Line]:
    """Checkpoint lines after *at*."""
    path = audit / CHECKPOINTS
    out: list[Line] = []
    if not path.exists():
        return out
    with path.open("rb") as f:
        f.seek(at.checkpoints)
        offset = at.checkpoints
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            offset += len(raw)
            record = _parse(raw)
            after = Position(at.file, at.offset, at.seq, offset)
            out.append(Line(raw[:-1], "checkpoint", record.get("ts"), None, after))
            if len(out) >= limit:
                break
    return out


def _parse(raw: bytes) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        record = json.loads(raw)
        if isinstance(record, dict):
            return record
    return {}


@dataclass
class Backlog:
    """What a destination has not shipped yet."""

    destination: str
    last_shipped_seq: int
    backlog: int
    oldest_unshipped_age: float | None

    def as_dict(self) -> dict[str, Any]:
        """For /healthz and `audit status --json`."""
        return asdict(self)


def destinations(audit: Path) -> list[Destination]:
    """Every destination this state directory has shipped to (from the saved positions)."""
    found = []
    for path in sorted(audit.glob("ship-*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            found.append(Destination.parse(str(json.loads(path.read_text())["url"])))
    return found


def backlog(audit: Path, destination: Destination) -> Backlog:
    """The backlog of *destination*, from the chain state and the saved position."""
    position = load_position(position_path(audit, destination))
    state = store.read_state(audit)
    head = state.seq if state is not None else 0
    age = None
    pending = read_chain(audit, position, limit=1)
    if pending:
        with contextlib.suppress(ValueError, TypeError):
            written = datetime.fromisoformat(str(pending[0].ts).replace("Z", "+00:00"))
            age = round((datetime.now(UTC) - written).total_seconds(), 3)
    return Backlog(destination.label, position.seq, max(0, head - position.seq), age)


@dataclass
class Shipper:
    """One destination's shipping loop."""

    audit: Path
    destination: Destination
    hostname: str
    tls: ssl.SSLContext | None = None
    position: Position = field(default_factory=Position)
    _sent: deque[tuple[float, Position]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._path = position_path(self.audit, self.destination)
        self.position = load_position(self._path)
        label = self.destination.label
        self._backlog = metrics.SHIP_BACKLOG.labels(label)
        self._last = metrics.SHIP_LAST_SEQ.labels(label)
        self._errors = metrics.SHIP_ERRORS.labels(label)
        self._shipped = metrics.SHIPPED.labels(label)

    async def run(self) -> None:
        """Ship until cancelled; reconnect with back-off after any failure."""
        failures = 0
        while True:
            try:
                reader, writer = await self._connect()
            except (OSError, ssl.SSLError, TimeoutError):
                self._errors.inc()
                await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1
                continue
            try:
                failures = 0
                await self._pump(reader, writer)
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
                self._errors.inc()
                self._rewind()
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 2)
            await asyncio.sleep(BACKOFF[0])

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.destination.host, self.destination.port
        return await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self.tls, server_hostname=host if self.tls else None),
            SEND_TIMEOUT,
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.ensure_future(reader.read())  # the collector never speaks: data or EOF means gone
        try:
            while True:
                if closed.done():
                    raise ConnectionResetError("the collector closed the connection")
                lines = read_chain(self.audit, self.position) or read_checkpoints(self.audit, self.position)
                self._report()
                if not lines:
                    await asyncio.wait({closed}, timeout=POLL)
                    continue
                payload = b"".join(
                    frame(line.raw, msgid=line.msgid, ts=line.ts, hostname=self.hostname) for line in lines
                )
                self._sent.append((time.monotonic(), self.position))
                writer.write(payload)
                await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
                self.position = lines[-1].after
                self._shipped.inc(len(lines))
                save_position(self._path, self.position, self.destination)
        finally:
            closed.cancel()

    def caught_up(self) -> bool:
        """Whether everything written so far has been sent."""
        pending = read_chain(self.audit, self.position, 1) or read_checkpoints(self.audit, self.position, 1)
        return not pending

    async def flush(self, seconds: float) -> bool:
        """At shutdown: wait (bounded) until the last records are sent; True if they were."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.caught_up():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL / 2)
        return True

    def _rewind(self) -> None:
        """After a failure, resend what may have been lost in flight (at least once)."""
        cutoff = time.monotonic() - RESEND_SECONDS
        earlier = [pos for at, pos in self._sent if at >= cutoff]
        if earlier:
            self.position = earlier[0]
            save_position(self._path, self.position, self.destination)
        self._sent.clear()

    def _report(self) -> None:
        state = store.read_state(self.audit)
        head = state.seq if state is not None else 0
        self._last.set(self.position.seq)
        self._backlog.set(max(0, head - self.position.seq))
        while self._sent and self._sent[0][0] < time.monotonic() - RESEND_SECONDS:
            self._sent.popleft()


def tls_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """Verify the collector against *ca*; present *cert* when the collector asks for one."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def hostname() -> str:
    """The machine's name, the default for ``--host-name``."""
    return os.uname().nodename
