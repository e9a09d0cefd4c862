"""``keys/NAME.pub`` -> principal NAME, keyed by SHA-256 fingerprint.

The gitolite keydir convention: one file per person, one or more OpenSSH
public key lines in it, blank lines and ``#`` comments allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import LoadError, Problem
from gateway.safefile import NotRegular, quoted, read_regular

# A principal must be a safe shell word: it is emitted into authorized_keys
# command= lines, which sshd hands to the user's shell.
PRINCIPAL_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,63}$")
#: one person's key file
MAX_KEY_FILE = 256 << 10


@dataclass(frozen=True)
class KeyRing:
    """The loaded keys: fingerprint -> principal, and where each came from."""

    by_fingerprint: Mapping[str, str]
    principals: frozenset[str]
    files: Mapping[str, str]
    #: fingerprint -> "TYPE BASE64", the key as an authorized_keys line needs it
    blobs: Mapping[str, str] = field(default_factory=dict)

    def principal_for(self, fingerprint: str) -> str | None:
        """The principal owning this key fingerprint, or None."""
        return self.by_fingerprint.get(fingerprint)

    def without(self, fingerprints: set[str]) -> KeyRing:
        """This ring less *fingerprints* (a revocation: nothing is added)."""
        kept = {fp: p for fp, p in self.by_fingerprint.items() if fp not in fingerprints}
        blobs = {fp: b for fp, b in self.blobs.items() if fp in kept}
        return KeyRing(kept, frozenset(kept.values()), self.files, blobs)

    def described(self, fingerprints: set[str]) -> list[str]:
        """``PRINCIPAL FINGERPRINT`` for each of *fingerprints* this ring holds."""
        return sorted(f"{self.by_fingerprint[fp]} {fp}" for fp in fingerprints if fp in self.by_fingerprint)


def load_keys(directory: Path) -> KeyRing:
    """Load every ``*.pub`` in *directory*; raise LoadError listing all problems."""
    ring, problems = read_keys(directory)
    if problems:
        raise LoadError(problems)
    return ring


def read_keys(directory: Path) -> tuple[KeyRing, list[Problem]]:
    """Every key that loads from *directory*, and the problems with the rest."""
    problems: list[Problem] = []
    by_fp: dict[str, str] = {}
    where: dict[str, str] = {}
    files: dict[str, str] = {}
    blobs: dict[str, str] = {}
    if not directory.is_dir():
        raise LoadError([Problem(str(directory), 0, 0, "keys directory not found")])
    for path in sorted(directory.glob("*.pub")):
        name = path.name[: -len(".pub")]
        files[name] = str(path)
        if not PRINCIPAL_RE.match(name):
            problems.append(
                Problem(str(path), 1, 1, f"principal name {name!r} must match {PRINCIPAL_RE.pattern}")
            )
            continue
        problems += _load_file(path, name, by_fp, where, blobs)
    return KeyRing(by_fingerprint=by_fp, principals=frozenset(files), files=files, blobs=blobs), problems


def _load_file(
    path: Path, name: str, by_fp: dict[str, str], where: dict[str, str], blobs: dict[str, str]
) -> list[Problem]:
    problems: list[Problem] = []
    try:
        data = read_regular(path, MAX_KEY_FILE)
    except NotRegular as exc:
        return [Problem(str(path), 0, 0, str(exc))]
    except OSError as exc:
        return [Problem(str(path), 0, 0, f"cannot read: {exc.strerror}")]
    if len(data) > MAX_KEY_FILE:
        return [Problem(str(path), 0, 0, f"too large: a key file may hold {MAX_KEY_FILE >> 10} KiB")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(str(path), 0, 0, f"not UTF-8 text (byte {exc.start})")]
    import asyncssh  # noqa: PLC0415 - 0.2 s to import: only where keys are really parsed

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = asyncssh.import_public_key(line)
        except (asyncssh.KeyImportError, ValueError) as exc:
            problems.append(
                Problem(str(path), lineno, 1, f"not an OpenSSH public key line: {quoted(str(exc))}")
            )
            continue
        fingerprint = key.get_fingerprint("sha256")
        if fingerprint in by_fp and by_fp[fingerprint] != name:
            problems.append(
                Problem(
                    str(path),
                    lineno,
                    1,
                    f"key already belongs to {by_fp[fingerprint]!r} ({where[fingerprint]})",
                )
            )
            continue
        by_fp[fingerprint] = name
        where[fingerprint] = f"{path}:{lineno}"
        blobs[fingerprint] = " ".join(line.split()[:2])
    return problems
