"""Access requests: filed by a requester, approved or denied by other principals, kept on disk.

A request names who asks, for which (action, target), with which reason, and
the rules of the grant (each ``needed`` different principals of a set). It is
met when the approvers so far can be assigned to the rules' slots, each
approver once (one approver in two groups counts once), never the requester.
Once met, the same principal's same (action, target) runs for ``window``
seconds without asking again. Requests are JSON files under
``STATE/requests/`` (written and renamed), so a restart keeps them, pending
ones pending, given approvals given. Waiters are woken through one
``asyncio.Event`` per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.policy.compiled import Conditions, Need
from gateway.safefile import write_replacing

ID_RE = re.compile(r"^R-[0-9A-F]{6}$")
#: how often a waiting session looks for a decision made through another worker
POLL = 0.2
PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"


class ApprovalError(Exception):
    """An approve or deny that cannot be done; the message is the client's line."""


@dataclass
class Request:
    """One access request."""

    id: str
    requester: str
    action: str
    target: str
    reason: str | None
    #: [label, [approvers...], needed] per rule
    rules: list[list[Any]]
    window: int
    filed: float = field(default_factory=time.time)
    state: str = PENDING
    #: [principal, unix time] in the order given
    approvals: list[list[Any]] = field(default_factory=list)
    met_at: float | None = None
    denied_by: str | None = None
    why: str | None = None
    #: the fleet host the request was filed on (None: this host, without a fleet)
    host: str | None = None

    @property
    def needs(self) -> list[Need]:
        """The rules as Needs."""
        return [Need(str(label), frozenset(names), int(needed)) for label, names, needed in self.rules]

    def describe(self) -> str:
        """``1 of security, 1 of ops-leads``."""
        return ", ".join(n.describe() for n in self.needs)

    @property
    def approvers(self) -> list[str]:
        """Who approved, in order."""
        return [str(p) for p, _ in self.approvals]

    def may_approve(self, principal: str) -> bool:
        """Anyone in some rule's set but the requester."""
        return principal != self.requester and any(principal in n.approvers for n in self.needs)

    def met(self) -> bool:
        """Whether the approvals so far fill every rule's slots, each approver used once."""
        slots = [n.approvers for n in self.needs for _ in range(n.needed)]
        owner: dict[int, str] = {}  # slot -> approver

        def place(who: str, seen: set[int]) -> bool:
            for k, allowed in enumerate(slots):
                if who in allowed and k not in seen:
                    seen.add(k)
                    if k not in owner or place(owner[k], seen):
                        owner[k] = who
                        return True
            return False

        for who in self.approvers:
            place(who, set())
        return len(owner) == len(slots)

    def usable(self, now: float) -> bool:
        """Approved, and the window since it was met is still open."""
        return self.state == APPROVED and self.met_at is not None and now < self.met_at + self.window


def _typed(fields: Any) -> Request:
    """A request from its file's JSON, every field of its type (TypeError or ValueError otherwise)."""
    request = Request(**fields) if isinstance(fields, dict) else None
    if request is None:
        raise TypeError("not an object")
    texts = (request.id, request.requester, request.action, request.target, request.state)
    numbers = (request.window, request.filed, *(at for _, at in request.approvals))
    if not all(isinstance(t, str) for t in texts) or not all(
        isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
    ):
        raise TypeError("a field of the wrong type")
    for optional in (request.reason, request.denied_by, request.why, request.host):
        if optional is not None and not isinstance(optional, str):
            raise TypeError("a field of the wrong type")
    if request.met_at is not None and not isinstance(request.met_at, int | float):
        raise TypeError("met_at")
    for label, names, needed in request.rules:
        if not (isinstance(label, str) and isinstance(names, list) and isinstance(needed, int)):
            raise TypeError("rules")
    return request


def decidable(request: Request | None, request_id: str, approver: str) -> Request:
    """*request*, if *approver* may decide it now; ApprovalError (the client's line) otherwise."""
    if request is None or (not request.may_approve(approver) and request.requester != approver):
        raise ApprovalError(f"no request {request_id} that you may approve")
    if request.requester == approver:
        raise ApprovalError(f"{request.id} is your own request: someone else must approve it")
    if request.state != PENDING:
        raise ApprovalError(f"{request.id} is already {request.state}")
    return request


