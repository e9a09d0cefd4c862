"""The policy and key files on disk: read (bounded) for the pure loader, and watched.

``policy/`` does no file I/O; this is where ``policies/*.yaml`` are read, with
a bound on their total size (1 MiB) checked before a byte is parsed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from gateway.errors import LoadError, Problem
from gateway.keys import KeyRing
from gateway.policy.compiled import Policy
from gateway.policy.loader import PolicyText, load_texts
from gateway.safefile import NotRegular, read_regular

#: all policy files together
MAX_BYTES = 1 << 20
#: name, mtime and size of every policy and key file: a change means a reload
Fingerprint = list[list[Any]]


#: not a policy file: the fleet's hosts and limits (``gateway.fleet.config``), beside the policy in git
FLEET_FILE = "fleet.yaml"


def read_policies(directory: Path) -> tuple[list[PolicyText], list[Problem]]:
    """Every ``*.yaml`` in *directory* but ``fleet.yaml``, in name order, and the problems reading them."""
    if not directory.is_dir():
        raise LoadError([Problem(str(directory), 0, 0, "policies directory not found")])
    texts: list[PolicyText] = []
    problems: list[Problem] = []
    left = MAX_BYTES
    too_large = f"too large: the policy files together may hold {MAX_BYTES >> 20} MiB"
    for path in sorted(directory.glob("*.yaml")):
        if path.name == FLEET_FILE:
            continue
        try:
            raw = read_regular(path, left)
        except NotRegular as exc:
            problems.append(Problem(str(path), 0, 0, str(exc)))
            continue
        except OSError as exc:
            problems.append(Problem(str(path), 0, 0, f"cannot read: {exc.strerror}"))
            continue
        if len(raw) > left:
            problems.append(Problem(str(path), 1, 1, too_large))
            continue
        left -= len(raw)
        try:
            texts.append(PolicyText(str(path), raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            problems.append(Problem(str(path), 1, 1, f"not UTF-8 text (byte {exc.start})"))
    return texts, problems


def load_policy(directory: Path, keys: KeyRing) -> Policy:
    """Read, merge and check every ``*.yaml`` in *directory* against *keys*."""
    texts, problems = read_policies(directory)
    return load_texts(texts, keys, problems)


def fingerprint(*directories: Path) -> Fingerprint:
    """Name, mtime and size of every policy and key file."""
    found = []
    for directory in directories:
        for pattern in ("*.yaml", "*.pub"):
            for path in directory.glob(pattern):
                with contextlib.suppress(OSError):
                    stat = path.lstat()  # a symlink's own times: its target is never read
                    found.append([str(path), stat.st_mode, stat.st_mtime_ns, stat.st_size])
    return sorted(found)
