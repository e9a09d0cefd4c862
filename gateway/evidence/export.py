"""``sessions export``: a tar.gz with the sessions' records, recordings and the chain.

The bundle holds what an off-host verifier needs (``gateway audit verify
--bundle``): the audit files (the whole chain, so every link and MAC can be
checked with K_0), the signed checkpoints and their public key (so the chain
can be vouched for without K_0), each session's records, its recordings, and
a manifest of SHA-256 digests naming the sessions it holds. Other sessions'
recordings are absent by design: the chain names them by digest. It never
holds a key that can seal: not K_0, and not the chain state.

Before a byte is written, the export itself goes into the chain: a
``sessions.export`` record naming its id and its sessions, followed by a
signed checkpoint when the signing key is at hand. The manifest names that
record, so a bundle with a session taken out no longer matches the chain.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from gateway.audit import store
from gateway.events import Event
from gateway.evidence.index import Index
from gateway.evidence.query import QueryError, checked_id, show


def member_name(name: str) -> str:
    """*name* as a tar member: relative, with no ``..`` or empty part; QueryError otherwise."""
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        raise QueryError(f"refusing an unsafe member name: {name!r}")
    return name


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(member_name(name))
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
    tar.addfile(info, io.BytesIO(data))


class _Hashing:
    """A file read for tar, hashed as it is read (the digest is of exactly the bytes in the bundle)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.digest = f, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.digest.update(data)
        return data


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> str:
    """Add *path*'s bytes as they are now (a file still growing is cut at its current size); its SHA-256."""
    with path.open("rb") as f:
        info = tarfile.TarInfo(member_name(name))
        stat = os.fstat(f.fileno())
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o600
        source = _Hashing(f)
        tar.addfile(info, source)
        return source.digest.hexdigest()


#: writes the ``sessions.export`` record (and a checkpoint after it) for an export id and its sessions
Announce = Callable[[str, list[str]], None]


def announcer(emit: Callable[..., None], checkpoint: Callable[[], None] | None) -> Announce:
    """An Announce that writes the record with *emit* (durably), then signs a checkpoint if it can."""

    def announce(export_id: str, sessions: list[str]) -> None:
        emit(Event.SESSIONS_EXPORT, durable=True, export=export_id, sessions=sessions)
        if checkpoint is not None:
            checkpoint()

    return announce


def new_export_id() -> str:
    """A fresh export id."""
    return "E" + secrets.token_hex(8)


def sha256_file(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def export(index: Index, state: Path, sessions: list[str], out: BinaryIO, announce: Announce) -> None:
    """Write the bundle for *sessions* to *out* (streamed, gzip), after announcing it in the chain."""
    for session in sessions:  # every id is checked, and found, before anything is written
        checked_id(session)
    found = {session: show(index, session) for session in sessions}
    export_id = new_export_id()
    announce(export_id, sessions)  # raises when the record cannot be written: nothing is exported
    manifest: dict[str, str] = {}
    with tarfile.open(fileobj=out, mode="w|gz") as tar:
        for session, events in found.items():
            data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events).encode()
            _add_bytes(tar, f"sessions/{session}.jsonl", data)
            manifest[f"sessions/{session}.jsonl"] = hashlib.sha256(data).hexdigest()
            for recording in sorted({str(e["recording"]) for e in events if e.get("recording")}):
                path = state / member_name(recording)
                if path.is_file():
                    manifest[recording] = _add_file(tar, path, recording)
        # the checkpoints before the records: every checkpoint in the bundle names a record in it
        for name in ("checkpoints.jsonl", "checkpoint.pub"):
            path = state / "audit" / name
            if path.is_file():
                manifest[f"audit/{name}"] = _add_file(tar, path, f"audit/{name}")
        for path in store.log_files(state / "audit"):
            manifest[f"audit/{path.name}"] = _add_file(tar, path, f"audit/{path.name}")
        index_data = {"export": export_id, "sessions": sessions, "files": manifest}
        _add_bytes(tar, "MANIFEST.json", json.dumps(index_data, indent=2, sort_keys=True).encode())
