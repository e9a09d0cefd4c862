"""The loaded, merged and compiled policy: what the engine decides on."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network, ip_address
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from gateway.errors import Problem

if TYPE_CHECKING:
    from gateway.policy.models import Action


class Target(NamedTuple):
    """A container as the Engine API reports it when the request arrives."""

    name: str
    labels: Mapping[str, str] = MappingProxyType({})


class TargetMatcher(NamedTuple):
    """One target entry of a grant, compiled once at load time."""

    pattern: str
    regex: re.Pattern[str] | None = None
    label: tuple[str, str] | None = None

    @classmethod
    def glob(cls, pattern: str) -> TargetMatcher:
        """A shell-style glob on container names (``web*``)."""
        return cls(pattern, regex=re.compile(fnmatch.translate(pattern)))

    @classmethod
    def label_pair(cls, key: str, value: str) -> TargetMatcher:
        """A ``{label: key=value}`` selector."""
        return cls(f"label:{key}={value}", label=(key, value))

    def matches(self, target: Target) -> bool:
        """Whether *target* is covered by this entry."""
        if self.label is not None:
            key, value = self.label
            return target.labels.get(key) == value
        return self.regex is not None and self.regex.match(target.name) is not None


class Need(NamedTuple):
    """``needed`` different principals of ``approvers`` (written ``label`` in the policy)."""

    label: str
    approvers: frozenset[str]
    needed: int

    def describe(self) -> str:
        """``1 of security``."""
        return f"{self.needed} of {self.label}"


class Conditions(NamedTuple):
    """What a grant asks for besides the request: a reason, approvals, moderators."""

    reason_required: bool = False
    #: a pattern (RE2) the reason must match, as written
    reason_pattern: str | None = None
    approval: tuple[Need, ...] = ()
    #: seconds an approval lasts once the rules are met
    window: int = 3600
    moderated: Need | None = None

    def describe(self) -> str:
        """One line for explain and show."""
        parts = []
        if self.reason_pattern is not None:
            parts.append(f"a reason matching {self.reason_pattern}")
        elif self.reason_required:
            parts.append("a reason")
        if self.approval:
            needs = ", ".join(n.describe() for n in self.approval)
            parts.append(f"approval ({needs}; lasts {self.window}s)")
        if self.moderated is not None:
            parts.append(f"moderation ({self.moderated.describe()} watching)")
        return "needs " + " and ".join(parts) if parts else ""


class CompiledGrant(NamedTuple):
    """A grant with its globs compiled, its groups expanded and its source position kept."""

    principals: frozenset[str]
    actions: frozenset[str]
    targets: tuple[TargetMatcher, ...]
    where: str
    expires: datetime | None = None
    sources: tuple[IPv4Network | IPv6Network, ...] | None = None
    #: reason, approval, moderation (None: the grant alone decides)
    conditions: Conditions | None = None

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


class GrantSet(NamedTuple):
    """The grants of one (principal, action) pair, with their name globs in one regex.

    One C-level match replaces a Python loop over hundreds of globs; when no
    grant here has labels, ``expires`` or ``from``, the first alternative that
    matches is the first grant that covers the target, which decides.
    """

    grants: tuple[CompiledGrant, ...]
    names: re.Pattern[str] | None
    owners: tuple[int, ...]
    plain: bool

    @classmethod
    def build(cls, grants: list[CompiledGrant]) -> GrantSet:
        """Compile the alternation of every name glob, remembering each one's grant."""
        owners: list[int] = []
        alternatives: list[str] = []
        for position, grant in enumerate(grants):
            for matcher in grant.targets:
                if matcher.regex is not None:
                    owners.append(position)
                    alternatives.append(f"({matcher.regex.pattern})")
        plain = all(
            g.expires is None and g.sources is None and all(m.label is None for m in g.targets)
            for g in grants
        )
        names = re.compile("|".join(alternatives)) if alternatives else None
        return cls(tuple(grants), names, tuple(owners), plain)

    def covering(self, target: Target | None) -> Iterator[CompiledGrant]:
        """The grants that cover *target*, in policy order."""
        if target is not None and self.plain:
            found = self.names.match(target.name) if self.names is not None else None
            if found is not None and found.lastindex is not None:
                yield self.grants[self.owners[found.lastindex - 1]]
            return
        yield from (g for g in self.grants if g.covers(target))


class Policy(NamedTuple):
    """Every action and grant, merged across files, indexed by (principal, action)."""

    actions: Mapping[str, Action]
    grants: tuple[CompiledGrant, ...]
    digest: str
    lookup: Mapping[tuple[str, str], GrantSet] = MappingProxyType({})
    groups: Mapping[str, tuple[str, ...]] = MappingProxyType({})
    #: not errors: grants that expire soon or have expired (``policy check`` prints them)
    warnings: tuple[Problem, ...] = ()
    #: every principal a ``moderated`` rule names (they may watch through the approve action)
    moderators: frozenset[str] = frozenset()
    #: every principal granted an action whose sessions enter a container (``confine.warm``)
    enters: frozenset[str] = frozenset()

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
        frozen = {k: GrantSet.build(v) for k, v in index.items()}
        moderators = frozenset(
            p
            for g in grants
            if g.conditions and g.conditions.moderated
            for p in g.conditions.moderated.approvers
        )
        enters = frozenset(p for p, action in frozen if action in actions and actions[action].enters)
        return cls(
            actions=dict(actions),
            grants=grants,
            digest=digest,
            lookup=frozen,
            groups=dict(groups or {}),
            warnings=warnings,
            moderators=moderators,
            enters=enters,
        )
