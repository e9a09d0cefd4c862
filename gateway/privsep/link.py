"""The network worker's end of the monitor's socket: one question, one answer, in order.

A ``SOCK_SEQPACKET`` pair: each message is one packet (``dispatch.wire``'s
netstrings), descriptors ride with it (SCM_RIGHTS). The worker waits for each
answer: asyncssh signs the exchange hash synchronously (``SSHKeyPair.sign``),
and the monitor answers in well under a millisecond; a monitor that does not
answer within ``TIMEOUT`` is gone, and the worker stops.
"""

from __future__ import annotations

import socket

import asyncssh

from gateway.dispatch import wire

TIMEOUT = 10.0
PACKET = 4 * wire.LIMIT


class Link:
    """Blocking calls to the monitor."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(TIMEOUT)
        self.sock = sock

    def call(self, *fields: str, fds: list[int] | tuple[int, ...] = ()) -> list[str]:
        """Send one request, return the answer's fields; OSError when the monitor is gone."""
        socket.send_fds(self.sock, [wire.encode(*fields)], list(fds))
        data = self.sock.recv(PACKET)
        if not data:
            raise ConnectionResetError("the monitor has gone")
        found = wire.decode(data)
        if found is None:
            raise ConnectionResetError("the monitor's answer was cut short")
        return found[0]

    def take_listener(self) -> socket.socket:
        """The port, bound by the monitor, handed over once this worker is locked down."""
        socket.send_fds(self.sock, [wire.encode("listen")], [])
        data, fds, _flags, _addr = socket.recv_fds(self.sock, PACKET, 1)
        if data != wire.encode("ok") or len(fds) != 1:
            for fd in fds:
                socket.close(fd)
            raise ConnectionResetError("the monitor did not hand over the port")
        return socket.socket(fileno=fds[0])

    def gone(self) -> bool:
        """Whether the monitor has closed its end (called when the socket turns readable between calls)."""
        try:
            return not self.sock.recv(PACKET, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True


class MonitorKey(asyncssh.SSHKeyPair):
    """The host key as the worker has it: the public half; each signature is the monitor's."""

    _key_type = "monitor"

    def __init__(self, public: asyncssh.SSHKey, link: Link) -> None:
        super().__init__(
            public.algorithm,
            public.algorithm,
            public.sig_algorithms,
            public.sig_algorithms,
            public.public_data,
            None,
        )
        self._link = link

    def sign(self, data: bytes) -> bytes:
        """The monitor's signature over *data* (an exchange hash)."""
        reply = self._link.call("sign", data.hex())
        if reply[:1] != ["sig"] or len(reply) != 2:
            raise asyncssh.KeyExchangeFailed("the monitor refused to sign")
        return bytes.fromhex(reply[1])
