"""What an HTML evidence file plays, checked against the bundle it carries.

The bundle inside the page is verified like any other; this checks that the
page plays nothing but it. Each player's data must be exactly what the
exporter derives from a recording the bundle vouches for (its SHA-256 is in
the session's own ``session.end`` record), for a session the bundle lists; the
page may run no script but those and the gateway's own fixed ones, and no
inline event handler. A changed byte in what a browser would play fails, naming
the session.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gateway.evidence.html import BUNDLE_ID, CAST_MIDDLE, CAST_PREFIX, fixed_scripts, player_config

SCRIPT = re.compile(rb"<script([^>]*)>(.*?)</script>", re.S | re.I)
#: an inline event handler (``onload=``) or a ``javascript:`` URL outside the scripts: it could play anything
HANDLER = re.compile(rb"<[^>]*(\son[a-z]+\s*=|javascript:)", re.I)


def page_problem(page: bytes, root: Path, vouched: dict[str, set[str]]) -> str | None:
    """The first thing the page would show that the bundle in *root* does not vouch for, or None.

    *vouched*: each session of the bundle and the recordings its records vouch for (as the bundle's
    own check found them: ``BundleReport.vouched``).
    """
    if HANDLER.search(SCRIPT.sub(b"", page)):
        return "the page has an inline event handler: what it shows is not the bundle's"
    fixed = set(fixed_scripts())
    for attrs, body in SCRIPT.findall(page):
        if BUNDLE_ID.encode() in attrs and b"application/gzip" in attrs:
            continue
        text = body.decode("utf-8", "replace")
        if attrs.strip():
            return "the page loads a script of its own: what it shows is not the bundle's"
        if text in fixed:
            continue
        if not text.startswith(CAST_PREFIX):
            return "the page runs a script that is not the gateway's: what it shows is not the bundle's"
        problem = _player_problem(text, root, vouched)
        if problem is not None:
            return problem
    return None


def _player_problem(text: str, root: Path, vouched: dict[str, set[str]]) -> str | None:
    _, _, tail = text[len(CAST_PREFIX) :].partition(CAST_MIDDLE)
    try:
        config: Any = json.loads(tail.strip().removesuffix(";"))
    except ValueError:
        return "the page's player data is not what the gateway writes"
    if not isinstance(config, dict):
        return "the page's player data is not what the gateway writes"
    session, name = str(config.get("session")), str(config.get("name"))
    if session not in vouched:
        return f"session {session}: the page plays it, but the bundle does not list it"
    if name not in vouched[session]:
        return f"session {session}: the page plays {name}, which the bundle does not vouch for"
    expected = json.loads(json.dumps(player_config(session, name, (root / name).read_bytes())))
    if config != expected:
        return f"session {session}: what the page plays differs from recording {name} in the bundle"
    return None
