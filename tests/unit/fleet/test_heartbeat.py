"""Drift: the policy that differs from the majority's, and hosts not seen lately."""

from __future__ import annotations

from typing import Any

from gateway.fleet.heartbeat import STALE, mark, mismatched, table


def _host(name: str, policy: str, age: float = 1.0) -> dict[str, Any]:
    return {"name": name, "version": "0.1.0", "policy": policy, "commit": None, "workers": 2,
            "sessions_open": 0, "age": age}  # fmt: skip


def test_the_minority_policy_and_a_silent_host_are_marked() -> None:
    rows = mark([_host("a", "p1"), _host("b", "p1"), _host("c", "p2"), _host("d", "p1", age=STALE + 5)])
    marks = {r["name"]: r["marks"] for r in rows}
    assert marks["a"] == [] and marks["b"] == [] and marks["c"] == ["policy differs"]
    assert marks["d"] == [f"not seen for {int(STALE + 5)}s"]
    assert mismatched(rows) == 1
    assert "policy differs" in table(rows) and table(rows).splitlines()[0].startswith("host")


def test_hosts_long_gone_do_not_make_the_majority() -> None:
    rows = mark([_host("a", "new"), _host("b", "old", age=STALE * 10), _host("c", "old", age=STALE * 10)])
    assert {r["name"]: "policy differs" in r["marks"] for r in rows} == {"a": False, "b": True, "c": True}
