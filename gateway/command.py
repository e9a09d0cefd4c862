"""The client's exec string -> target and argv, without any shell.

The string is split with ``shlex`` in POSIX mode (quotes group words, nothing
is expanded), after refusing control characters and overlong input.
"""

from __future__ import annotations

import shlex
from typing import NamedTuple

from gateway.errors import Refusal
from gateway.events import RefusalKind

MAX_COMMAND = 4096
MAX_ARGS = 256


class Command(NamedTuple):
    """The first word is the target; the rest are arguments."""

    target: str | None
    args: tuple[str, ...] = ()

    @property
    def words(self) -> tuple[str, ...]:
        """Every word, target first."""
        return ((self.target,) if self.target else ()) + self.args


def has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def parse_command(text: str | None) -> Command:
    """Split *text*; raise Refusal for control characters, bad quoting or size."""
    if text is None or text == "":
        return Command(None)
    if len(text) > MAX_COMMAND:
        raise Refusal("gateway: the command is too long", reason="command too long", kind=RefusalKind.COMMAND)
    if has_control(text):
        raise Refusal(
            "gateway: control characters are not allowed in the command",
            reason="control characters in the command",
            kind=RefusalKind.COMMAND,
        )
    try:
        words = shlex.split(text, posix=True)
    except ValueError as exc:
        raise Refusal(
            "gateway: cannot parse the command (unbalanced quotes?)",
            reason=f"shlex: {exc}",
            kind=RefusalKind.COMMAND,
        ) from exc
    if len(words) > MAX_ARGS:
        raise Refusal("gateway: too many arguments", reason="too many arguments", kind=RefusalKind.COMMAND)
    if not words:
        return Command(None)  # only spaces
    return Command(words[0], tuple(words[1:]))


def is_legacy_scp(command: Command) -> bool:
    """``scp -t``/``scp -f`` as sent by ``scp -O`` for its remote end."""
    return command.target == "scp" and any(a.startswith("-") and ("t" in a or "f" in a) for a in command.args)


def printable(text: str) -> str:
    """*text* made safe to echo back on one line."""
    return "".join(c if c.isprintable() else "?" for c in text)[:128]
