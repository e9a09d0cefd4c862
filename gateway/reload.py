"""Policy as code at run time: reload on SIGHUP and when a policy or key file changes.

The swap is atomic (one assignment on the event loop). Loading runs on a
worker thread, so a slow or hostile file never blocks the loop. A policy that
fails to load, for any reason, leaves the old one in force, and the audit log
names the errors. Live sessions keep the action they were granted. Neither
the watcher nor SIGHUP ever dies of an exception.
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway import oplog
from gateway.errors import AuditUnavailable, LoadError
from gateway.policy_files import Fingerprint, fingerprint
from gateway.runtime import Runtime, load_snapshot

WATCH_INTERVAL = 1.0


def _failed(runtime: Runtime, why: str, errors: list[str]) -> bool:
    oplog.log().warning("reload failed", why=why, errors=errors)
    with contextlib.suppress(AuditUnavailable):
        runtime.audit.emit("policy.reload_failed", why=why, policy=runtime.policy.digest, errors=errors)
    return False


async def reload(runtime: Runtime, why: str) -> bool:
    """Load policies and keys again; swap them in only when they load cleanly."""
    try:
        keys, policy = await asyncio.to_thread(load_snapshot, runtime.settings)
    except LoadError as exc:
        return _failed(runtime, why, [str(p) for p in exc.problems])
    except Exception as exc:  # a loader bug must not take the watcher or SIGHUP down
        return _failed(runtime, why, [f"unexpected {type(exc).__name__}: {exc}"])
    previous = runtime.policy.digest
    oplog.log().info("reloaded", why=why, policy=policy.digest[:12])
    runtime.keys, runtime.policy = keys, policy
    with contextlib.suppress(AuditUnavailable):
        runtime.audit.emit("policy.reload", why=why, policy=policy.digest, previous=previous)
    return True


def _fingerprint(runtime: Runtime) -> Fingerprint | None:
    try:
        return fingerprint(runtime.settings.policies, runtime.settings.keys)
    except OSError:
        return None  # a directory swapped out mid-scan: look again next time


async def watch(runtime: Runtime, interval: float = WATCH_INTERVAL) -> None:
    """Poll the policy and key directories; reload when a file changes."""
    seen: Fingerprint | None = runtime.loaded_from
    while True:
        await asyncio.sleep(interval)
        now = _fingerprint(runtime)
        if now is not None and now != seen:
            seen = now
            await reload(runtime, "file change")
