"""Signed checkpoints of the chain head (Ed25519), verifiable with the public key alone.

Each line of ``STATE/audit/checkpoints.jsonl`` is ``{"seq", "head", "ts", "sig"}``:
the signature covers the canonical JSON of the other three. Ship the lines
off the host as they are written; ``audit verify --pubkey`` checks that each
one matches the record at its seq; a checkpoint past the end of the chain
means its tail was cut (``truncated-tail``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit import chain, store

PRIVATE, PUBLIC, LOG = "checkpoint.key", "checkpoint.pub", "checkpoints.jsonl"


def signing_key(directory: Path, path: Path | None = None) -> Ed25519PrivateKey:
    """The checkpoint key at *path* (default ``DIR/checkpoint.key``), created 0600 on first use.

    The public half is (re)written to ``DIR/checkpoint.pub`` so that the SSH
    ``verify`` query and a copy for Charlotte find it, even when the private
    key lives outside the state directory (``serve --checkpoint-key``).
    """
    path = path or directory / PRIVATE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
    else:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        store.write_new(path, pem.decode())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not (directory / PUBLIC).exists() or (directory / PUBLIC).read_bytes() != public:
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


def fingerprint(public: Ed25519PublicKey) -> str:
    """``SHA256:HEX`` of the key's DER encoding: ``openssl pkey -pubin -in FILE -outform DER | sha256sum``."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + hashlib.sha256(der).hexdigest()


@dataclass
class Anchors:
    """What the signed checkpoints say about the chain."""

    count: int = 0
    #: the highest seq a valid checkpoint vouches for
    last_seq: int = 0
    #: (kind, where, detail) of the first bad checkpoint
    problem: tuple[str, str, str] | None = None


def read(directory: Path) -> list[tuple[int, dict[str, Any] | None]]:
    """(line number, parsed checkpoint or None) for every line of the log."""
    path = directory / LOG
    if not path.exists():
        return []
    out: list[tuple[int, dict[str, Any] | None]] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        out.append((number, record if isinstance(record, dict) else None))
    return out


def wanted(directory: Path) -> set[int]:
    """The seqs the checkpoints name, so the walker keeps only those heads."""
    return {r["seq"] for _, r in read(directory) if r is not None and isinstance(r.get("seq"), int)}


def _signed(public: Ed25519PublicKey, record: dict[str, Any]) -> bool:
    try:
        body = {k: record[k] for k in ("seq", "head", "ts")}
        public.verify(base64.b64decode(record["sig"]), chain.canonical_json(body).encode())
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return isinstance(body["seq"], int)


def check(directory: Path, public: Ed25519PublicKey, heads: dict[int, str], last_seq: int) -> Anchors:
    """Check every checkpoint against the chain: signature, head, and a tail that is still there."""
    lines = read(directory)
    anchors = Anchors()
    if not lines:
        detail = f"{LOG} is missing or empty: nothing anchors the chain"
        anchors.problem = ("missing-checkpoints", LOG, detail)
        return anchors
    for number, record in lines:
        where = f"{LOG}:{number}"
        if record is None or not _signed(public, record):
            anchors.problem = ("edited", where, "a checkpoint with a bad signature")
            return anchors
        seq = record["seq"]
        if seq > last_seq:
            detail = f"a signed checkpoint names seq {seq}, but the chain ends at seq {last_seq}"
            anchors.problem = ("truncated-tail", where, detail)
            return anchors
        if heads.get(seq) != record["head"]:
            anchors.problem = ("edited", where, f"the chain's record {seq} does not match the signed head")
            return anchors
        anchors.count += 1
        anchors.last_seq = max(anchors.last_seq, seq)
    return anchors
