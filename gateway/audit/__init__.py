"""The audit trail: every attempt, allowed or refused, as one JSON line.

::

    session/auth/server ──► AuditLog.emit(event, **fields)
                               │ structlog processors:
                               │   timestamp ─► chain (seq, prev) ─► canonical JSON
                               ▼
                          state/audit/audit.jsonl   (append-only; fsync when durable)

``emit`` raises AuditUnavailable when the line cannot be written, so callers
fail closed: no action runs before its allow record is on disk.
"""

from gateway.audit.log import AuditLog, canonical_json

__all__ = ["AuditLog", "canonical_json"]
