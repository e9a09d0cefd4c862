"""A child's whole environment: nothing from the client but a checked TERM and locale.

``LANG`` and ``LC_*`` are accepted as Debian's sshd accepts them (``AcceptEnv
LANG LC_*``), with their values checked like TERM; ``GATEWAY_REASON`` (the
reason a grant may ask for) is accepted as printable text of at most 256
characters and never reaches a child; every other variable a client sends is
refused (and recorded by name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TERM_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
LOCALE_NAME_RE = re.compile(r"^(LANG|LANGUAGE|LC_[A-Z]{1,20})$")
LOCALE_VALUE_RE = re.compile(r"^[A-Za-z0-9._@:+-]{0,64}$")


REASON = "GATEWAY_REASON"
MAX_REASON = 256


def checked_reason(text: str) -> str | None:
    """A reason as given, if it is printable text of a sane length; None otherwise."""
    text = text.strip()
    if not text or len(text) > MAX_REASON or not text.isprintable():
        return None
    return text


def accepted_var(name: bytes, value: bytes) -> tuple[str, str] | None:
    """(name, value) for a locale setting with a sane value, or a checked GATEWAY_REASON; else None."""
    try:
        key = name.decode("ascii")
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if key == REASON:
        reason = checked_reason(text)
        return (key, reason) if reason is not None else None
    if LOCALE_NAME_RE.match(key) and LOCALE_VALUE_RE.match(text):
        return key, text
    return None


SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def checked_term(term: str | None) -> str | None:
    """The client's terminal type if it is a sane name; ``xterm`` for anything else it sent."""
    if not term:
        return None
    return term if TERM_RE.match(term) else "xterm"


def helper_env() -> dict[str, str]:
    """The whole environment of the gateway's own Python helpers (the network workers, the search
    helpers): a path and a locale, nothing of the gateway's."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def clean_env(term: str | None, locale: Mapping[str, str] | None = None) -> dict[str, str]:
    """PATH, LANG, HOME, TERM when there is a terminal, and the client's checked locale."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
    for name, value in (locale or {}).items():
        if LOCALE_NAME_RE.match(name) and LOCALE_VALUE_RE.match(value):
            env[name] = value
    if term:
        env["TERM"] = term
    return env
