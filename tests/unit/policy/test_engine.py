"""The decision core as a table: deny by default, allow only what a grant covers."""

from __future__ import annotations

import pytest

from gateway.policy import Allow, Deny, DenyCode, Request, Target, decide
from gateway.policy.compiled import CompiledGrant, Policy, TargetMatcher
from gateway.policy.models import HostAction, ShellAction

ACTIONS = {
    "debug": ShellAction(type="shell", allow_args=True),
    "console": ShellAction(type="shell"),
    "memory": HostAction(type="host", command=("free", "-m")),
}


def _grant(principals: set[str], actions: set[str], targets: tuple[str, ...], where: str) -> CompiledGrant:
    return CompiledGrant(
        frozenset(principals),
        frozenset(actions),
        tuple(TargetMatcher.glob(t) for t in targets),
        where,
    )


POLICY = Policy.build(
    ACTIONS,
    (
        _grant({"betty"}, {"debug", "console"}, ("web*",), "p.yaml:1"),
        _grant({"betty", "dan"}, {"memory"}, (), "p.yaml:2"),
        _grant({"dan"}, {"debug"}, ("web1", "db1"), "p.yaml:3"),
    ),
    "digest",
)

ALLOW, DENY = "allow", "deny"


@pytest.mark.parametrize(
    ("principal", "action", "target", "args", "expected"),
    [
        ("betty", "debug", "web1", (), ("allow", "p.yaml:1")),
        ("betty", "debug", "web-anything", ("ps", "aux"), ("allow", "p.yaml:1")),
        ("betty", "debug", "db1", (), ("deny", DenyCode.NOT_GRANTED)),
        ("betty", "debug", "xweb1", (), ("deny", DenyCode.NOT_GRANTED)),
        ("betty", "console", "web1", (), ("allow", "p.yaml:1")),
        ("betty", "console", "web1", ("id",), ("deny", DenyCode.NO_ARGS)),
        ("betty", "debug", None, (), ("deny", DenyCode.NEEDS_TARGET)),
        ("betty", "memory", None, (), ("allow", "p.yaml:2")),
        ("dan", "memory", None, (), ("allow", "p.yaml:2")),
        ("eve", "memory", None, (), ("deny", DenyCode.NOT_GRANTED)),
        ("betty", "memory", "web1", (), ("deny", DenyCode.TAKES_NO_TARGET)),
        ("dan", "debug", "db1", (), ("allow", "p.yaml:3")),
        ("dan", "debug", "db10", (), ("deny", DenyCode.NOT_GRANTED)),
        ("dan", "debug", "web2", (), ("deny", DenyCode.NOT_GRANTED)),
        ("dan", "console", "web1", (), ("deny", DenyCode.NOT_GRANTED)),
        ("betty", "nosuch", "web1", (), ("deny", DenyCode.UNKNOWN_ACTION)),
        ("", "debug", "web1", (), ("deny", DenyCode.NOT_GRANTED)),
        ("betty", "debug", "WEB1", (), ("deny", DenyCode.NOT_GRANTED)),
        (
            "betty",
            "debug",
            "web1/../db1",
            (),
            ("allow", "p.yaml:1"),
        ),  # names are validated before Docker
    ],
)
def test_decision_table(
    principal: str,
    action: str,
    target: str | None,
    args: tuple[str, ...],
    expected: tuple[str, object],
) -> None:
    decision = decide(POLICY, Request(principal, action, Target(target) if target else None, args))
    kind, detail = expected
    if kind == ALLOW:
        assert isinstance(decision, Allow)
        assert decision.grant == detail
    else:
        assert isinstance(decision, Deny)
        assert decision.code == detail


def test_empty_policy_denies_everything() -> None:
    empty = Policy.build({}, (), "d")
    assert isinstance(decide(empty, Request("betty", "debug", Target("web1"))), Deny)


def test_many_grants_are_indexed() -> None:
    grants = tuple(_grant({f"p{i}"}, {"debug"}, (f"c{i}",), f"f:{i}") for i in range(2000))
    policy = Policy.build(ACTIONS, grants, "d")
    decision = decide(policy, Request("p1999", "debug", Target("c1999")))
    assert isinstance(decision, Allow)
    assert decision.grant == "f:1999"
    assert isinstance(decide(policy, Request("p1999", "debug", Target("c1"))), Deny)