class RequestBook:
    """Every request, on disk (``STATE/requests/R-ID.json``) and read through by every worker process.

    Each process keeps the requests it has read, refreshed from the files
    that changed (by size and mtime) before every query, and changes a
    request under ``flock`` on ``.lock``: an approval given through one worker
    is seen by the session waiting in another.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.requests: dict[str, Request] = {}
        self._seen: dict[str, tuple[int, int]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._refresh()

    def _refresh(self) -> None:
        """Read the request files that changed since this process last read them."""
        with contextlib.suppress(OSError):
            for path in self.directory.glob("R-*.json"):
                with contextlib.suppress(OSError, ValueError, TypeError):
                    stat = path.stat()
                    if self._seen.get(path.name) == (stat.st_mtime_ns, stat.st_size):
                        continue
                    request = _typed(json.loads(path.read_text()))
                    if not ID_RE.match(request.id):
                        continue
                    known = self.requests.get(request.id)
                    if known is None:
                        self.requests[request.id] = request
                    else:  # the same object: whoever holds it (a waiting session) sees the change
                        vars(known).update(vars(request))
                    self._seen[path.name] = (stat.st_mtime_ns, stat.st_size)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes, with the latest files read."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._refresh()
            yield
        finally:
            os.close(fd)

    def _save(self, request: Request) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{request.id}.json"
        write_replacing(path, json.dumps(asdict(request), sort_keys=True))
        with contextlib.suppress(OSError):
            stat = path.stat()
            self._seen[path.name] = (stat.st_mtime_ns, stat.st_size)
        self._event(request.id).set()

    def _event(self, request_id: str) -> asyncio.Event:
        event = self._changed.get(request_id)
        if event is None or event.is_set():
            event = self._changed[request_id] = asyncio.Event()
        return event

    def usable(self, principal: str, action: str, target: str) -> Request | None:
        """An approved request of this principal for this (action, target) still in its window."""
        self._refresh()
        now = time.time()
        found = [
            r
            for r in self.requests.values()
            if (r.requester, r.action, r.target) == (principal, action, target) and r.usable(now)
        ]
        return max(found, key=lambda r: r.met_at or 0, default=None)

    def pending(self, principal: str, action: str, target: str) -> Request | None:
        """The principal's open request for this (action, target), if any."""
        self._refresh()
        return next(
            (
                r
                for r in self.requests.values()
                if (r.requester, r.action, r.target) == (principal, action, target) and r.state == PENDING
            ),
            None,
        )

    def file(self, principal: str, action: str, target: str, reason: str | None, cond: Conditions) -> Request:
        """A new pending request."""
        with self._locked():
            request_id = f"R-{secrets.token_hex(3).upper()}"
            while request_id in self.requests:
                request_id = f"R-{secrets.token_hex(3).upper()}"
            rules = [[n.label, sorted(n.approvers), n.needed] for n in cond.approval]
            request = Request(request_id, principal, action, target, reason, rules, cond.window)
            self.requests[request_id] = request
            self._save(request)
        return request

    def _open(self, request_id: str, approver: str) -> Request:
        return decidable(self.requests.get(request_id.upper()), request_id, approver)

    def approve(self, request_id: str, approver: str) -> Request:
        """Count *approver*'s approval; the request, approved once every rule is met."""
        with self._locked():
            request = self._open(request_id, approver)
            if approver not in request.approvers:
                request.approvals.append([approver, time.time()])
            if request.met():
                request.state, request.met_at = APPROVED, time.time()
            self._save(request)
        return request

    def deny(self, request_id: str, approver: str, why: str) -> Request:
        """Deny the request; its waiter is told at once."""
        with self._locked():
            request = self._open(request_id, approver)
            request.state, request.denied_by, request.why = DENIED, approver, why
            self._save(request)
        return request

    def expire(self, request: Request) -> None:
        """The requester's wait ended without approval."""
        with self._locked():
            if request.state == PENDING:
                request.state = EXPIRED
                self._save(request)

    def for_approver(self, principal: str) -> list[Request]:
        """The pending requests *principal* may approve, oldest first."""
        self._refresh()
        pending = [r for r in self.requests.values() if r.state == PENDING and r.may_approve(principal)]
        return sorted(pending, key=lambda r: r.filed)

    async def changed(self, request: Request, seconds: float) -> None:
        """Until the request changes (here, or in another worker's file), or *seconds* pass (TimeoutError)."""
        before = json.dumps(asdict(request), sort_keys=True)
        deadline = asyncio.get_running_loop().time() + seconds
        event = self._event(request.id)
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, POLL))
                return
            self._refresh()
            if json.dumps(asdict(request), sort_keys=True) != before:
                return


class Approvals(Protocol):
    """Where requests are kept: this host's files (``LocalApprovals``) or the fleet's database.

    *cond* is the grant's conditions under this host's policy: a store that
    cannot be trusted (the fleet's) counts an approval only against it.
    """

    async def usable(self, principal: str, action: str, target: str, cond: Conditions) -> Request | None:
        """An approved request still in its window."""

    async def pending(self, principal: str, action: str, target: str, cond: Conditions) -> Request | None:
        """The open request for this (action, target)."""

    async def file(
        self, principal: str, action: str, target: str, reason: str | None, cond: Conditions
    ) -> Request:
        """A new pending request."""

    async def approve(self, request_id: str, approver: str) -> Request:
        """Count an approval (ApprovalError when it may not be given)."""

    async def deny(self, request_id: str, approver: str, why: str) -> Request:
        """Deny."""

    async def expire(self, request: Request) -> None:
        """The wait ended without approval."""

    async def for_approver(self, principal: str) -> list[Request]:
        """Pending requests *principal* may approve, oldest first."""

    async def changed(self, request: Request, seconds: float) -> None:
        """Until *request* changes (TimeoutError after *seconds*)."""


class LocalApprovals:
    """``Approvals`` on this host's ``RequestBook``."""

    def __init__(self, book: RequestBook) -> None:
        self.book = book

    async def usable(self, principal: str, action: str, target: str, cond: Conditions) -> Request | None:
        return self.book.usable(principal, action, target)

    async def pending(self, principal: str, action: str, target: str, cond: Conditions) -> Request | None:
        return self.book.pending(principal, action, target)

    async def file(
        self, principal: str, action: str, target: str, reason: str | None, cond: Conditions
    ) -> Request:
        return self.book.file(principal, action, target, reason, cond)

    async def approve(self, request_id: str, approver: str) -> Request:
        return self.book.approve(request_id, approver)

    async def deny(self, request_id: str, approver: str, why: str) -> Request:
        return self.book.deny(request_id, approver, why)

    async def expire(self, request: Request) -> None:
        self.book.expire(request)

    async def for_approver(self, principal: str) -> list[Request]:
        return self.book.for_approver(principal)

    async def changed(self, request: Request, seconds: float) -> None:
        await self.book.changed(request, seconds)
