"""A child's whole environment: nothing from the client but a checked TERM."""

from __future__ import annotations

import re

TERM_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def checked_term(term: str | None) -> str | None:
    """The client's terminal type if it is a sane name; ``xterm`` for anything else it sent."""
    if not term:
        return None
    return term if TERM_RE.match(term) else "xterm"


def clean_env(term: str | None) -> dict[str, str]:
    """PATH, LANG, HOME, and TERM when there is a terminal."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
    if term:
        env["TERM"] = term
    return env
