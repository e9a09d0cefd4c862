"""The audit trail: every attempt, allowed or refused, as one sealed JSON line.

::

    session/auth/server ──► AuditLog.emit(event, **fields)
                               │ structlog: timestamp, drop empty fields
                               ▼
                           _ChainWriter (under flock): seq, prev, HMAC with K_seq,
                               │ append (+fsync when durable), K_seq+1 = SHA256(K_seq)
                               ▼
                           STATE/audit/audit-DAY-NNN.jsonl
    verify.verify(dir, K_0) ── walks the chain, names the first bad record and its kind

``emit`` raises AuditUnavailable when the line cannot be written, so callers
fail closed: no action runs before its allow record is on disk.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.audit.chain import canonical_json
    from gateway.audit.log import AuditLog

_EXPORTS = {"AuditLog": "log", "canonical_json": "chain"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"gateway.audit.{_EXPORTS[name]}"), name)


__all__ = ["AuditLog", "canonical_json"]
