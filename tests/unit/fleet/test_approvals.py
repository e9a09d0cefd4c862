"""The fleet's approval queue on a real PostgreSQL: one decision wins a race, and the host that runs the
session counts only rows it can check (its fleet.yaml's host keys, its own policy's rules)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import psycopg
import pytest

from gateway.approvals import APPROVED, DENIED, PENDING, ApprovalError
from gateway.events import Event
from gateway.fleet.approvals import FleetApprovals
from gateway.fleet.config import FleetConfig
from gateway.fleet.link import Link
from gateway.policy.compiled import Conditions, Need

TWO_TEAMS = Conditions(
    approval=(Need("security", frozenset({"alice"}), 1), Need("leads", frozenset({"frank"}), 1)), window=60
)
KEYS = {name: asyncssh.generate_private_key("ssh-ed25519") for name in ("a", "b")}


@pytest.fixture
async def hosts(dsn: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Hosts a and b on one database, each with its audit records kept in a list."""
    listed = [{"name": n, "key": k.export_public_key().decode().strip()} for n, k in KEYS.items()]
    (tmp_path / "fleet.yaml").write_text(json.dumps({"version": 1, "fleet": {"hosts": listed}}))
    config = FleetConfig(tmp_path / "fleet.yaml")
    found: dict[str, Any] = {}
    links = []
    for name, key in KEYS.items():
        records: list[tuple[Event, dict[str, Any]]] = []
        link = Link(dsn)
        await link.start()
        links.append(link)
        found[name] = FleetApprovals(link, name, key, config, lambda e, f, r=records: r.append((e, f)))
        found[f"{name}-records"] = records
    yield found
    for link in links:
        await link.close()


async def test_the_last_approval_and_a_denial_at_once_exactly_one_wins(hosts: dict[str, Any]) -> None:
    a, b = hosts["a"], hosts["b"]
    for _ in range(5):
        request = await a.file("betty", "brief", "", None, TWO_TEAMS)
        await b.approve(request.id, "alice")
        outcomes = await asyncio.gather(
            b.approve(request.id, "frank"), a.deny(request.id, "alice", "no"), return_exceptions=True
        )
        won = [o for o in outcomes if not isinstance(o, ApprovalError)]
        assert len(won) == 1, outcomes
        await a.refresh(request)
        assert request.state == (APPROVED if won[0].state == APPROVED else DENIED)


async def test_a_row_the_policy_here_does_not_allow_is_not_counted(hosts: dict[str, Any], dsn: str) -> None:
    a, b = hosts["a"], hosts["b"]
    request = await a.file("betty", "brief", "", None, TWO_TEAMS)
    # b's copy of the rules says "erin may approve" (a row changed by hand): b signs erin's approval
    with psycopg.connect(dsn, autocommit=True) as conn:
        rules = [["security", ["alice", "erin"], 1], ["leads", ["erin", "frank"], 1]]
        conn.execute("UPDATE fleet_requests SET rules = %s WHERE id = %s", (json.dumps(rules), request.id))
    await b.approve(request.id, "erin")
    await a.refresh(request)
    assert request.state == PENDING and request.approvers == []
    untrusted = [f for e, f in hosts["a-records"] if e == Event.REQUEST_UNTRUSTED]
    assert untrusted and "may not approve" in untrusted[0]["problem"]
    assert await a.usable("betty", "brief", "", TWO_TEAMS) is None  # "approved" in the row: not here
    again = await a.file("betty", "other", "", None, TWO_TEAMS)
    await b.approve(again.id, "alice")
    await b.approve(again.id, "frank")
    assert await a.usable("betty", "other", "", TWO_TEAMS) is not None
    assert [f["by"] for e, f in hosts["a-records"] if e == Event.REQUEST_COUNTED] == ["alice", "frank"]


async def test_the_requester_never_approves_and_a_decided_request_stays_decided(
    hosts: dict[str, Any],
) -> None:
    a, b = hosts["a"], hosts["b"]
    request = await a.file("alice", "brief", "", None, TWO_TEAMS)
    with pytest.raises(ApprovalError, match="your own request"):
        await b.approve(request.id, "alice")
    await b.deny(request.id, "frank", "not today")
    with pytest.raises(ApprovalError, match="already denied"):
        await b.approve(request.id, "frank")
    await a.refresh(request)
    assert (request.state, request.denied_by, request.why) == (DENIED, "frank", "not today")
    assert [r.id for r in await b.for_approver("frank")] == []


async def test_a_waiter_wakes_on_the_notification(hosts: dict[str, Any]) -> None:
    a, b = hosts["a"], hosts["b"]
    request = await a.file("betty", "brief", "", None, TWO_TEAMS)
    waiting = asyncio.get_running_loop().create_task(a.changed(request, 10))
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await b.approve(request.id, "alice")
    await asyncio.wait_for(waiting, 5)
    assert loop.time() - started < 1.0 and request.approvers == ["alice"]
