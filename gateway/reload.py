"""Policy as code at run time: reload on SIGHUP and when a policy or key file changes.

The swap is atomic (one assignment on the event loop). Loading runs on a
daemon thread with a time limit, so a slow or hostile file never blocks the
loop, and a stop never waits for it. A policy that fails to load, for any
reason, leaves the old one in force, and the audit log names the errors,
with one exception: a key removed from ``keys/`` is revoked anyway (only
removals apply; nothing is added). Live sessions keep the action they were
granted. Neither the watcher nor SIGHUP ever dies of an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from gateway import oplog
from gateway.errors import AuditUnavailable, LoadError
from gateway.events import Event
from gateway.keys import KeyRing, read_keys
from gateway.policy.diff import diff
from gateway.policy_files import Fingerprint, fingerprint
from gateway.runtime import Runtime, load_snapshot

WATCH_INTERVAL = 1.0
#: the most a reload may take before it counts as failed
RELOAD_SECONDS = 5.0
T = TypeVar("T")


async def off_loop(work: Callable[[], T], seconds: float) -> T:
    """*work* on a daemon thread, at most *seconds*; TimeoutError after (the thread is abandoned)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(result)
        else:
            done.set_exception(error)

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="reload", daemon=True).start()
    return await asyncio.wait_for(done, seconds)


def _failed(runtime: Runtime, why: str, errors: list[str], removed: list[str]) -> bool:
    oplog.log().warning("reload failed", why=why, errors=errors, removed_keys=removed)
    with contextlib.suppress(AuditUnavailable):
        runtime.audit.emit(
            Event.POLICY_RELOAD_FAILED,
            why=why,
            policy=runtime.policy.digest,
            errors=errors,
            removed_keys=removed,
        )
    return False


async def _revoke(runtime: Runtime) -> list[str]:
    """Drop the keys no longer in ``keys/`` from the ring in force; what was dropped."""
    try:
        ring, _ = await off_loop(lambda: read_keys(runtime.settings.keys), RELOAD_SECONDS)
    except Exception:
        return []
    return _apply_removals(runtime, ring)


def _apply_removals(runtime: Runtime, ring: KeyRing) -> list[str]:
    gone = set(runtime.keys.by_fingerprint) - set(ring.by_fingerprint)
    removed = runtime.keys.described(gone)
    if gone:
        runtime.keys = runtime.keys.without(gone)
    return removed


async def reload(runtime: Runtime, why: str) -> bool:
    """Load policies and keys again; swap them in only when they load cleanly (removed keys: always)."""
    try:
        keys, policy = await off_loop(lambda: load_snapshot(runtime.settings), RELOAD_SECONDS)
    except LoadError as exc:
        return _failed(runtime, why, [str(p) for p in exc.problems], await _revoke(runtime))
    except TimeoutError:
        return _failed(runtime, why, [f"the reload took longer than {RELOAD_SECONDS:g} s"], [])
    except Exception as exc:  # a loader bug must not take the watcher or SIGHUP down
        return _failed(runtime, why, [f"unexpected {type(exc).__name__}: {exc}"], await _revoke(runtime))
    previous = runtime.policy.digest
    oplog.log().info("reloaded", why=why, policy=policy.digest[:12])
    removed = runtime.keys.described(set(runtime.keys.by_fingerprint) - set(keys.by_fingerprint))
    added = keys.described(set(keys.by_fingerprint) - set(runtime.keys.by_fingerprint))
    changes = diff(runtime.policy, policy).record()
    runtime.keys, runtime.policy = keys, policy
    with contextlib.suppress(AuditUnavailable):
        runtime.audit.emit(
            Event.POLICY_RELOAD,
            why=why,
            policy=policy.digest,
            previous=previous,
            removed_keys=removed,
            added_keys=added,
            changes=changes,
        )
    return True


async def adopt(runtime: Runtime, digest: str) -> bool:
    """In a worker: take the policy the supervisor has just loaded and audited (``digest``), from disk.

    Only that very policy is taken: if the files changed again meanwhile, this worker keeps what it
    runs, and the supervisor's next reload (the files changed) brings every worker to the same one.
    """
    if digest == runtime.policy.digest:
        return True
    try:
        keys, policy = await off_loop(lambda: load_snapshot(runtime.settings), RELOAD_SECONDS)
    except Exception as exc:  # the supervisor loaded it a moment ago: a race with an edit, or a bug
        oplog.log().warning(
            "policy not adopted", wanted=digest[:12], why=f"{type(exc).__name__}: {exc}"[:200]
        )
        return False
    if policy.digest != digest:
        oplog.log().warning("policy not adopted", wanted=digest[:12], found=policy.digest[:12])
        return False
    runtime.keys, runtime.policy = keys, policy
    return True


def revoke(runtime: Runtime, fingerprints: list[str]) -> None:
    """In a worker: drop the keys the supervisor dropped after a failed reload (only removals apply)."""
    gone = {str(fp) for fp in fingerprints} & set(runtime.keys.by_fingerprint)
    if gone:
        runtime.keys = runtime.keys.without(gone)


def _fingerprint(runtime: Runtime) -> Fingerprint | None:
    try:
        return fingerprint(runtime.settings.policies, runtime.settings.keys)
    except OSError:
        return None  # a directory swapped out mid-scan: look again next time


async def watch(
    runtime: Runtime, interval: float = WATCH_INTERVAL, then: Callable[[], None] | None = None
) -> None:
    """Poll the policy and key directories; reload when a file changes (then call *then*)."""
    seen: Fingerprint | None = runtime.loaded_from
    while True:
        await asyncio.sleep(interval)
        now = _fingerprint(runtime)
        if now is not None and now != seen:
            seen = now
            await reload(runtime, "file change")
            if then is not None:
                then()
