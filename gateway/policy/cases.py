"""``gateway policy test``: what must stay true of a policy, as YAML cases, checked by the engine.

A test file is a list of cases::

    - {principal: betty, action: debug, target: web1, expect: allow}
    - {principal: dan, action: restart, target: db1, from: 10.1.2.3,
       at: "2026-12-01T10:00:00Z", expect: allow}
    - {principal: betty, action: debug, target: web1, expect: {allow: true, approval: true, reason: true}}

Each case is decided by the very ``decide`` the gateway runs. A case naming
an unknown principal, action or field is a load error at ``file:line:column``.
Pure: the caller reads the files and prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any
from xml.etree import ElementTree as ET

import yaml

from gateway.errors import LoadError, Problem
from gateway.policy.compiled import Policy, Target
from gateway.policy.engine import Allow, Request, decide
from gateway.policy.marks import Mark, Marked, parse_yaml

FIELDS = ("principal", "action", "target", "labels", "from", "at", "expect")
EXPECT_KEYS = ("allow", "approval", "reason", "moderated", "grant")


@dataclass(frozen=True)
class Case:
    """One case, where it is written, and what it expects."""

    file: str
    line: int
    request: Request
    expect: dict[str, Any]

    @property
    def name(self) -> str:
        """``betty debug web1``."""
        target = self.request.target.name if self.request.target else ""
        return f"{self.request.principal} {self.request.action} {target}".strip()


@dataclass(frozen=True)
class Outcome:
    """A case and what the policy decided."""

    case: Case
    got: dict[str, Any]
    detail: str

    @property
    def passed(self) -> bool:
        """Every expected key has the expected value."""
        return all(self.got.get(k) == v for k, v in self.case.expect.items())

    def line(self) -> str:
        """``file:line: betty debug db1: expected allow, got deny (no grant covers it)``."""
        wanted = ", ".join(f"{k}={v}" for k, v in self.case.expect.items())
        got = ", ".join(f"{k}={self.got.get(k)}" for k in self.case.expect)
        where = f"{self.case.file}:{self.case.line}"
        return f"{where}: {self.case.name}: expected {wanted}, got {got} ({self.detail})"


def load_cases(name: str, text: str, policy: Policy, principals: frozenset[str]) -> list[Case]:
    """The cases of one file; LoadError with ``file:line:column`` for anything wrong."""
    marked = _quick(text) or parse_yaml(text, name)
    if marked.problems:
        raise LoadError(marked.problems)
    if marked.data is None:
        return []
    if not isinstance(marked.data, list):
        raise LoadError([Problem(name, 1, 1, "a test file is a list of cases")])
    problems: list[Problem] = []
    cases = [_case(name, marked, k, item, policy, principals, problems) for k, item in enumerate(marked.data)]
    if problems:
        raise LoadError(problems)
    return [c for c in cases if c is not None]


def _quick(text: str) -> Marked | None:
    """The cases with the marks they need, by libyaml alone; None where ``parse_yaml``'s checks must run.

    A file without anchors (hence without aliases) cannot expand: ten thousand
    cases load in a fraction of a second this way. Anything unusual (an
    anchor, a tag, not a list of mappings) takes the careful path.
    """
    if "&" in text or "!" in text:
        return None
    try:
        loader = yaml.CSafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except (yaml.YAMLError, AttributeError):
        return None
    if not isinstance(node, yaml.SequenceNode) or not isinstance(data, list):
        return None
    marked = Marked(data)
    for k, item in enumerate(node.value):
        marked.values[(k,)] = Mark(item.start_mark.line + 1, item.start_mark.column + 1)
        if not isinstance(item, yaml.MappingNode):
            return None
        for key, value in item.value:
            marked.values[(k, key.value)] = Mark(value.start_mark.line + 1, value.start_mark.column + 1)
    return marked


def _case(
    name: str,
    marked: Marked,
    k: int,
    item: object,
    policy: Policy,
    principals: frozenset[str],
    problems: list[Problem],
) -> Case | None:
    def bad(path: tuple[str | int, ...], message: str) -> None:
        mark = marked.locate((k, *path))
        problems.append(Problem(name, mark.line, mark.column, f"case {k + 1}: {message}"))

    if not isinstance(item, dict):
        bad((), "a case is a mapping: {principal, action, target, expect}")
        return None
    count = len(problems)
    for key in item:
        if key not in FIELDS:
            bad((key,), f"unknown field {str(key)[:40]!r} (expected one of: {', '.join(FIELDS)})")
    for key in ("principal", "action", "expect"):
        if key not in item:
            bad((), f"missing {key}")
    principal, action = str(item.get("principal", "")), str(item.get("action", ""))
    known = principal in principals or any(principal in g.principals for g in policy.grants)
    if "principal" in item and not known:
        bad(("principal",), f"unknown principal {principal[:40]!r}")
    if "action" in item and action not in policy.actions:
        names = ", ".join(sorted(policy.actions))
        bad(("action",), f"unknown action {action[:40]!r} (expected one of: {names})")
    expect = _expect(item.get("expect"), lambda m: bad(("expect",), m))
    now = _time(item.get("at"), lambda m: bad(("at",), m))
    source = _source(item.get("from"), lambda m: bad(("from",), m))
    labels = item.get("labels") or {}
    if not (isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())):
        bad(("labels",), "labels are a mapping of names to text")
    if len(problems) > count or expect is None:
        return None
    target = item.get("target")
    wanted = Target(str(target), {str(a): str(b) for a, b in labels.items()}) if target is not None else None
    request = Request(principal, action, wanted, source=source, now=now)
    return Case(name, marked.locate((k,)).line, request, expect)


def _expect(value: object, bad: Any) -> dict[str, Any] | None:
    if value in ("allow", "deny"):
        return {"allow": value == "allow"}
    if isinstance(value, dict):
        unknown = [str(key) for key in value if key not in EXPECT_KEYS]
        if unknown:
            bad(f"unknown expectation {unknown[0][:40]!r} (expected: {', '.join(EXPECT_KEYS)})")
            return None
        return {str(key): v for key, v in value.items()}
    bad("expect: allow, deny, or {allow: true, approval: true, reason: true, moderated: true}")
    return None


def _source(value: object, bad: Any) -> str | None:
    if value is None:
        return None
    try:
        ip_address(str(value))
    except ValueError:
        bad(f"not an IP address: {str(value)[:40]!r}")
        return None
    return str(value)


def _time(value: object, bad: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        bad(f"not a time: {str(value)[:40]!r} (expected 2026-12-01T10:00:00Z)")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run(policy: Policy, cases: list[Case]) -> list[Outcome]:
    """Decide every case."""
    out = []
    for case in cases:
        decision = decide(policy, case.request)
        if isinstance(decision, Allow):
            cond = decision.conditions
            got = {
                "allow": True,
                "approval": bool(cond and cond.approval),
                "reason": bool(cond and (cond.reason_required or cond.reason_pattern)),
                "moderated": bool(cond and cond.moderated),
                "grant": decision.grant,
            }
            detail = f"granted by {decision.grant}"
        else:
            got = {"allow": False, "approval": False, "reason": False, "moderated": False, "grant": None}
            detail = decision.reason
        out.append(Outcome(case, got, detail))
    return out


def junit(outcomes: list[Outcome]) -> bytes:
    """JUnit XML: one testcase per case, with ``file`` and ``line``, and a failure where it failed."""
    failures = sum(not o.passed for o in outcomes)
    suite = ET.Element("testsuite", name="gateway policy test", tests=str(len(outcomes)))
    suite.set("failures", str(failures))
    for outcome in outcomes:
        case = outcome.case
        element = ET.SubElement(suite, "testcase", classname=case.file, name=f"{case.line}: {case.name}")
        element.set("file", case.file)
        element.set("line", str(case.line))
        if not outcome.passed:
            ET.SubElement(element, "failure", message=outcome.line())
    written: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return written
