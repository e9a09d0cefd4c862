"""Single-use tickets: what sshd authenticated, handed from the keys account to the door.

sshd's ``AuthorizedKeysCommand`` (running as its own account, ``--keys-user``,
on the keys socket) asks for the line of one key (``%f``). The daemon answers
with a line whose ``command=`` carries a fresh ticket bound to that key's
principal and to the connection's sshd monitor (``dispatch.peers``). Only a
process below that monitor may redeem it: the principal and the peer come
from the ticket and the monitor, never from the client. A ticket lives
``TICKET_SECONDS`` and is good once; the book holds at most ``MAX_TICKETS``
(the oldest go first).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

TICKET_SECONDS = 120.0
MAX_TICKETS = 4096


@dataclass(frozen=True)
class Ticket:
    """What sshd's lookup established for one connection."""

    principal: str
    fingerprint: str
    #: the connection's sshd monitor (pid, start time); None for a lookup root made by hand
    monitor: tuple[int, int] | None
    expires: float
    #: the account sshd authenticated (``%u``): an action's own account names the action
    login: str = ""


class TicketBook:
    """The tickets minted and not yet redeemed."""

    def __init__(self, lifetime: float = TICKET_SECONDS, limit: int = MAX_TICKETS) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._open: OrderedDict[str, Ticket] = OrderedDict()

    def mint(self, principal: str, fingerprint: str, monitor: tuple[int, int] | None, login: str = "") -> str:
        """A new ticket for a key lookup sshd made."""
        self._expire()
        while len(self._open) >= self.limit:
            self._open.popitem(last=False)
        token = secrets.token_hex(16)
        expires = time.monotonic() + self.lifetime
        self._open[token] = Ticket(principal, fingerprint, monitor, expires, login)
        return token

    def redeem(self, token: str) -> Ticket | None:
        """The ticket, once; None when unknown, used or expired."""
        self._expire()
        return self._open.pop(token, None)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._open:
            token, ticket = next(iter(self._open.items()))
            if ticket.expires > now:
                return
            del self._open[token]
