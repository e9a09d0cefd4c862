"""The one place that reaches into asyncssh's channel internals.

asyncssh answers agent-forwarding, X11, env and (for sftp) subsystem requests
inside its channel code with no server callback, so refusals would go
unrecorded (and env requests would be *accepted*). We replace those request
handlers on each session channel with ones that refuse and report. Pinned to the asyncssh
versions below; an unknown version fails at import, closed, not open.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
from asyncssh.channel import SSHServerChannel
from asyncssh.packet import SSHPacket

from gateway.command import printable

TESTED = ("2.23", "2.24")
_HANDLERS = (
    "_process_env_request",
    "_process_auth_agent_req_at_openssh_dot_com_request",
    "_process_x11_req_request",
    "_process_subsystem_request",
)

_CERT_HOOK = "_validate_openssh_certificate"

if (
    not asyncssh.__version__.startswith(TESTED)
    or not all(hasattr(SSHServerChannel, h) for h in _HANDLERS)
    or not hasattr(asyncssh.SSHServerConnection, _CERT_HOOK)
):
    raise ImportError(f"gateway.sshhooks is pinned to asyncssh {TESTED}, found {asyncssh.__version__}")

OnRefused = Callable[..., None]


def install_refusal_hooks(chan: SSHServerChannel[Any], on_refused: OnRefused) -> None:
    """Make *chan* refuse env, agent, X11 and subsystem requests, reporting each."""

    def env(packet: SSHPacket) -> bool:
        name = packet.get_string()
        packet.get_string()  # the value is never logged: it may be a secret
        packet.check_end()
        on_refused("env", name=printable(name.decode("utf-8", "replace")))
        return False

    def agent(packet: SSHPacket) -> bool:
        packet.check_end()
        on_refused("agent-forwarding")
        return False

    def x11(packet: SSHPacket) -> bool:
        on_refused("x11-forwarding")
        return False

    def subsystem(packet: SSHPacket) -> bool:
        name = printable(packet.get_string().decode("utf-8", "replace"))
        on_refused("subsystem", reason=f"subsystem {name}", name=name)
        return False

    for name, handler in zip(_HANDLERS, (env, agent, x11, subsystem), strict=True):
        setattr(chan, name, handler)


CertValidator = Callable[[str, Any], Awaitable[Any]]


def install_certificate_hook(conn: asyncssh.SSHServerConnection, validate: CertValidator) -> None:
    """Let *validate* judge user certificates on *conn*.

    asyncssh insists that a certificate's principals include the login name,
    and here the login name is the action. *validate* gets (login, certificate)
    and returns the certificate's key to accept it, or None.
    """
    setattr(conn, _CERT_HOOK, validate)


def set_certificate_options(conn: asyncssh.SSHServerConnection, options: dict[str, Any]) -> None:
    """Record the accepted certificate's options, so asyncssh honours force-command."""
    conn._cert_options = options


QUICKACK_PACKETS = 64  # the handshake and authentication; bulk data needs no help


def install_quickack(conn: asyncssh.SSHServerConnection) -> None:
    """Re-arm TCP_QUICKACK after each receive during the handshake.

    The OpenSSH client does not set TCP_NODELAY during key exchange, so its
    small packets can wait about 40 ms for our delayed ACK, twice per
    connection. Linux clears QUICKACK by itself, so it is set again after
    every receive, for the first packets only.
    """
    sock = conn.get_extra_info("socket")
    if sock is None or not hasattr(socket, "TCP_QUICKACK"):
        return
    original = conn.data_received
    remaining = QUICKACK_PACKETS

    def data_received(data: bytes, datatype: int | None = None) -> None:
        nonlocal remaining
        original(data, datatype)
        if remaining > 0:
            remaining -= 1
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    setattr(conn, "data_received", data_received)  # noqa: B010 - the transport looks it up per call
