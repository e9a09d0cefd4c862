"""Sessions waiting for their moderators, listed beside the index.

Nothing of a moderated session is in the index until it runs (its first
record is the allow), so ``sessions list`` would not show the very session a
moderator is asked to join. These come from the moderation board (every
worker's), with their request ids, after the sessions of the index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.evidence.query import Filters
from gateway.moderation import Moderated, ModerationBoard


def waiting(board: ModerationBoard | None, filters: Filters) -> list[Moderated]:
    """The moderated sessions not running yet that match *filters* (time bounds aside)."""
    found = []
    for moderated in board.live() if board is not None else []:
        action, _, target = moderated.what.partition(" ")
        wanted = (filters.principal, filters.action, filters.target)
        if moderated.state == "waiting" and all(
            w is None or w == got
            for w, got in zip(wanted, (moderated.requester, action, target), strict=True)
        ):
            found.append(moderated)
    return found


def _start(moderated: Moderated) -> str:
    return datetime.fromtimestamp(moderated.opened, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cells(found: list[Moderated]) -> list[tuple[str, ...]]:
    """Rows for the ``sessions list`` table: ``waiting R-ID`` in the exit column."""
    out: list[tuple[str, ...]] = []
    for m in found:
        action, _, target = m.what.partition(" ")
        needs = f"moderated ({m.need.describe()}): ssh approve@HOST watch {m.key}"
        out.append((m.session_id, _start(m), "-", m.requester, action, target or "-", "-", f"waiting {m.key}",
                    "0/0", needs))  # fmt: skip
    return out


def rows(found: list[Moderated]) -> list[dict[str, Any]]:
    """The same as JSON objects (``sessions list --json``)."""
    return [
        {
            "id": m.session_id,
            "start": _start(m),
            "principal": m.requester,
            "action": m.what.partition(" ")[0],
            "target": m.what.partition(" ")[2] or None,
            "state": "waiting",
            "moderation": m.key,
            "needs": m.need.describe(),
        }
        for m in found
    ]
