"""The one place that reaches into asyncssh's channel internals.

asyncssh answers agent-forwarding, X11, env and (for sftp) subsystem requests
inside its channel code with no server callback, so refusals would go
unrecorded (and env requests would be *accepted*). We replace those request
handlers on each session channel with ones that refuse and report. Pinned to the asyncssh
versions below; an unknown version fails at import, closed, not open.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncssh
from asyncssh.channel import SSHServerChannel
from asyncssh.constants import MSG_KEXINIT
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacket, SSHPacketLogger

from gateway.command import printable
from gateway.environment import accepted_var
from gateway.events import RefusalKind

#: the asyncssh release these hooks were written and tested against (pyproject.toml pins exactly it)
TESTED = ("2.24.1",)
_HANDLERS = (
    "_process_env_request",
    "_process_auth_agent_req_at_openssh_dot_com_request",
    "_process_x11_req_request",
    "_process_subsystem_request",
)

_CERT_HOOK = "_validate_openssh_certificate"
_KEX_INTERNALS = ("_recv_version", "_send_kexinit", "_packet_handlers", "_process_kexinit")

if (
    asyncssh.__version__ not in TESTED
    or not all(hasattr(SSHServerChannel, h) for h in _HANDLERS)
    or not hasattr(asyncssh.SSHServerConnection, _CERT_HOOK)
    or not all(hasattr(asyncssh.SSHServerConnection, h) for h in _KEX_INTERNALS)
    or not hasattr(SSHPacketLogger, "_log_packet")
    or not hasattr(SSHLogger, "_debug_level")
):
    raise ImportError(f"gateway.sshhooks is pinned to asyncssh {TESTED}, found {asyncssh.__version__}")

OnRefused = Callable[..., None]  # (RefusalKind, **fields)
#: asyncssh logs packets from this debug level up
PACKET_DEBUG_LEVEL = 3


#: a subsystem reaches the session under this prefix, so asyncssh's own sftp branch never runs
SUBSYSTEM_PREFIX = "gateway-refused:"


def requested_subsystem(subsystem: str | None) -> str | None:
    """The subsystem name the client asked for (see SUBSYSTEM_PREFIX)."""
    if subsystem is None:
        return None
    return subsystem.removeprefix(SUBSYSTEM_PREFIX)


def install_refusal_hooks(chan: SSHServerChannel[Any], on_refused: OnRefused) -> None:
    """Make *chan* refuse env (but locale and GATEWAY_REASON), agent and X11 requests, reporting each.

    A subsystem request (sftp among them) is accepted, so that the session
    itself refuses it with a line on stderr and exit status 1, as for every
    other refusal; clients show that line instead of "subsystem request failed".
    """

    def env(packet: SSHPacket) -> bool:
        name = packet.get_string()
        value = packet.get_string()  # never logged: it may be a secret
        packet.check_end()
        accepted = accepted_var(name, value)
        if accepted is not None:  # Debian's sshd: AcceptEnv LANG LC_*; and GATEWAY_REASON
            chan._env[accepted[0].encode()] = accepted[1].encode()
            return True
        on_refused(RefusalKind.ENV, name=printable(name.decode("utf-8", "replace")))
        return False

    def agent(packet: SSHPacket) -> bool:
        packet.check_end()
        on_refused(RefusalKind.AGENT_FORWARDING)
        return False

    def x11(packet: SSHPacket) -> bool:
        on_refused(RefusalKind.X11_FORWARDING)
        return False

    def subsystem(packet: SSHPacket) -> bool:
        name = printable(packet.get_string().decode("utf-8", "replace"))
        packet.check_end()
        return bool(chan._start_session(subsystem=SUBSYSTEM_PREFIX + name))

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
        remaining -= 1
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if remaining <= 0:  # the handshake is over: every later packet goes straight to asyncssh
            setattr(conn, "data_received", original)  # noqa: B010

    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    setattr(conn, "data_received", data_received)  # noqa: B010 - the transport looks it up per call


def skip_packet_logging() -> None:
    """Stop asyncssh formatting a debug line for every packet that its logger then drops.

    ``SSHPacketLogger._log_packet`` builds the message (names, sizes, an
    f-string) before ``SSHLogger.packet`` checks the debug level (3 for packet
    logging; asyncssh's default is 1): 2 to 3 % of the gateway's CPU per
    keystroke. With the debug level at 3 or more, packets are logged as before.
    """
    original = SSHPacketLogger._log_packet
    if getattr(original, "_gateway_skips", False):
        return

    def _log_packet(self: SSHPacketLogger, *args: Any) -> None:
        if SSHLogger._debug_level >= PACKET_DEBUG_LEVEL:
            original(self, *args)

    _log_packet._gateway_skips = True  # type: ignore[attr-defined]
    setattr(SSHPacketLogger, "_log_packet", _log_packet)  # noqa: B010


# ---------------------------------------------------------------- key exchange

KEX_FALLBACK_SECONDS = 1.0
CipherOffer = Callable[[Sequence[bytes]], list[bytes]]


def _kexinit_fields(payload: bytes) -> tuple[Sequence[bytes], Sequence[bytes], Sequence[bytes], bool]:
    """(kex algs, host key algs, client-to-server ciphers, first_kex_packet_follows) of a KEXINIT."""
    packet = SSHPacket(payload)
    packet.get_byte()
    packet.get_bytes(16)
    kex, host_keys, ciphers = packet.get_namelist(), packet.get_namelist(), packet.get_namelist()
    for _ in range(7):
        packet.get_namelist()
    return kex, host_keys, ciphers, packet.get_boolean()


def install_kex_hooks(conn: asyncssh.SSHServerConnection, offer: CipherOffer) -> None:
    """Wait for the client's KEXINIT before sending ours, and honour a wrong key-exchange guess.

    1. The server's cipher list is chosen per client by *offer*, from the
       client's own list: asyncssh would send its KEXINIT as soon as it has
       the client's version, so that first send is held back until the
       client's KEXINIT arrives (asyncssh then sends ours itself), or for
       KEX_FALLBACK_SECONDS at most, for a client that waits for us.
    2. RFC 4253 section 7: a guessed first key-exchange packet
       (``first_kex_packet_follows``) must be ignored when the guess was
       wrong: when "server and client have different preferred algorithm",
       the *first* key-exchange or host key algorithm of each side's list.
       asyncssh 2.24 instead compares the agreed algorithm with the client's
       first, so with our list headed by mlkem768x25519 and Dropbear's by
       curve25519 it answered Dropbear's guessed packet, while Dropbear (which
       follows the RFC) sent the real one after it: "Key exchange not in
       progress". Fixed here per connection (asyncssh dispatches packets
       through the instance's ``_packet_handlers``).
    """
    original_version = conn._recv_version
    original_kexinit = type(conn)._packet_handlers[MSG_KEXINIT]
    loop = asyncio.get_running_loop()

    def recv_version() -> bool:
        conn._send_kexinit = lambda: None  # type: ignore[method-assign]
        try:
            done = original_version()
        finally:
            del conn._send_kexinit
        if conn._recv_handler != recv_version:  # the version line was read
            conn._kexinit_sent = False
            loop.call_later(KEX_FALLBACK_SECONDS, fallback)
        return done

    def fallback() -> None:
        if not conn._kexinit_sent and conn._kex is None and conn._transport is not None:
            with contextlib.suppress(Exception):
                conn._send_kexinit()
                conn._kexinit_sent = True

    async def kexinit(self: Any, pkttype: int, pktid: int, packet: SSHPacket) -> None:
        payload = packet.get_full_payload()
        kex_algs, host_key_algs, ciphers, guessed = _kexinit_fields(payload)
        if not conn._kexinit_sent:
            conn._enc_algs = offer(ciphers)
        pending = original_kexinit(self, pkttype, pktid, packet)
        if pending is not None:
            await pending
        if guessed and conn._kex is not None:
            ours_kex, ours_keys = list(conn._kex_algs), list(conn._server_host_key_algs or [])
            conn._ignore_first_kex = (
                not kex_algs
                or not host_key_algs
                or not ours_kex
                or not ours_keys
                or kex_algs[0] != ours_kex[0]
                or host_key_algs[0] != ours_keys[0]
            )

    conn._recv_handler = recv_version
    conn._packet_handlers = {**type(conn)._packet_handlers, MSG_KEXINIT: kexinit}
