"""A compiled policy snapshot in plain JSON, reused while the policy files are unchanged.

The forced-command door starts a process per request; loading YAML and
building pydantic models costs far more than the decision. ``serve``, the
door's slow path and ``authorized-keys`` write ``STATE/policy.snapshot.json``
(0600, replaced by rename); the door's fast path reads it when the names,
mtimes and sizes of the policy and key files still match.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from ipaddress import ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gateway.policy.compiled import CompiledGrant, Policy, TargetMatcher

if TYPE_CHECKING:
    from gateway.keys import KeyRing

NAME = "policy.snapshot.json"
Fingerprint = list[list[Any]]


def fingerprint(*directories: Path) -> Fingerprint:
    """Name, mtime and size of every policy and key file."""
    found = []
    for directory in directories:
        for pattern in ("*.yaml", "*.pub"):
            for path in directory.glob(pattern):
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    found.append([str(path), stat.st_mtime_ns, stat.st_size])
    return sorted(found)


class ActionView(NamedTuple):
    """What the engine and the door need from an action, without pydantic."""

    type: str
    needs_target: bool
    accepts_args: bool
    takes_query: bool
    recorded: bool
    records_input: bool
    fields: dict[str, Any] = {}

    @property
    def command(self) -> tuple[str, ...]:
        """The action's argv, where it has one."""
        return tuple(self.fields.get("command") or ())


def _grant(grant: CompiledGrant) -> dict[str, Any]:
    return {
        "principals": sorted(grant.principals),
        "actions": sorted(grant.actions),
        "targets": [{"pattern": m.pattern, "label": m.label} for m in grant.targets],
        "expires": grant.expires.isoformat() if grant.expires else None,
        "sources": [str(n) for n in grant.sources] if grant.sources else None,
        "where": grant.where,
    }


def save(state: Path, policy: Policy, keys: KeyRing, policies: Path, keydir: Path) -> None:
    """Write the snapshot for *policy* (atomically, 0600)."""
    actions = {
        name: {
            "type": spec.type,
            "needs_target": spec.needs_target,
            "accepts_args": spec.accepts_args,
            "takes_query": spec.takes_query,
            "recorded": spec.recorded,
            "records_input": spec.records_input,
            "fields": spec.model_dump(mode="json"),
        }
        for name, spec in policy.actions.items()
    }
    document = {
        "fingerprint": fingerprint(policies.resolve(), keydir.resolve()),
        "digest": policy.digest,
        "principals": sorted(keys.principals),
        "actions": actions,
        "grants": [_grant(g) for g in policy.grants],
    }
    tmp = state / f"{NAME}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f)
    tmp.replace(state / NAME)


def _matcher(entry: dict[str, Any]) -> TargetMatcher:
    if entry["label"]:
        return TargetMatcher.label_pair(*entry["label"])
    return TargetMatcher.glob(entry["pattern"])


def load(state: Path, policies: Path, keydir: Path) -> tuple[Policy, frozenset[str]] | None:
    """The snapshot's policy and principals, or None when it is missing or stale."""
    try:
        document = json.loads((state / NAME).read_text())
    except (OSError, ValueError):
        return None
    if document.get("fingerprint") != fingerprint(policies.resolve(), keydir.resolve()):
        return None
    actions = {name: ActionView(**view) for name, view in document["actions"].items()}
    grants = tuple(
        CompiledGrant(
            principals=frozenset(g["principals"]),
            actions=frozenset(g["actions"]),
            targets=tuple(_matcher(t) for t in g["targets"]),
            where=g["where"],
            expires=datetime.fromisoformat(g["expires"]) if g["expires"] else None,
            sources=tuple(ip_network(s) for s in g["sources"]) if g["sources"] else None,
        )
        for g in document["grants"]
    )
    return Policy.build(actions, grants, document["digest"]), frozenset(document["principals"])  # type: ignore[arg-type]
