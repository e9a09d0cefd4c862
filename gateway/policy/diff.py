"""What a policy change means: who gains and who loses which (action, target) pairs, and under what.

A policy is flattened into *facts*: one per (principal, action, target
pattern) a grant gives, with its conditions (sources, expiry, reason,
approval, moderation) as one text. Two policies differ exactly where their
fact sets differ; action definitions and keys are compared beside them. The
same diff is printed by ``gateway policy diff``, carried (bounded) by the
``policy.reload`` audit record, and folded by ``gateway audit grants``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gateway.policy.compiled import CompiledGrant, Policy

#: changes a reload record carries in full; beyond that, counts only
RECORD_LIMIT = 50


class Fact(NamedTuple):
    """One thing a principal may do."""

    principal: str
    action: str
    #: a name glob, ``label:k=v``, or ``-`` for a host action
    target: str
    #: sources, expiry, reason, approval, moderation; "" when the grant alone decides
    conditions: str

    def text(self) -> str:
        """``debug on web* (from 10.0.0.0/8; until 2026-12-31...)``."""
        where = "" if self.target == "-" else f" on {self.target}"
        return f"{self.action}{where}" + (f" ({self.conditions})" if self.conditions else "")

    def as_list(self) -> list[str]:
        """The JSON form."""
        return list(self)


def _conditions(grant: CompiledGrant) -> str:
    parts = []
    if grant.sources:
        parts.append("from " + ", ".join(str(n) for n in grant.sources))
    if grant.expires is not None:
        parts.append(f"until {grant.expires.isoformat()}")
    if grant.conditions is not None:
        parts.append(grant.conditions.describe())
    return "; ".join(parts)


def facts(policy: Policy) -> set[Fact]:
    """Every (principal, action, target pattern, conditions) the policy gives."""
    out = set()
    for grant in policy.grants:
        conditions = _conditions(grant)
        targets = [m.pattern for m in grant.targets] or ["-"]
        for principal in grant.principals:
            for action in grant.actions:
                for target in targets:
                    out.add(Fact(principal, action, target, conditions))
    return out


def _action_texts(policy: Policy) -> dict[str, str]:
    return {
        name: json.dumps(spec.model_dump(mode="json"), sort_keys=True)
        for name, spec in policy.actions.items()
    }


@dataclass
class PolicyDiff:
    """Gains, losses, changed actions, keys added and removed."""

    gained: list[Fact] = field(default_factory=list)
    lost: list[Fact] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    keys_added: list[str] = field(default_factory=list)
    keys_removed: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        """Whether the two policies grant the same (and define the same actions, with the same keys)."""
        return not (self.gained or self.lost or self.actions or self.keys_added or self.keys_removed)

    def lines(self) -> list[str]:
        """What a reviewer pastes into a pull request."""
        out = []
        for principal in sorted({f.principal for f in (*self.gained, *self.lost)}):
            out += [f"{principal} gains: {f.text()}" for f in self.gained if f.principal == principal]
            out += [f"{principal} loses: {f.text()}" for f in self.lost if f.principal == principal]
        out += self.actions
        out += [f"key added: {k}" for k in self.keys_added]
        out += [f"key removed: {k}" for k in self.keys_removed]
        return out

    def as_json(self) -> dict[str, Any]:
        """The whole diff."""
        return {
            "same": self.same,
            "gained": [f.as_list() for f in self.gained],
            "lost": [f.as_list() for f in self.lost],
            "actions": self.actions,
            "keys_added": self.keys_added,
            "keys_removed": self.keys_removed,
        }

    def record(self, limit: int = RECORD_LIMIT) -> dict[str, Any]:
        """The bounded form a reload record carries: counts, and the first *limit* grant changes."""
        changes = [["+", *f] for f in self.gained] + [["-", *f] for f in self.lost]
        return {
            "gained": len(self.gained),
            "lost": len(self.lost),
            "changes": changes[:limit],
            "complete": len(changes) <= limit,
            "actions_changed": self.actions[:limit],
        }


def diff(
    old: Policy,
    new: Policy,
    old_keys: Mapping[str, str] | None = None,
    new_keys: Mapping[str, str] | None = None,
) -> PolicyDiff:
    """*old* to *new*; keys as fingerprint -> principal, when given."""
    before, after = facts(old), facts(new)
    out = PolicyDiff(gained=sorted(after - before), lost=sorted(before - after))
    was, now = _action_texts(old), _action_texts(new)
    for name in sorted(set(was) | set(now)):
        if name not in was:
            out.actions.append(f"action added: {name} = {now[name]}")
        elif name not in now:
            out.actions.append(f"action removed: {name}")
        elif was[name] != now[name]:
            out.actions.append(f"action changed: {name}: {was[name]} -> {now[name]}")
    if old_keys is not None and new_keys is not None:
        out.keys_added = sorted(f"{new_keys[fp]} {fp}" for fp in set(new_keys) - set(old_keys))
        out.keys_removed = sorted(f"{old_keys[fp]} {fp}" for fp in set(old_keys) - set(new_keys))
    return out


def snapshot(policy: Policy, limit: int = 10_000) -> dict[str, Any]:
    """Every fact of *policy* (for the start record), bounded."""
    every = sorted(facts(policy))
    return {"facts": [f.as_list() for f in every[:limit]], "complete": len(every) <= limit}
