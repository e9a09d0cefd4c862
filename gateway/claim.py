"""One gateway per listen address.

Workers share their port with ``SO_REUSEPORT``, and so would any later socket
of the same user: a second ``serve`` on the same address would start without a
word and take a share of the connections, with its own policy and audit chain.
So the first gateway on an address holds an abstract unix socket named after
it (``@gateway-listen HOST:PORT``: no file to leave behind, freed by the kernel
when the gateway dies) and answers whoever connects with its pid and state
directory. A second ``serve`` fails to bind that name and says who is there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
from pathlib import Path

from gateway.errors import GatewayError
from gateway.settings import Listen

#: how long the second gateway waits for the first one's answer
ASK_SECONDS = 2.0


class Claim:
    """The held name of one listen address; ``answer()`` starts answering who holds it."""

    def __init__(self, sock: socket.socket, state: Path) -> None:
        self._sock = sock
        self._info = json.dumps({"pid": os.getpid(), "state": str(state.resolve())}).encode()

    def close(self) -> None:
        """Give the name back (the kernel also does when the process ends)."""
        self._sock.close()

    def answer(self) -> None:
        """Answer each caller with the pid and state directory, on a daemon thread (after any fork)."""
        threading.Thread(target=self._serve, name="claim", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                peer, _ = self._sock.accept()
            except OSError:
                return
            with peer, contextlib.suppress(OSError):
                peer.settimeout(ASK_SECONDS)
                peer.sendall(self._info)


def _name(listen: Listen) -> bytes:
    return f"\0gateway-listen {listen.host}:{listen.port}".encode()


def claim(listen: Listen, state: Path) -> Claim | None:
    """Hold *listen*'s name, or raise GatewayError naming the gateway that holds it (port 0: nothing)."""
    if listen.port == 0:  # the kernel picks a free port: nobody else can be on it
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(_name(listen))
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        holder = _holder(listen)
        raise GatewayError(
            f"{listen} is already served by {holder}; stop it or choose another --listen"
        ) from None
    sock.listen(16)
    return Claim(sock, state)


def _holder(listen: Listen) -> str:
    """``gateway pid 1234 (state /var/lib/gateway)``, as the holder answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ask:
            ask.settimeout(ASK_SECONDS)
            ask.connect(_name(listen))
            info = json.loads(ask.recv(8192) or b"{}")
        return f"gateway pid {int(info['pid'])} (state {info['state']!s})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another gateway (it did not say which)"
