"""At start-up: sessions cut by a crash (kill -9) are marked interrupted in the chain."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.audit import AuditLog
from gateway.events import Event
from gateway.evidence.index import Index


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"gateway" in cmdline


def mark_interrupted(state: Path, audit: AuditLog) -> int:
    """Emit ``session.interrupted`` for open sessions whose process is gone; return how many."""
    index = Index(state)
    try:
        index.catch_up()
        count = 0
        for row in index.open_sessions():
            if _alive(row["pid"]):
                continue
            fields: dict[str, object] = {}
            if row["recording"] and (state / row["recording"]).is_file():
                data = (state / row["recording"]).read_bytes()
                fields = {"recording": row["recording"], "recording_size": len(data),
                          "recording_sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip
            audit.emit(
                Event.SESSION_INTERRUPTED,
                durable=True,
                session_id=row["session_id"],
                channel=row["channel"],
                principal=row["principal"],
                action=row["action"],
                target=row["target"],
                reason="the gateway process ended without closing the session",
                **fields,
            )
            count += 1
        index.catch_up()
        return count
    finally:
        index.close()
