"""Access requests in the fleet's database: filed on one host, approved on any, counted only when checked.

A decision (approve or deny) is a row signed with the host key of the gateway
that authenticated the approver. The gateway that runs the session reads the
rows and counts one only when its signature verifies against that host's key
in ``policies/fleet.yaml`` and this host's own policy lets that principal
approve (the rules it holds in memory since it filed the request, never the
row's copy). Anything else is not counted and is audited
(``request.untrusted``), once. The database is a mailbox, never a judge.

Exactly one decision wins a race: approve and deny lock the request's row
(``SELECT ... FOR UPDATE``) and change it only while it is pending, with the
NOTIFY in the same transaction. A waiter is woken by that notification, or
by a re-read after the listener reconnects, and at worst every
``REREAD`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import asyncssh
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from gateway.approvals import APPROVED, DENIED, EXPIRED, PENDING, Request, decidable
from gateway.events import Event
from gateway.fleet.config import FleetConfig
from gateway.fleet.link import Link, notify
from gateway.policy.compiled import Conditions

REREAD = 2.0
APPROVE, DENY = "approve", "deny"
#: what a host's audit callback is given: the event and its fields
Audit = Callable[[Event, dict[str, Any]], None]


def signed_text(
    request: Request, principal: str, verdict: str, why: str | None, host: str, at: float
) -> bytes:
    """The bytes a decision's signature covers: the request as its host filed it, who, what, where, when."""
    fields = ["gateway-fleet-decision-v1", request.id, request.host or "", request.requester, request.action,
              request.target, principal, verdict, why or "", host, repr(float(at))]  # fmt: skip
    return "\n".join(fields).encode()


