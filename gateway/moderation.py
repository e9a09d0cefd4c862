"""Moderated sessions: a session that runs only while enough moderators watch it.

The session waits (``waiting for a moderator``) until ``needed`` different
eligible principals (never the requester) watch it, with ``ssh approve@HOST
watch R-ID`` or ``ssh audit@HOST sessions watch SESSION``. While it runs, the
moderators see its recording live; if they drop below the number needed the
session is ended, and any of them ends it at once with Ctrl-] (0x1d).

The board is shared by every worker process through ``STATE/moderation/``:
the session's process writes ``R-ID.json`` (who, what, the rule, the
recording once it runs) and removes it at the end; a moderator in another
process joins by writing ``R-ID.w-PID-N`` (its principal) and ends the
session with ``R-ID.stop``. Each side looks at the files a few times a
second; a watcher file whose process is gone does not count. Moderators in
the session's own process join in memory, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.policy.compiled import Need
from gateway.safefile import write_replacing

STOP = b"\x1d"  # Ctrl-]
POLL = 0.2


@dataclass
class Moderated:
    """One moderated session: who must watch, who watches, how to end it."""

    key: str
    session_id: str
    requester: str
    what: str
    need: Need
    #: who watches now: in-memory joins by token, other processes' by their file's name
    watchers: dict[object, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    #: the recording, once the session runs (moderators follow it)
    recording: Path | None = None
    #: ends the running session with a reason (set when it starts; another process's: a stop file)
    end: Callable[[str, str], None] | None = None
    #: the session runs in another worker process (this is a moderator's view of it)
    remote: bool = False
    #: when the session asked for its moderators (unix time)
    opened: float = field(default_factory=time.time)

    @property
    def state(self) -> str:
        """``waiting`` for its moderators, or ``running``."""
        return "running" if self.recording is not None else "waiting"

    def needs(self) -> str:
        """``1 of charlotte watching``."""
        return f"{self.need.describe()} watching"

    def eligible(self, principal: str) -> bool:
        """A moderator: in the rule's set, and not the one being moderated."""
        return principal != self.requester and principal in self.need.approvers

    @property
    def moderators(self) -> list[str]:
        """The eligible principals watching now, each once."""
        return sorted({p for p in self.watchers.values() if self.eligible(p)})

    def enough(self) -> bool:
        """Whether enough moderators watch."""
        return len(self.moderators) >= self.need.needed

    def _poke(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


class ModerationBoard:
    """The moderated sessions of this gateway, by request id and by session id."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._by_key: dict[str, Moderated] = {}
        self._remote: dict[str, Moderated] = {}
        self._tokens = itertools.count(1)
        self._ticking = False

    # ------------------------------------------------------------ the session's side

    def open(self, session_id: str, requester: str, what: str, need: Need) -> Moderated:
        """A new moderated session, waiting for its moderators."""
        key = f"R-{secrets.token_hex(3).upper()}"
        while key in self._by_key or self._taken(key):
            key = f"R-{secrets.token_hex(3).upper()}"
        found = Moderated(key, session_id, requester, what, need)
        self._by_key[key] = found
        self._publish(found)
        self._tick_soon()
        return found

    def running(self, moderated: Moderated, recording: Path | None, end: Callable[[str, str], None]) -> None:
        """The session started: moderators may follow *recording*; *end* ends it."""
        moderated.recording, moderated.end = recording, end
        self._publish(moderated)
        moderated._poke()

    def close(self, moderated: Moderated) -> None:
        """The session is over: its watchers are told."""
        moderated.finished.set()
        moderated._poke()
        self._by_key.pop(moderated.key, None)
        if self.directory is not None:
            for path in self.directory.glob(f"{moderated.key}.*"):
                with contextlib.suppress(OSError):
                    path.unlink()

    # ------------------------------------------------------------ a moderator's side

    def find(self, name: str) -> Moderated | None:
        """By request id (``R-…``) or by session id; a session in another worker too."""
        found = self._by_key.get(name.upper()) or next(
            (m for m in self._by_key.values() if m.session_id == name), None
        )
        return found if found is not None else self._find_remote(name)

    def for_moderator(self, principal: str) -> list[Moderated]:
        """The moderated sessions of this gateway (every worker's) that *principal* may watch."""
        return [m for m in self.live() if m.eligible(principal)]

    def live(self) -> list[Moderated]:
        """Every moderated session of this gateway (every worker's), waiting or running, oldest first."""
        found = {m.key: m for m in self._by_key.values()}
        if self.directory is not None and self.directory.is_dir():
            for path in sorted(self.directory.glob("R-*.json")):
                body = self._read(path)
                if body is not None and str(body.get("key")) not in found:
                    with contextlib.suppress(KeyError, TypeError, ValueError):
                        view = self._view(body)
                        found[view.key] = view
        return sorted(found.values(), key=lambda m: m.opened)

    def join(self, moderated: Moderated, principal: str) -> object:
        """A watcher arrives; a token to leave with."""
        token: object = next(self._tokens)
        if moderated.remote and self.directory is not None:
            token = f"{moderated.key}.w-{os.getpid()}-{token}"
            self._write(self.directory / str(token), principal)
            self._remote[moderated.key] = moderated
            self._tick_soon()
        else:
            moderated.watchers[token] = principal
            moderated._poke()
        return token

    def leave(self, moderated: Moderated, token: object) -> None:
        """A watcher leaves; the session ends if too few remain (``session.conditions``)."""
        if isinstance(token, str) and self.directory is not None:
            with contextlib.suppress(OSError):
                (self.directory / token).unlink()
            self._remote.pop(moderated.key, None)
            return
        moderated.watchers.pop(token, None)
        moderated._poke()

    # ------------------------------------------------------------ the files

    def _taken(self, key: str) -> bool:
        path = self._file(key)
        return path is not None and path.exists()

    def _file(self, key: str) -> Path | None:
        return self.directory / f"{key}.json" if self.directory is not None else None

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        write_replacing(path, text)

    def _publish(self, moderated: Moderated) -> None:
        path = self._file(moderated.key)
        if path is None:
            return
        body = {
            "key": moderated.key,
            "session_id": moderated.session_id,
            "requester": moderated.requester,
            "what": moderated.what,
            "label": moderated.need.label,
            "approvers": sorted(moderated.need.approvers),
            "needed": moderated.need.needed,
            "recording": str(moderated.recording) if moderated.recording else None,
            "opened": moderated.opened,
            "pid": os.getpid(),
        }
        with contextlib.suppress(OSError):
            self._write(path, json.dumps(body))

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return body if isinstance(body, dict) and _alive(int(body.get("pid") or 0)) else None

    def _find_remote(self, name: str) -> Moderated | None:
        if self.directory is None or not self.directory.is_dir():
            return None
        path = self._file(name.upper()) if name.upper().startswith("R-") else None
        candidates = [path] if path is not None else sorted(self.directory.glob("R-*.json"))
        for candidate in candidates:
            body = self._read(candidate) if candidate is not None else None
            if body is not None and (body.get("key") == name.upper() or body.get("session_id") == name):
                return self._view(body)
        return None

    def _view(self, body: dict[str, Any]) -> Moderated:
        """A moderator's view of a session in another process."""
        key = str(body["key"])
        approvers = frozenset(str(p) for p in body.get("approvers") or ())
        need = Need(str(body.get("label") or ""), approvers, int(body.get("needed") or 1))
        who, what = str(body["requester"]), str(body["what"])
        opened = body.get("opened")
        when = float(opened) if isinstance(opened, int | float) else 0.0
        view = Moderated(key, str(body["session_id"]), who, what, need, remote=True, opened=when)
        view.recording = Path(body["recording"]) if body.get("recording") else None

        def stop(why: str, line: str) -> None:
            del line
            if self.directory is not None:
                with contextlib.suppress(OSError):
                    self._write(self.directory / f"{key}.stop", why)

        view.end = stop
        return view

    # ------------------------------------------------------------ looking at them

    def _tick_soon(self) -> None:
        if self._ticking or self.directory is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._ticking = True
        loop.call_later(POLL, self._tick)

    def _tick(self) -> None:
        self._ticking = False
        for moderated in list(self._by_key.values()):
            self._sync_session(moderated)
        for moderated in list(self._remote.values()):
            self._sync_view(moderated)
        if self._by_key or self._remote:
            self._tick_soon()

    def _sync_session(self, moderated: Moderated) -> None:
        """The session's process: other processes' watchers, and a stop asked for."""
        assert self.directory is not None
        files: dict[object, str] = {}
        for path in self.directory.glob(f"{moderated.key}.w-*"):
            pid = path.name.rsplit(".w-", 1)[1].split("-")[0]
            if pid.isdigit() and _alive(int(pid)):
                with contextlib.suppress(OSError):
                    files[path.name] = path.read_text().strip()
        watching = {k: v for k, v in moderated.watchers.items() if not isinstance(k, str)} | files
        if watching != moderated.watchers:
            moderated.watchers = watching
            moderated._poke()
        stop = self.directory / f"{moderated.key}.stop"
        if stop.exists() and moderated.end is not None:
            with contextlib.suppress(OSError):
                why = stop.read_text().strip()
                stop.unlink()
                moderated.end(why, f"gateway: {why}")

    def _sync_view(self, moderated: Moderated) -> None:
        """A moderator's process: the recording once the session runs, and its end."""
        path = self._file(moderated.key)
        body = self._read(path) if path is not None else None
        if body is None:
            moderated.finished.set()
            moderated._poke()
            self._remote.pop(moderated.key, None)
        elif moderated.recording is None and body.get("recording"):
            moderated.recording = Path(body["recording"])
            moderated._poke()
