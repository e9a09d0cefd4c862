"""``policies/*.yaml`` -> a compiled Policy, or a LoadError listing every problem.

Every problem names ``file:line:column`` and what was expected. Files are
validated one by one (so one bad file does not hide another's problems), then
merged and cross-checked against the key ring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any, NamedTuple, TypeVar

import re2  # type: ignore[import-untyped]  # google-re2 ships no stubs
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.errors import LoadError, Problem
from gateway.keys import KeyRing
from gateway.policy import models
from gateway.policy.compiled import CompiledGrant, Conditions, Need, Policy, TargetMatcher
from gateway.policy.marks import MAX_NODES, Marked, parse_yaml
from gateway.policy.marks import Path as DataPath

#: the action every principal with a key may use, whether or not the policy defines or grants it
HELP = "help"
#: the approvers' queue, there for the moderators a policy names even when it defines no approve action
APPROVE = "approve"

#: bounds that keep a hostile policy from taking the gateway down (bytes: policy_files)
MAX_GRANTS = 10_000

M = TypeVar("M", bound=BaseModel)


@dataclass
class _File:
    name: str
    marked: Marked
    model: models.PolicyFile


class PolicyText(NamedTuple):
    """One policy file as read from disk (by ``gateway.policy_files``): its name and text."""

    name: str
    text: str


def load_texts(texts: list[PolicyText], keys: KeyRing, problems: list[Problem] | None = None) -> Policy:
    """Merge and check the policy *texts* against *keys*; raise LoadError with every problem.

    *problems* may already hold the reader's (a file too large, not UTF-8).
    """
    problems = list(problems or [])
    files: list[_File] = []
    digest = hashlib.sha256()
    budget = _Budget()
    for name, text in texts:
        digest.update(f"{PurePath(name).name}\0{len(text)}\0".encode() + text.encode())
        loaded = _load_file(name, text, problems, budget)
        if loaded is not None:
            files.append(loaded)
    actions: dict[str, models.Action] = _merge(files, "actions", problems)
    actions.setdefault(HELP, models.HelpAction(type="help"))  # ssh help@HOST: every principal with a key
    actions.setdefault(APPROVE, models.ApproveAction(type="approve"))  # moderators watch through it
    groups: dict[str, tuple[str, ...]] = _merge(files, "groups", problems)
    keyless = _keyless_members(files, keys)
    scope = _Scope(actions, groups, keys)
    grants = [g for f in files for g in _check_grants(f, scope, problems)]
    if problems:
        raise LoadError(problems)
    warnings = [w for f in files for w in (*_expiry_warnings(f), *_privileged_warnings(f))]
    warnings += keyless + scope.keyless
    return Policy.build(actions, tuple(grants), digest.hexdigest(), groups=groups, warnings=tuple(warnings))


@dataclass
class _Budget:
    """What is left of the bounds, shared by every file of one load."""

    grants: int = MAX_GRANTS
    nodes: int = MAX_NODES


def _load_file(name: str, text: str, problems: list[Problem], budget: _Budget) -> _File | None:
    marked = parse_yaml(text, name, budget.nodes)
    budget.nodes -= len(marked.values)
    problems += marked.problems
    if marked.problems:
        return None
    if not isinstance(marked.data, dict):
        problems.append(Problem(name, 1, 1, "expected a mapping with version, actions and grants"))
        return None
    grants = marked.data.get("grants")
    if isinstance(grants, list):
        budget.grants -= len(grants)
        if budget.grants < 0:
            mark = marked.locate(("grants",), key=True)
            message = f"grants: too many grants (at most {MAX_GRANTS} across all files)"
            problems.append(Problem(name, mark.line, mark.column, message))
            return None
    try:
        model = models.policy_file_model().model_validate(marked.data)
    except ValidationError as exc:
        problems += (_problem(name, marked, err) for err in _deepest(exc.errors()))
        return None
    return _File(name, marked, model)


def validated(name: str, text: str, model: type[M]) -> M:
    """*text* (YAML) checked against *model*; LoadError with ``file:line:column`` problems otherwise."""
    marked = parse_yaml(text, name)
    if marked.problems:
        raise LoadError(marked.problems)
    try:
        return model.model_validate(marked.data)
    except ValidationError as exc:
        raise LoadError([_problem(name, marked, err) for err in _deepest(exc.errors())]) from None


def _deepest(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop a "too short" error on a list when its items already have errors of their own."""
    locs = [tuple(e["loc"]) for e in errors]
    return [
        e
        for e, loc in zip(errors, locs, strict=True)
        if not (e["type"] == "too_short" and any(o != loc and o[: len(loc)] == loc for o in locs))
    ]


