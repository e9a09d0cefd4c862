"""One side of ``gateway policy diff``: a policy directory, or ``git:REV[:PATH]`` read with ``git show``.

A git side reads the ``*.yaml`` files of PATH (default ``policies``) and the
``*.pub`` files of ``keys/`` beside it, at REV, without a checkout: each blob
is written to a private temporary directory and loaded from there by the
same readers as everything else.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from gateway.errors import LoadError, Problem
from gateway.keys import KeyRing, load_keys
from gateway.policy.compiled import Policy
from gateway.policy_files import load_policy

GIT_SECONDS = 30


def _git(*args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], capture_output=True, timeout=GIT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoadError([Problem("git", 0, 0, f"cannot run git: {exc}")]) from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["failed"]
        raise LoadError([Problem(f"git {' '.join(args)}"[:80], 0, 0, why[0][:200])])
    return done.stdout


def _export(rev: str, path: str, suffix: str, into: Path) -> None:
    into.mkdir()
    names = _git("ls-tree", "--name-only", f"{rev}:{path}").decode("utf-8", "replace").splitlines()
    for name in names:
        if name.endswith(suffix) and "/" not in name:
            (into / name).write_bytes(_git("show", f"{rev}:{path}/{name}"))


def load_side(spec: str, keys: Path) -> tuple[KeyRing, Policy]:
    """The keys and policy *spec* names (a directory, keys from *keys*; or git:REV[:PATH])."""
    if not spec.startswith("git:"):
        ring = load_keys(keys)
        return ring, load_policy(Path(spec), ring)
    rev, _, path = spec[4:].partition(":")
    path = (path or "policies").strip("/")
    parent = PurePosixPath(path).parent
    keys_path = "keys" if str(parent) == "." else f"{parent}/keys"
    with tempfile.TemporaryDirectory(prefix="gateway-diff-") as tmp:
        base = Path(tmp)
        _export(rev, path, ".yaml", base / "policies")
        _export(rev, keys_path, ".pub", base / "keys")
        ring = load_keys(base / "keys")
        return ring, load_policy(base / "policies", ring)
