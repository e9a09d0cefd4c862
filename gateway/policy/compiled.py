"""The loaded, merged and compiled policy: what the engine decides on."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network, ip_address

from gateway.errors import Problem
from gateway.policy.models import Action, LabelSelector


@dataclass(frozen=True)
class Target:
    """A container as the Engine API reports it when the request arrives."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetMatcher:
    """One target entry of a grant, compiled once at load time."""

    pattern: str
    regex: re.Pattern[str] | None = None
    label: tuple[str, str] | None = None

    @classmethod
    def glob(cls, pattern: str) -> TargetMatcher:
        """A shell-style glob on container names (``web*``)."""
        return cls(pattern, regex=re.compile(fnmatch.translate(pattern)))

    @classmethod
    def from_entry(cls, entry: str | LabelSelector) -> TargetMatcher:
        """A glob string or a ``{label: key=value}`` selector."""
        if isinstance(entry, LabelSelector):
            return cls(f"label:{entry.label}", label=entry.pair)
        return cls.glob(entry)

    def matches(self, target: Target) -> bool:
        """Whether *target* is covered by this entry."""
        if self.label is not None:
            key, value = self.label
            return target.labels.get(key) == value
        return self.regex is not None and self.regex.match(target.name) is not None


@dataclass(frozen=True)
class CompiledGrant:
    """A grant with its globs compiled, its groups expanded and its source position kept."""

    principals: frozenset[str]
    actions: frozenset[str]
    targets: tuple[TargetMatcher, ...]
    where: str
    expires: datetime | None = None
    sources: tuple[IPv4Network | IPv6Network, ...] | None = None

    def expired(self, now: datetime) -> bool:
        """Whether the grant's time box is over."""
        return self.expires is not None and now >= self.expires

    def admits(self, source: str | None) -> bool:
        """Whether a connection from *source* may use this grant (unknown sources may not)."""
        if self.sources is None:
            return True
        try:
            address = ip_address(source or "")
        except ValueError:
            return False
        return any(address in network for network in self.sources)

    def covers(self, target: Target | None) -> bool:
        """Whether this grant covers *target* (None for host actions)."""
        if target is None:
            return not self.targets
        return any(m.matches(target) for m in self.targets)


@dataclass(frozen=True)
class Policy:
    """Every action and grant, merged across files, indexed by (principal, action)."""

    actions: Mapping[str, Action]
    grants: tuple[CompiledGrant, ...]
    digest: str
    index: Mapping[tuple[str, str], tuple[CompiledGrant, ...]] = field(default_factory=dict)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: not errors: grants that expire soon or have expired (``policy check`` prints them)
    warnings: tuple[Problem, ...] = ()

    @classmethod
    def build(
        cls,
        actions: Mapping[str, Action],
        grants: tuple[CompiledGrant, ...],
        digest: str,
        *,
        groups: Mapping[str, tuple[str, ...]] | None = None,
        warnings: tuple[Problem, ...] = (),
    ) -> Policy:
        """Build the policy and its (principal, action) index."""
        index: dict[tuple[str, str], list[CompiledGrant]] = {}
        for grant in grants:
            for principal in grant.principals:
                for action in grant.actions:
                    index.setdefault((principal, action), []).append(grant)
        frozen = {k: tuple(v) for k, v in index.items()}
        return cls(
            actions=dict(actions),
            grants=grants,
            digest=digest,
            index=frozen,
            groups=dict(groups or {}),
            warnings=warnings,
        )
