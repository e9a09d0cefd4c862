"""``policies/*.yaml`` -> a compiled Policy, or a LoadError listing every problem.

Every problem names ``file:line:column`` and what was expected. Files are
validated one by one (so one bad file does not hide another's problems), then
merged and cross-checked against the key ring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.errors import LoadError, Problem
from gateway.keys import KeyRing
from gateway.policy import models
from gateway.policy.compiled import CompiledGrant, Policy, TargetMatcher
from gateway.policy.marks import Marked, parse_yaml
from gateway.policy.marks import Path as DataPath

_ACTION_MODELS: dict[str, type[BaseModel]] = dict(zip(models.ACTION_TYPES, models.ACTION_MODELS, strict=True))


@dataclass
class _File:
    name: str
    marked: Marked
    model: models.PolicyFile


def load_policy(directory: Path, keys: KeyRing) -> Policy:
    """Load, merge and check every ``*.yaml`` in *directory* against *keys*."""
    if not directory.is_dir():
        raise LoadError([Problem(str(directory), 1, 1, "policies directory not found")])
    problems: list[Problem] = []
    files: list[_File] = []
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        digest.update(f"{path.name}\0{len(text)}\0".encode() + text.encode())
        loaded = _load_file(str(path), text, problems)
        if loaded is not None:
            files.append(loaded)
    actions = _merge_actions(files, problems)
    grants = [g for f in files for g in _check_grants(f, actions, keys, problems)]
    if problems:
        raise LoadError(problems)
    return Policy.build(actions, tuple(grants), digest.hexdigest())


def _load_file(name: str, text: str, problems: list[Problem]) -> _File | None:
    marked = parse_yaml(text, name)
    problems += marked.problems
    if marked.problems:
        return None
    if not isinstance(marked.data, dict):
        problems.append(Problem(name, 1, 1, "expected a mapping with version, actions and grants"))
        return None
    try:
        model = models.PolicyFile.model_validate(marked.data)
    except ValidationError as exc:
        problems += (_problem(name, marked, err) for err in exc.errors())
        return None
    return _File(name, marked, model)


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
    dotted = ".".join(str(p) for p in path) or "(top level)"
    if kind == "extra_forbidden":
        mark = marked.locate(path, key=True)
        expected = ", ".join(_expected_keys(marked.data, path[:-1]))
        message = f"{dotted}: unknown key {path[-1]!r} (expected one of: {expected})"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        mark = marked.locate((*path, "type"))
        got = _get(marked.data, path).get("type") if kind == "union_tag_invalid" else None
        what = f"unknown action type {got!r}" if got is not None else "missing key 'type'"
        message = f"{dotted}: {what} (expected one of: {', '.join(models.ACTION_TYPES)})"
    elif kind == "missing":
        mark = marked.locate(path)
        message = f"{dotted}: missing required key {err['loc'][-1]!r}"
    elif on_key:
        mark = marked.locate(path, key=True)
        message = f"{dotted}: bad name: {err['msg']}"
    else:
        mark = marked.locate(path)
        message = f"{dotted}: {err['msg']}"
    return Problem(name, mark.line, mark.column, message)


def _get(data: Any, path: DataPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _expected_keys(data: Any, parent: DataPath) -> list[str]:
    if not parent:
        return list(models.PolicyFile.model_fields)
    if parent[0] == "grants":
        in_target = len(parent) >= 4 and parent[2] == "targets"
        return list((models.LabelSelector if in_target else models.Grant).model_fields)
    node = _get(data, parent)
    model = _ACTION_MODELS.get(node.get("type", "") if isinstance(node, dict) else "")
    return list(model.model_fields) if model else ["type"]


def _merge_actions(files: list[_File], problems: list[Problem]) -> dict[str, models.Action]:
    merged: dict[str, models.Action] = {}
    first: dict[str, str] = {}
    for f in files:
        for action_name, spec in f.model.actions.items():
            mark = f.marked.locate(("actions", action_name), key=True)
            where = f"{f.name}:{mark.line}"
            if action_name in merged:
                problems.append(
                    Problem(
                        f.name,
                        mark.line,
                        mark.column,
                        f"action {action_name!r} is already defined at {first[action_name]}",
                    )
                )
                continue
            merged[action_name], first[action_name] = spec, where
    return merged


def _check_grants(
    f: _File, actions: dict[str, models.Action], keys: KeyRing, problems: list[Problem]
) -> list[CompiledGrant]:
    compiled = []
    for i, grant in enumerate(f.model.grants):
        found = _grant_problems(f, i, grant, actions, keys)
        problems += found
        if not found:
            mark = f.marked.locate(("grants", i))
            compiled.append(
                CompiledGrant(
                    principals=frozenset(grant.principals),
                    actions=frozenset(grant.actions),
                    targets=tuple(TargetMatcher.from_entry(t) for t in grant.targets or ()),
                    where=f"{f.name}:{mark.line}",
                )
            )
    return compiled


def _grant_problems(
    f: _File, i: int, grant: models.Grant, actions: dict[str, models.Action], keys: KeyRing
) -> list[Problem]:
    out: list[Problem] = []

    def at(path: DataPath, message: str) -> None:
        mark = f.marked.locate(("grants", i, *path))
        out.append(Problem(f.name, mark.line, mark.column, f"grants[{i}]: {message}"))

    for j, principal in enumerate(grant.principals):
        if principal not in keys.principals:
            at(
                ("principals", j),
                f"unknown principal {principal!r} (expected a keys/{principal}.pub file)",
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
    return out
