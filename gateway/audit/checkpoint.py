"""Signed checkpoints of the chain head (Ed25519), verifiable with the public key alone.

Each line of ``STATE/audit/checkpoints.jsonl`` is ``{"seq", "head", "ts", "sig"}``:
the signature covers the canonical JSON of the other three. Ship the lines
off the host as they are written; ``audit verify --pubkey`` checks that each
one matches the record at its seq, which also catches a chain cut short.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit import chain, store

PRIVATE, PUBLIC, LOG = "checkpoint.key", "checkpoint.pub", "checkpoints.jsonl"


def signing_key(directory: Path) -> Ed25519PrivateKey:
    """The checkpoint key, created (0600, with its .pub beside it) on first use."""
    path = directory / PRIVATE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    store.write_new(path, pem.decode())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / PUBLIC).write_bytes(public)
    return key


def write_checkpoint(directory: Path, key: Ed25519PrivateKey) -> dict[str, Any] | None:
    """Sign the current head; None before the first record or when nothing changed."""
    with store.locked(directory):
        state = store.read_state(directory)
        last = _last(directory)
        if state is None or state.seq == 0 or (last is not None and last["seq"] == state.seq):
            return None
        body = {"seq": state.seq, "head": state.prev, "ts": time.time()}
        signed = {**body, "sig": base64.b64encode(key.sign(chain.canonical_json(body).encode())).decode()}
        fd = os.open(directory / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (chain.canonical_json(signed) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return signed


def _last(directory: Path) -> dict[str, Any] | None:
    path = directory / LOG
    if not path.exists():
        return None
    line = store.last_line(path)
    return json.loads(line) if line else None


def load_public(path: Path) -> Ed25519PublicKey:
    """A checkpoint public key (PEM)."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def check(directory: Path, public: Ed25519PublicKey, heads: dict[int, str]) -> str | None:
    """The first checkpoint that fails (bad signature, or a head the chain lacks), or None."""
    path = directory / LOG
    if not path.exists():
        return None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        record = json.loads(line)
        body = {k: record[k] for k in ("seq", "head", "ts")}
        try:
            public.verify(base64.b64decode(record["sig"]), chain.canonical_json(body).encode())
        except (InvalidSignature, ValueError):
            return f"{LOG}:{number}: bad signature"
        if heads.get(record["seq"]) != record["head"]:
            return f"{LOG}:{number}: the chain has no record {record['seq']} with the signed head"
    return None