class FleetApprovals:
    """``Approvals`` on PostgreSQL, for the host *host* signing with *key*."""

    def __init__(
        self, link: Link, host: str, key: asyncssh.SSHKey, config: FleetConfig, audit: Audit
    ) -> None:
        self.link, self.host, self.key, self.config, self.audit = link, host, key, config, audit
        self._wake: dict[str, asyncio.Event] = {}
        #: decisions already audited as untrusted or counted, by (request, principal, signature)
        self._seen: set[tuple[str, str, str]] = set()
        link.on_notify(self._notified)

    def _notified(self, payload: str) -> None:
        kind, _, request_id = payload.partition(":")
        if payload == "":
            for event in self._wake.values():
                event.set()
        elif kind == "request" and request_id in self._wake:
            self._wake[request_id].set()

    # ------------------------------------------------------------------ the requester's host

    async def usable(self, principal: str, action: str, target: str, cond: Conditions) -> Request | None:
        now = time.time()
        rows = await self._rows(
            "SELECT * FROM fleet_requests WHERE host = %s AND requester = %s AND action = %s AND target = %s"
            " AND state = 'approved' AND decided > %s ORDER BY decided DESC LIMIT 5",
            (self.host, principal, action, target, now - cond.window),
        )
        for row in rows:
            request = _request(row, cond)
            await self.refresh(request)
            if request.usable(now):
                return request
        return None

    async def pending(self, principal: str, action: str, target: str, cond: Conditions) -> Request | None:
        rows = await self._rows(
            "SELECT * FROM fleet_requests WHERE host = %s AND requester = %s AND action = %s AND target = %s"
            " AND state = 'pending' ORDER BY filed DESC LIMIT 1",
            (self.host, principal, action, target),
        )
        if not rows:
            return None
        request = _request(rows[0], cond)
        await self.refresh(request)
        return request

    async def file(
        self, principal: str, action: str, target: str, reason: str | None, cond: Conditions
    ) -> Request:
        rules = [[n.label, sorted(n.approvers), n.needed] for n in cond.approval]
        request = Request("", principal, action, target, reason, rules, cond.window, host=self.host)

        async def insert(conn: AsyncConnection[Any]) -> None:
            async with conn.transaction():
                while True:
                    request.id = f"R-{secrets.token_hex(3).upper()}"
                    cur = await conn.execute(
                        "INSERT INTO fleet_requests (id, host, requester, action, target, reason, rules,"
                        " window_seconds, filed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (id) DO NOTHING",
                        (request.id, self.host, principal, action, target, reason, json.dumps(rules),
                         cond.window, request.filed),
                    )  # fmt: skip
                    if cur.rowcount == 1:
                        break
                await notify(conn, f"request:{request.id}")

        await self.link.run(insert)
        return request

    async def expire(self, request: Request) -> None:
        async def update(conn: AsyncConnection[Any]) -> None:
            await conn.execute(
                "UPDATE fleet_requests SET state = 'expired', decided = %s"
                " WHERE id = %s AND state = 'pending'",
                (time.time(), request.id),
            )

        with contextlib.suppress(Exception):
            await self.link.run(update)
        request.state = EXPIRED

    async def changed(self, request: Request, seconds: float) -> None:
        before = (request.state, tuple(request.approvers))
        event = self._wake.setdefault(request.id, asyncio.Event())
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(left, REREAD))
                event.clear()
                await self.refresh(request)
                if (request.state, tuple(request.approvers)) != before:
                    return
        finally:
            self._wake.pop(request.id, None)

    async def refresh(self, request: Request) -> None:
        """The request's state as this host judges it from the decision rows it can check."""
        rows = await self._rows("SELECT * FROM fleet_decisions WHERE request = %s ORDER BY at", (request.id,))
        approvals: list[list[Any]] = []
        for row in rows:
            problem = self._problem(request, row)
            mark = (request.id, str(row["principal"]), str(row["signature"]))
            fields = {"request": request.id, "by": row["principal"], "host": row["host"],
                      "verdict": row["verdict"],
                      "requester": request.requester}  # fmt: skip
            if problem is not None:
                if mark not in self._seen:
                    self._seen.add(mark)
                    self.audit(Event.REQUEST_UNTRUSTED, {**fields, "problem": problem})
                continue
            if mark not in self._seen:
                self._seen.add(mark)
                self.audit(Event.REQUEST_COUNTED, fields)
            if row["verdict"] == DENY:
                request.state, request.denied_by, request.why = DENIED, str(row["principal"]), row["why"]
                return
            approvals.append([str(row["principal"]), float(row["at"])])
        request.approvals = approvals
        if request.state == PENDING and request.met():
            request.state, request.met_at = APPROVED, max(at for _, at in approvals)

    def _problem(self, request: Request, row: dict[str, Any]) -> str | None:
        """Why a decision row cannot be counted here, or None."""
        problem = self._unsigned(request, row)
        if problem is None and not request.may_approve(str(row["principal"])):
            return f"{row['principal']} may not approve this request under this host's policy"
        return problem

    def _unsigned(self, request: Request, row: dict[str, Any]) -> str | None:
        """Why a decision row's signature does not hold, or None."""
        listed = self.config.get().host(str(row["host"]))
        if listed is None:
            return f"signed as host {row['host']!r}, which fleet.yaml does not list"
        if row["verdict"] not in (APPROVE, DENY):
            return f"an unknown verdict {row['verdict']!r}"
        text = signed_text(request, row["principal"], row["verdict"], row["why"], row["host"], row["at"])
        try:
            good = bool(listed.public_key().verify(text, bytes.fromhex(str(row["signature"]))))
        except Exception:  # whatever a hostile row holds, it is only "not signed"
            good = False
        return None if good else f"the signature is not host {row['host']!r}'s"

    # ------------------------------------------------------------------ the approver's host

    async def for_approver(self, principal: str) -> list[Request]:
        rows = await self._rows(
            "SELECT r.*, coalesce((SELECT json_agg(json_build_array(d.principal, d.at) ORDER BY d.at)"
            " FROM fleet_decisions d WHERE d.request = r.id AND d.verdict = 'approve'), '[]') AS given"
            " FROM fleet_requests r WHERE r.state = 'pending' ORDER BY r.filed LIMIT 1000",
            (),
        )
        requests = []
        for row in rows:
            request = _request(row, None)
            request.approvals = [[str(p), float(at)] for p, at in row["given"]]
            if request.may_approve(principal):
                requests.append(request)
        return requests

    async def approve(self, request_id: str, approver: str) -> Request:
        return await self._decide(request_id, approver, APPROVE, None)

    async def deny(self, request_id: str, approver: str, why: str) -> Request:
        return await self._decide(request_id, approver, DENY, why)

    async def _decide(self, request_id: str, approver: str, verdict: str, why: str | None) -> Request:
        request_id = request_id.upper()

        async def decide(conn: AsyncConnection[Any]) -> Request:
            async with conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute("SELECT * FROM fleet_requests WHERE id = %s FOR UPDATE", (request_id,))
                row = await cur.fetchone()
                request = decidable(_request(row, None) if row is not None else None, request_id, approver)
                await cur.execute(
                    "SELECT * FROM fleet_decisions WHERE request = %s ORDER BY at", (request_id,)
                )
                given = [r for r in await cur.fetchall() if r["verdict"] == APPROVE]
                request.approvals = [
                    [str(r["principal"]), float(r["at"])] for r in given if self._unsigned(request, r) is None
                ]
                if verdict == APPROVE and approver in request.approvers:
                    return request
                at = time.time()
                signature = self.key.sign(signed_text(request, approver, verdict, why, self.host, at),
                                          self.key.algorithm).hex()  # fmt: skip
                await cur.execute(
                    "INSERT INTO fleet_decisions VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (request, principal, verdict) DO NOTHING",
                    (request_id, approver, verdict, why, self.host, at, signature),
                )
                if verdict == DENY:
                    request.state, request.denied_by, request.why = DENIED, approver, why
                    await cur.execute(
                        "UPDATE fleet_requests SET state = 'denied', denied_by = %s, why = %s, decided = %s"
                        " WHERE id = %s AND state = 'pending'",
                        (approver, why, at, request_id),
                    )
                else:
                    request.approvals.append([approver, at])
                    if request.met():
                        request.state, request.met_at = APPROVED, at
                        await cur.execute(
                            "UPDATE fleet_requests SET state = 'approved', decided = %s"
                            " WHERE id = %s AND state = 'pending'",
                            (at, request_id),
                        )
                await notify(conn, f"request:{request_id}")
                return request

        return await self.link.run(decide)

    async def _rows(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        async def fetch(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query.encode(), params)
            return list(await cur.fetchall())

        return await self.link.run(fetch)


def _request(row: dict[str, Any], cond: Conditions | None) -> Request:
    """A Request from its row; with *cond*, the rules are this host's (the row's copy is not trusted)."""
    rules = (
        [[n.label, sorted(n.approvers), n.needed] for n in cond.approval]
        if cond is not None
        else row["rules"]
    )
    window = cond.window if cond is not None else int(row["window_seconds"])
    return Request(
        id=str(row["id"]), requester=str(row["requester"]), action=str(row["action"]),
        target=str(row["target"]),
        reason=row["reason"], rules=rules, window=window, filed=float(row["filed"]),
        state=PENDING if cond is not None else str(row["state"]), host=str(row["host"]),
        denied_by=None if cond is not None else row["denied_by"],
        why=None if cond is not None else row["why"],
    )  # fmt: skip
