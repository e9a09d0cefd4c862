"""The moderation board across worker processes: a moderator in one, the session in another."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.moderation import POLL, ModerationBoard
from gateway.policy.compiled import Need


def test_a_moderator_in_another_process_joins_follows_and_stops(tmp_path: Path) -> None:
    async def scenario() -> None:
        session_side = ModerationBoard(tmp_path / "moderation")  # the worker running the session
        moderator_side = ModerationBoard(tmp_path / "moderation")  # the worker the moderator reached
        moderated = session_side.open(
            "abc123", "dan", "debug web1", Need("security", frozenset({"betty"}), 1)
        )
        assert not moderated.enough()
        view = moderator_side.find(moderated.key)
        assert view is not None and view.remote and view.eligible("betty") and not view.eligible("dan")
        assert moderator_side.find("abc123") is not None  # by session id too
        token = moderator_side.join(view, "betty")
        await asyncio.wait_for(moderated.changed.wait(), 5 * POLL)
        assert moderated.enough() and moderated.moderators == ["betty"]
        ended: list[str] = []
        session_side.running(moderated, tmp_path / "rec.cast", lambda _why, line: ended.append(line))
        await asyncio.sleep(3 * POLL)
        assert view.recording == tmp_path / "rec.cast"  # the moderator follows the recording
        assert view.end is not None
        view.end("ended by moderator betty", "")
        await asyncio.sleep(3 * POLL)
        assert ended == ["gateway: ended by moderator betty"]
        moderator_side.leave(view, token)
        await asyncio.sleep(3 * POLL)
        assert not moderated.enough()  # too few moderators: the session side sees it
        session_side.close(moderated)
        assert not list((tmp_path / "moderation").glob(f"{moderated.key}.*"))

    asyncio.run(scenario())


def test_the_view_learns_the_session_ended(tmp_path: Path) -> None:
    async def scenario() -> None:
        session_side, moderator_side = ModerationBoard(tmp_path), ModerationBoard(tmp_path)
        moderated = session_side.open("s1", "dan", "x", Need("ops", frozenset({"betty"}), 1))
        view = moderator_side.find(moderated.key)
        assert view is not None
        moderator_side.join(view, "betty")
        session_side.close(moderated)
        await asyncio.wait_for(view.finished.wait(), 5 * POLL)

    asyncio.run(scenario())
