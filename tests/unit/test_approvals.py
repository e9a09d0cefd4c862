"""Access requests on their own: who may approve, when the rules are met, what survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.approvals import APPROVED, DENIED, ApprovalError, RequestBook
from gateway.policy.compiled import Conditions, Need

TWO_TEAMS = Conditions(
    approval=(Need("security", frozenset({"alice", "erin"}), 1), Need("leads", frozenset({"frank"}), 1))
)


def test_every_rule_must_be_met_and_one_approver_counts_once(tmp_path: Path) -> None:
    book = RequestBook(tmp_path)
    shared = Conditions(approval=(Need("a", frozenset({"x", "y"}), 1), Need("b", frozenset({"x"}), 1)))
    request = book.file("betty", "debug", "web1", "INC-1", shared)
    assert book.approve(request.id, "x").state != APPROVED  # x is in both sets: one slot only
    assert book.approve(request.id, "y").state == APPROVED


def test_never_the_requester_nor_a_stranger(tmp_path: Path) -> None:
    book = RequestBook(tmp_path)
    request = book.file("betty", "debug", "web1", None, TWO_TEAMS)
    with pytest.raises(ApprovalError, match="your own request"):
        book.approve(request.id, "betty")
    with pytest.raises(ApprovalError, match="that you may approve"):
        book.approve(request.id, "mallory")
    assert book.approve(request.id, "alice").state != APPROVED
    assert book.approve(request.id, "frank").state == APPROVED
    assert book.usable("betty", "debug", "web1") is not None
    assert book.usable("betty", "debug", "web2") is None


def test_requests_survive_a_restart(tmp_path: Path) -> None:
    book = RequestBook(tmp_path)
    pending = book.file("betty", "debug", "web1", "INC-2", TWO_TEAMS)
    book.approve(pending.id, "erin")
    denied = book.file("betty", "debug", "web2", None, TWO_TEAMS)
    book.deny(denied.id, "frank", "no")
    again = RequestBook(tmp_path)
    assert again.requests[pending.id].approvers == ["erin"]
    assert again.requests[denied.id].state == DENIED
    assert [r.id for r in again.for_approver("frank")] == [pending.id]


def test_a_waiter_is_woken_by_a_decision(tmp_path: Path) -> None:
    async def scenario() -> str:
        book = RequestBook(tmp_path)
        request = book.file("betty", "debug", "web1", None, TWO_TEAMS)
        waiter = asyncio.ensure_future(book.changed(request, 5))
        await asyncio.sleep(0)
        book.deny(request.id, "alice", "not now")
        await waiter
        return request.state

    assert asyncio.run(scenario()) == DENIED


@pytest.mark.parametrize(
    "body",
    [
        '{"id": "R-ABCDEF", "requester": 1, "action": "a", "target": "", "reason": null, "rules": [], "window": 1}',
        '{"id": "R-ABCDEF", "requester": "b", "action": "a", "target": "", "reason": null, "rules": "x", "window": 1}',
        '{"id": "R-ABCDEF", "requester": "b", "action": "a", "target": "", "reason": null, "rules": [], "window": "1"}',
        '{"id": "R-ABCDEF", "requester": "b", "action": "a", "target": "", "reason": null, "rules": [],'
        ' "window": 1, "approvals": [5]}',
        "[]",
        '"R-ABCDEF"',
    ],
)
def test_a_request_file_of_the_wrong_json_types_is_ignored(tmp_path: Path, body: str) -> None:
    (tmp_path / "R-ABCDEF.json").write_text(body)
    book = RequestBook(tmp_path)
    assert book.for_approver("alice") == [] and "R-ABCDEF" not in book.requests
