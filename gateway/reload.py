"""Policy as code at run time: reload on SIGHUP and when a policy or key file changes.

The swap is atomic (one assignment on the event loop). A policy that fails to
load leaves the old one in force, and the audit log names the errors. Live
sessions keep the action they were granted.
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway import oplog
from gateway.errors import AuditUnavailable, LoadError
from gateway.policy.snapshot import fingerprint
from gateway.runtime import Runtime, load_snapshot

WATCH_INTERVAL = 1.0


def reload(runtime: Runtime, why: str) -> bool:
    """Load policies and keys again; swap them in only when they load cleanly."""
    settings = runtime.settings
    try:
        keys, policy = load_snapshot(settings)
    except LoadError as exc:
        with contextlib.suppress(AuditUnavailable):
            errors = [str(p) for p in exc.problems]
            oplog.log().warning("reload failed", why=why, errors=errors)
            runtime.audit.emit("policy.reload_failed", why=why, policy=runtime.policy.digest, errors=errors)
        return False
    previous = runtime.policy.digest
    oplog.log().info("reloaded", why=why, policy=policy.digest[:12])
    runtime.keys, runtime.policy = keys, policy
    runtime.save_snapshot()
    with contextlib.suppress(AuditUnavailable):
        runtime.audit.emit("policy.reload", why=why, policy=policy.digest, previous=previous)
    return True


async def watch(runtime: Runtime, interval: float = WATCH_INTERVAL) -> None:
    """Poll the policy and key directories; reload when a file changes."""
    settings = runtime.settings
    seen = fingerprint(settings.policies, settings.keys)
    while True:
        await asyncio.sleep(interval)
        now = fingerprint(settings.policies, settings.keys)
        if now != seen:
            seen = now
            reload(runtime, "file change")
