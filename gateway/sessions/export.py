"""``sessions export``: a tar.gz with the sessions' records, recordings and the chain.

The bundle holds what an off-host verifier needs (``gateway audit verify
--bundle``): the audit files (the whole chain, so every link and MAC can be
checked with K_0), the signed checkpoints and their public key (so the chain
can be vouched for without K_0), each session's records, its recordings, and
a manifest of SHA-256 digests naming the sessions it holds. Other sessions'
recordings are absent by design: the chain names them by digest. It never
holds a key that can seal: not K_0, and not the chain state.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import BinaryIO

from gateway.audit import store
from gateway.sessions.index import Index
from gateway.sessions.query import QueryError, checked_id, show


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


def sha256_file(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def export(index: Index, state: Path, sessions: list[str], out: BinaryIO) -> None:
    """Write the bundle for *sessions* to *out* (streamed, gzip)."""
    for session in sessions:  # every id is checked before a byte is written
        checked_id(session)
    manifest: dict[str, str] = {}
    with tarfile.open(fileobj=out, mode="w|gz") as tar:
        for session in sessions:
            events = show(index, session)
            data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events).encode()
            _add_bytes(tar, f"sessions/{session}.jsonl", data)
            manifest[f"sessions/{session}.jsonl"] = hashlib.sha256(data).hexdigest()
            for recording in sorted({str(e["recording"]) for e in events if e.get("recording")}):
                path = state / member_name(recording)
                if path.is_file():
                    tar.add(path, arcname=recording)
                    manifest[recording] = sha256_file(path)
        for path in store.log_files(state / "audit"):
            tar.add(path, arcname=f"audit/{path.name}")
            manifest[f"audit/{path.name}"] = sha256_file(path)
        for name in ("checkpoints.jsonl", "checkpoint.pub"):
            path = state / "audit" / name
            if path.is_file():
                tar.add(path, arcname=f"audit/{name}")
                manifest[f"audit/{name}"] = sha256_file(path)
        index_data = {"sessions": sessions, "files": manifest}
        _add_bytes(tar, "MANIFEST.json", json.dumps(index_data, indent=2, sort_keys=True).encode())
