"""The pure parts of the audit chain: canonical JSON, digests, MACs, key evolution.

Each record carries ``seq``, ``prev`` (SHA-256 of the previous line) and
``mac`` (HMAC-SHA256 with key K_seq over the record without ``mac``). After
each record the key evolves, K_{i+1} = SHA256(K_i), and the old key is
forgotten: a key stolen today cannot rewrite yesterday (Schneier-Kelsey).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64


def canonical_json(obj: Any, **_: Any) -> str:
    """The one serialisation every digest and MAC is computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(line: str | bytes) -> str:
    """SHA-256 of a record's line (without its newline): the next record's ``prev``."""
    return hashlib.sha256(line.encode() if isinstance(line, str) else line).hexdigest()


def evolve(key: bytes, steps: int = 1) -> bytes:
    """K_{i+steps} from K_i."""
    for _ in range(steps):
        key = hashlib.sha256(key).digest()
    return key


def mac(key: bytes, record: Mapping[str, object]) -> str:
    """HMAC-SHA256 over the canonical JSON of *record* without its ``mac``."""
    body = {k: v for k, v in record.items() if k != "mac"}
    return hmac.new(key, canonical_json(body).encode(), hashlib.sha256).hexdigest()


def seal(record: dict[str, Any], *, seq: int, prev: str, key: bytes) -> str:
    """Add seq, prev and mac to *record*; return its line."""
    record["seq"], record["prev"] = seq, prev
    record["mac"] = mac(key, record)
    return canonical_json(record)


def mac_ok(key: bytes, record: Mapping[str, object]) -> bool:
    """Whether *record*'s mac was made with *key*."""
    return hmac.compare_digest(str(record.get("mac", "")), mac(key, record))