def _real_path(data: Any, loc: Iterable[int | str]) -> tuple[DataPath, bool]:
    """Walk pydantic's loc through the data, skipping union tags; True if it ends on a key."""
    path: list[str | int] = []
    on_key = False
    for part in loc:
        if part == "[key]":
            on_key = True
            continue
        if isinstance(data, dict) and part in data:  # noqa: SIM114 - two branches narrow for mypy
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            continue
        path.append(part)
    return tuple(path), on_key


def _problem(name: str, marked: Marked, err: ErrorDetails) -> Problem:
    path, on_key = _real_path(marked.data, err["loc"])
    kind = err["type"]
    dotted = data_path(path)
    if kind == "extra_forbidden":
        mark = marked.locate(path, key=True)
        expected = ", ".join(_expected_keys(marked.data, path[:-1]))
        message = f"{dotted}: unknown key {path[-1]!r} (expected one of: {expected})"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        mark = marked.locate((*path, "type"))
        got = _get(marked.data, path).get("type") if kind == "union_tag_invalid" else None
        what = f"unknown action type {got!r}" if got is not None else "missing key 'type'"
        message = f"{dotted}: {what} (expected one of: {', '.join(models.ACTION_REGISTRY)})"
    elif kind == "missing":
        mark = marked.locate(path)
        message = f"{dotted}: missing required key {err['loc'][-1]!r}"
    elif on_key:
        mark = marked.locate(path, key=True)
        message = f"{dotted}: bad name: {_plain(err['msg'])}"
    else:
        mark = marked.locate(path)
        message = f"{dotted}: {_plain(err['msg'])}"
    return Problem(name, mark.line, mark.column, message)


def data_path(path: DataPath) -> str:
    """One path style for every message: ``grants[3].principals``, ``actions.debug.command[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


#: what pydantic puts before a validator's own message
_PREFIXES = ("Value error, ", "Assertion failed, ")


def _plain(message: str) -> str:
    """A validator's message without pydantic's prefix."""
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    return message


def _get(data: Any, path: DataPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _keys_of(model: type[BaseModel]) -> list[str]:
    """The YAML keys of *model*: aliases (``from``), not field names (``sources``)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def _expected_keys(data: Any, parent: DataPath) -> list[str]:
    if not parent:
        return _keys_of(models.PolicyFile)
    if parent[0] == "grants":
        if len(parent) >= 4 and parent[2] == "targets":
            return _keys_of(models.LabelSelector)
        if len(parent) >= 4 and parent[2] == "approval":
            return _keys_of(models.ApprovalRule)
        if len(parent) >= 3 and parent[2] == "moderated":
            return _keys_of(models.Moderation)
        return _keys_of(models.Grant)
    node = _get(data, parent)
    model = models.ACTION_REGISTRY.get(node.get("type", "") if isinstance(node, dict) else "")
    return _keys_of(model) if model else ["type"]


def _merge(files: list[_File], section: str, problems: list[Problem]) -> dict[str, Any]:
    """Merge one named section (actions, groups) across files; names are unique."""
    merged: dict[str, Any] = {}
    first: dict[str, str] = {}
    for f in files:
        for name, value in getattr(f.model, section).items():
            mark = f.marked.locate((section, name), key=True)
            if name in merged:
                what = section.rstrip("s")
                problems.append(
                    Problem(
                        f.name, mark.line, mark.column, f"{what} {name!r} is already defined at {first[name]}"
                    )
                )
                continue
            merged[name], first[name] = value, f"{f.name}:{mark.line}"
    return merged


