"""This process as a member of a fleet: what the rest of the gateway asks of the fleet.

Every worker process holds its own ``Member`` (its pool, its listener, its
slot connection): approvals, slots and waiting moderations are asked for
where the session runs. The leader (the only process, or worker 1 under a
supervisor) also heartbeats and pushes the session index. The supervisor
itself never connects: it forks, and a forked connection would be shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
from psycopg import AsyncConnection

from gateway import metrics
from gateway.evidence import query
from gateway.fleet import heartbeat, waiting
from gateway.fleet import index as fleet_index
from gateway.fleet.approvals import Audit, FleetApprovals
from gateway.fleet.config import FleetConfig, checked_config
from gateway.fleet.down import FleetDown, with_timeout
from gateway.fleet.index import Pusher
from gateway.fleet.link import Link
from gateway.fleet.slots import Slot, Slots
from gateway.moderation import Moderated
from gateway.settings import Settings
from gateway.tasks import Tasks


@dataclass
class Member:
    """The fleet, as one process sees it."""

    settings: Settings
    host: str
    config: FleetConfig
    link: Link
    approvals: FleetApprovals
    slots: Slots
    #: (policy digest, sessions open) for the heartbeat
    running: Callable[[], tuple[str, int]] = lambda: ("", 0)
    pusher: Pusher | None = None
    started: float = field(default_factory=heartbeat.now)
    _tasks: Tasks = field(default_factory=lambda: Tasks("fleet"))

    @classmethod
    def create(cls, settings: Settings, host_key: asyncssh.SSHKey, audit: Audit) -> Member | None:
        """The member for *settings* (None without ``--fleet``); LoadError or ConfigError if misconfigured."""
        if settings.fleet is None:
            return None
        host = settings.host_name or ""
        config = checked_config(settings, host_key)
        link = Link(settings.fleet)
        approvals = FleetApprovals(link, host, host_key, config, audit)
        return cls(settings, host, config, link, approvals, Slots(with_timeout(settings.fleet)))

    @property
    def state(self) -> str:
        """``up`` or ``down``."""
        return "up" if self.link.up else "down"

    async def start(self, *, leader: bool, on_change: Callable[[str], None] | None = None) -> None:
        """Connect (a database that does not answer yet is not fatal: the member starts down)."""
        if on_change is not None:
            self.link.on_up(lambda: on_change("up"))
            self.link.on_down(lambda: on_change("down"))
        if leader:
            self.pusher = Pusher(self.link, self.host, self.settings.state)
            self.link.on_up(self.pusher.wake.set)
            self._tasks.spawn(self.pusher.run(), "index")
            self._tasks.spawn(self._beat(), "heartbeat")
        await self.link.start()

    async def close(self) -> None:
        """Push what is left (briefly), then close every connection."""
        await self._tasks.cancel_all()
        if self.pusher is not None:
            with contextlib.suppress(FleetDown, TimeoutError):
                await asyncio.wait_for(self.pusher.push(), 3.0)
            self.pusher.close()
        await self.slots.close()
        await self.link.close()

    # ------------------------------------------------------------------ limits

    async def take(self, principal: str) -> Slot | None:
        """A fleet slot for a session of *principal*: Full when the fleet has none; None when the
        database does not answer (the host's own limits alone hold then)."""
        if not self.link.up:  # do not wait on a database that did not answer the last check
            return None
        limits = self.config.get().fleet
        per = limits.max_sessions_per_principal or self.settings.max_sessions_per_principal
        try:
            return await self.slots.take(principal, per, limits.max_sessions)
        except FleetDown:
            return None

    async def give(self, slot: Slot | None) -> None:
        """Give a slot back."""
        if slot is not None:
            await self.slots.give(slot)

    # ------------------------------------------------------------------ moderation

    async def publish(self, moderated: Moderated) -> None:
        """A moderated session waits here: every host's approve@ lists it (FleetDown to the caller)."""
        await waiting.publish(self.link, self.host, moderated)

    async def withdraw(self, moderated: Moderated) -> None:
        """It waits no longer (FleetDown to the caller)."""
        await waiting.withdraw(self.link, self.host, moderated.key)

    async def moderations(self, principal: str, *, as_json: bool) -> list[str]:
        """Lines for the moderated sessions *principal* may join on other hosts (FleetDown to the caller)."""
        rows = await waiting.for_moderator(self.link, principal, self.host)
        return [waiting.json_line(r) if as_json else waiting.line(r) for r in rows]

    # ------------------------------------------------------------------ the session index

    async def list_sessions(self, filters: query.Filters, *, as_json: bool) -> bytes:
        """``sessions list`` over every host's sessions, with their hosts (FleetDown to the caller)."""
        if as_json:
            return query.json_lines(await fleet_index.list_rows(self.link, filters)).encode()
        return (await fleet_index.list_table(self.link, filters)).encode()

    async def show_elsewhere(self, session: str) -> bytes | None:
        """What the fleet knows of a session another host ran; None when this host has it (or nobody)."""
        rows = await fleet_index.find(self.link, session)
        if not rows or any(r["host"] == self.host for r in rows):
            return None
        return fleet_index.elsewhere(rows).encode()

    # ------------------------------------------------------------------ heartbeat

    async def _beat(self) -> None:
        """A heartbeat every EVERY seconds, and at once when the policy in force changes."""
        commit: dict[str, str | None] = {}
        sent: tuple[str, float] = ("", 0.0)
        while True:
            policy, sessions = self.running()
            if policy != sent[0] or heartbeat.now() - sent[1] >= heartbeat.EVERY:
                if policy not in commit:
                    commit[policy] = await asyncio.to_thread(git_commit, self.settings.policies)
                workers = max(self.settings.workers, 1)
                beat = heartbeat.Beat(
                    self.host, version(), policy, commit[policy], workers, sessions, self.started
                )

                async def send(
                    conn: AsyncConnection[Any], beat: heartbeat.Beat = beat
                ) -> list[dict[str, Any]]:
                    await heartbeat.beat(conn, beat)
                    return await heartbeat.hosts(conn)

                with contextlib.suppress(FleetDown):
                    metrics.FLEET_MISMATCH.set(heartbeat.mismatched(await self.link.run(send)))
                    sent = (policy, heartbeat.now())
            await asyncio.sleep(1.0)


def version() -> str:
    """This gateway's version, as installed."""
    try:
        return importlib.metadata.version("gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def git_commit(directory: Path) -> str | None:
    """The policy repository's commit, when *directory* is in a git work tree."""
    try:
        done = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
