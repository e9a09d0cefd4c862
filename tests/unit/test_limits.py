"""Per-source shares, growing penalties and the per-minute refusal summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import limits
from gateway.limits import Limits, Refusals, _Penalty
from gateway.settings import Settings


def test_each_source_has_its_own_share() -> None:
    lim = Limits(Settings(max_unauthenticated=5, max_unauthenticated_per_source=2))
    assert [lim.admit_connection("a") for _ in range(3)][-1] == "too many unauthenticated connections from a"
    assert lim.admit_connection("b") is None
    lim.authenticated("a")
    assert lim.admit_connection("a") is None


def test_a_few_failures_are_free_then_blocks_grow() -> None:
    penalty = _Penalty(at=0.0)
    penalty.add(limits.PENALTY_AUTHFAIL, 0.0)
    penalty.add(limits.PENALTY_AUTHFAIL, 0.0)
    penalty.add(limits.PENALTY_AUTHFAIL, 0.0)
    assert penalty.blocked_until == 0.0  # 15 s: not past the free allowance
    penalty.add(limits.PENALTY_AUTHFAIL, 0.0)
    first = penalty.blocked_until
    assert first == pytest.approx(20.0)
    for _ in range(4):
        penalty.add(limits.PENALTY_AUTHFAIL, 100.0)
    assert penalty.blocked_until - 100.0 == pytest.approx(40.0)  # the second block lasts twice as long
    for _ in range(40):
        penalty.add(limits.PENALTY_STALLED, 1000.0)
    assert penalty.blocked_until - 1000.0 <= limits.PENALTY_MAX


def test_penalties_drain_with_time() -> None:
    penalty = _Penalty(at=0.0)
    penalty.add(limits.PENALTY_STALLED, 0.0)
    penalty.add(limits.PENALTY_STALLED, 60.0)  # the first has drained away
    assert penalty.blocked_until == 0.0


def test_refusals_are_summarised_per_source_and_minute() -> None:
    refusals = Refusals()
    assert refusals.note("a", "r") is True
    assert [refusals.note("a", "r") for _ in range(5)] == [False] * 5
    assert refusals.note("b", "r") is True
    assert refusals.due() == []  # the minute is not over
    assert refusals.due(everything=True) == [("a", "r", 5)]
    assert refusals.note("a", "r") is True  # a new minute starts with a record again


def test_a_dead_workers_share_is_given_back(tmp_path: Path) -> None:
    """Each count has an owner: what worker 2 held comes off the totals when it is gone; worker 1's stays."""
    from gateway.shared import SharedTable  # noqa: PLC0415

    table = SharedTable(slots=256)
    one = Limits(Settings(state=tmp_path, workers=2, worker=1, max_sessions=3), table)
    two = Limits(Settings(state=tmp_path, workers=2, worker=2, max_sessions=3), table)
    assert one.admit_session("betty") is None
    assert two.admit_session("betty") is None and two.admit_session("dan") is None
    assert one.admit_session("erin") is not None  # at the limit of 3
    assert two.admit_connection("10.0.0.1") is None
    released = dict(one.release_owner(2))
    assert released == {"sessions": 2.0, "principal:betty": 1.0, "principal:dan": 1.0, "unauth": 1.0,
                        "unauth-from:10.0.0.1": 1.0}  # fmt: skip
    assert (one.sessions, one.unauthenticated) == (1, 0)
    assert one.admit_session("erin") is None  # room again
    assert one.release_owner(2) == []  # given back once