def _no_key(principal: str) -> str:
    return f"warning: no key for principal {principal!r} (keys/{principal}.pub): it cannot log in"


def _keyless_members(files: list[_File], keys: KeyRing) -> list[Problem]:
    """Group members without a key: warnings, so that removing a key file always revokes it."""
    out = []
    for f in files:
        for group, members in f.model.groups.items():
            for j, member in enumerate(members):
                if member not in keys.principals:
                    mark = f.marked.locate(("groups", group, j))
                    out.append(Problem(f.name, mark.line, mark.column, f"groups.{group}: {_no_key(member)}"))
    return out


@dataclass(frozen=True)
class _Scope:
    actions: dict[str, models.Action]
    groups: dict[str, tuple[str, ...]]
    keys: KeyRing
    #: warnings for grants naming a principal that has no key
    keyless: list[Problem] = field(default_factory=list)

    def expand(self, names: tuple[str, ...]) -> frozenset[str]:
        """Principals, with ``@group`` replaced by its members."""
        out: set[str] = set()
        for name in names:
            out |= set(self.groups.get(name[1:], ())) if name.startswith("@") else {name}
        return frozenset(out)


WARN_BEFORE = timedelta(days=7)


def _expiry_warnings(f: _File) -> list[Problem]:
    now = datetime.now(UTC)
    out = []
    for i, grant in enumerate(f.model.grants):
        if grant.expires is None or grant.expires - now > WARN_BEFORE:
            continue
        mark = f.marked.locate(("grants", i, "expires"))
        state = "has expired" if grant.expires <= now else "expires soon"
        out.append(
            Problem(
                f.name, mark.line, mark.column, f"warning: grants[{i}] {state} ({grant.expires.isoformat()})"
            )
        )
    return out


def _privileged_warnings(f: _File) -> list[Problem]:
    out = []
    for name, action in (f.model.actions or {}).items():
        if isinstance(action, models.ShellAction) and action.privileged and action.via == "nsenter":
            mark = f.marked.locate(("actions", name, "privileged"))
            out.append(
                Problem(
                    f.name,
                    mark.line,
                    mark.column,
                    f"warning: action {name} is privileged: a host-root shell with full capabilities"
                    " and no seccomp inside the container",
                )
            )
    return out


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _need(names: tuple[str, ...], count: int, scope: _Scope) -> Need:
    """``from: [security, frank]``: group names (bare or ``@``) and principals, as one set."""
    members: set[str] = set()
    for name in names:
        group = name.removeprefix("@")
        members |= set(scope.groups[group]) if group in scope.groups else {name}
    return Need(", ".join(names), frozenset(members), count)


def _conditions(grant: models.Grant, scope: _Scope) -> Conditions | None:
    if grant.reason is None and grant.approval is None and grant.moderated is None:
        return None
    rules = tuple(_need(r.approvers, r.count, scope) for r in grant.approval or ())
    moderated = grant.moderated
    return Conditions(
        reason_required=grant.reason is not None,
        reason_pattern=grant.reason if grant.reason not in (None, "required") else None,
        approval=rules,
        window=grant.approval_window,
        moderated=_need(moderated.by, moderated.count, scope) if moderated is not None else None,
    )


def _check_grants(f: _File, scope: _Scope, problems: list[Problem]) -> list[CompiledGrant]:
    compiled = []
    for i, grant in enumerate(f.model.grants):
        found = _grant_problems(f, i, grant, scope)
        problems += found
        if not found:
            mark = f.marked.locate(("grants", i))
            compiled.append(
                CompiledGrant(
                    principals=scope.expand(grant.principals),
                    actions=frozenset(grant.actions),
                    targets=tuple(_matcher(t) for t in grant.targets or ()),
                    where=f"{f.name}:{mark.line}",
                    expires=grant.expires,
                    sources=grant.sources,
                    conditions=_conditions(grant, scope),
                )
            )
    return compiled


def _matcher(entry: str | models.LabelSelector) -> TargetMatcher:
    if isinstance(entry, models.LabelSelector):
        return TargetMatcher.label_pair(*entry.pair)
    return TargetMatcher.glob(entry)


def _grant_problems(f: _File, i: int, grant: models.Grant, scope: _Scope) -> list[Problem]:
    actions, keys = scope.actions, scope.keys
    out: list[Problem] = []

    def at(path: DataPath, message: str) -> None:
        mark = f.marked.locate(("grants", i, *path))
        out.append(Problem(f.name, mark.line, mark.column, f"grants[{i}]: {message}"))

    for j, principal in enumerate(grant.principals):
        if principal.startswith("@"):
            if principal[1:] not in scope.groups:
                known = ", ".join(f"@{g}" for g in sorted(scope.groups)) or "none defined"
                at(("principals", j), f"unknown group {principal!r} (expected one of: {known})")
        elif principal not in keys.principals:
            mark = f.marked.locate(("grants", i, "principals", j))
            scope.keyless.append(
                Problem(f.name, mark.line, mark.column, f"grants[{i}]: {_no_key(principal)}")
            )
    for j, action in enumerate(grant.actions):
        spec = actions.get(action)
        if spec is None:
            at(
                ("actions", j),
                f"unknown action {action!r} (expected one of: {', '.join(sorted(actions)) or '-'})",
            )
        elif spec.needs_target and grant.targets is None:
            at(("actions", j), f"action {action!r} acts on containers: the grant needs targets")
        elif not spec.needs_target and grant.targets is not None:
            at(("targets",), f"host action {action!r} takes no targets: grant it without targets")
    out += _condition_problems(grant, scope, at)
    return out


def _unknown_names(names: tuple[str, ...], scope: _Scope) -> list[int]:
    """Positions of names in an approval or moderation rule that are neither a group nor a principal."""
    members = {m for group in scope.groups.values() for m in group}
    known = set(scope.keys.principals) | members
    return [
        j
        for j, name in enumerate(names)
        if name.removeprefix("@") not in scope.groups and (name.startswith("@") or name not in known)
    ]


def _unknown_name_message(name: str, scope: _Scope) -> str:
    groups = ", ".join(sorted(scope.groups)) or "none defined"
    if name.startswith("@"):
        return f"unknown group {name!r} (groups: {groups})"
    return (
        f"unknown group or principal {name!r}: no group of that name (groups: {groups})"
        f" and no key keys/{name}.pub: this rule could never be met"
    )


def _condition_problems(
    grant: models.Grant, scope: _Scope, at: Callable[[DataPath, str], None]
) -> list[Problem]:
    """A reason pattern RE2 refuses; an approval or moderation rule that can never be met."""
    if grant.reason not in (None, "required"):
        try:
            re2.compile(str(grant.reason), _RE2_OPTIONS)
        except re2.error as exc:
            raw = exc.args[0] if exc.args else ""
            detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            at(("reason",), f"reason: not a pattern RE2 accepts: {detail} (or write `required`)")
    rules: list[tuple[DataPath, str, tuple[str, ...], int]] = [
        (("approval", k), "from", r.approvers, r.count) for k, r in enumerate(grant.approval or ())
    ]
    if grant.moderated is not None:
        rules.append((("moderated",), "by", grant.moderated.by, grant.moderated.count))
    for path, field_name, names, count in rules:
        unknown = _unknown_names(names, scope)
        for j in unknown:
            at((*path, field_name, j), _unknown_name_message(names[j], scope))
        if unknown:
            continue
        need = _need(names, count, scope)
        if len(need.approvers) < count:
            at(
                path,
                f"needs {count} of {need.label}, who are only {len(need.approvers)}: it can never be met",
            )
    return []
