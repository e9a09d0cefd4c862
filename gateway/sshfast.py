"""A lean path through asyncssh for what an interactive session sends most: channel data.

asyncssh's packet code is general: every packet it sends passes the rekey,
deferral and logging checks, and an empty SSH_MSG_IGNORE before it; every
data packet it receives passes four channel methods and a debug call. For a
typing session that is most of the gateway's CPU per keystroke. Here, while
a connection is in its steady state (keys exchanged, user authenticated, no
compression, no rekey due, no CBC cipher, packet logging off), channel data
goes through short functions that do exactly what asyncssh does with it:
the same bytes on the wire, the same windows, sequence numbers and rekey
accounting. Anything else (and any packet outside the steady state) takes
asyncssh's own path. Pinned, with ``sshhooks``, to the asyncssh versions it
was written against.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.constants import (
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EXTENDED_DATA,
    MSG_IGNORE,
    MSG_USERAUTH_LAST,
)
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import GCMEncryption
from asyncssh.logging import SSHLogger
from asyncssh.misc import ProtocolError
from asyncssh.packet import PacketDecodeError, SSHPacket
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.sshhooks import PACKET_DEBUG_LEVEL, TESTED

if not asyncssh.__version__.startswith(TESTED):  # pragma: no cover - sshhooks refuses first
    raise ImportError(f"gateway.sshfast is pinned to asyncssh {TESTED}, found {asyncssh.__version__}")

_EMPTY_STRING = (b"\0\0\0\0",)  # String(b""): the IGNORE asyncssh puts before each packet
#: asyncssh logs each data packet from this debug level up
DATA_DEBUG_LEVEL = 2


def install_lean_sends(conn: asyncssh.SSHServerConnection) -> None:
    """Packets sent on *conn* in its steady state skip asyncssh's general checks, and the IGNORE.

    asyncssh puts an empty IGNORE in front of each packet once encryption is
    on: RFC 4251 section 9.3.1's countermeasure for CBC's predictable IVs.
    The gateway's ciphers are AES-GCM, AES-CTR and chacha20-poly1305, for
    which it protects nothing (OpenSSH sends none): it only doubled the
    packets, the encryptions and the ``send()`` calls of every echo. A
    connection whose cipher is a CBC one (``--ciphers +aes128-cbc``) keeps
    them, and asyncssh's whole path.
    """
    original = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY_STRING:
            if b"-cbc" not in conn._enc_alg_sc:
                return
        elif (
            pkttype > MSG_USERAUTH_LAST
            and conn._kex_complete
            and conn._auth_complete
            and conn._compressor is None
            and conn._rekey_bytes_sent < conn._rekey_bytes
            and not (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)
            and SSHLogger._debug_level < PACKET_DEBUG_LEVEL
            and b"-cbc" not in conn._enc_alg_sc
        ):
            _send(conn, bytes((pkttype,)) + b"".join(args))
            return
        original(pkttype, *args, handler=handler)

    setattr(conn, "send_packet", send_packet)  # noqa: B010 - asyncssh calls self.send_packet for the IGNORE too


def _send(conn: Any, payload: bytes) -> None:
    """asyncssh's SSHConnection.send_packet for an established connection: pad, encrypt, send, count."""
    blocksize = conn._send_blocksize
    padlen = -(conn._send_enchdrlen + len(payload)) % blocksize
    if padlen < 4:
        padlen += blocksize
    packet = bytes((padlen,)) + payload + os.urandom(padlen)
    pktlen = len(packet)
    header = pktlen.to_bytes(4, "big")
    seq = conn._send_seq
    encryption = conn._send_encryption
    if type(encryption) is GCMEncryption:  # GCMCipher.encrypt_and_sign, with its AESGCM kept
        cipher = encryption._cipher
        sealed = _aead(cipher).encrypt(cipher._iv, packet, header)
        cipher._iv = _next_iv(cipher._iv)
        conn._send(header + sealed)
    else:
        packet, mac = encryption.encrypt_packet(seq, header, packet)
        conn._send(packet + mac)
    conn._send_seq = (seq + 1) & 0xFFFFFFFF
    conn._rekey_bytes_sent += pktlen


def _aead(cipher: GCMCipher) -> AESGCM:
    """The cipher's AESGCM, made once per key (asyncssh makes one per packet)."""
    aead: AESGCM | None = getattr(cipher, "_gateway_aead", None)
    if aead is None:
        aead = AESGCM(cipher._key)
        setattr(cipher, "_gateway_aead", aead)  # noqa: B010
    return aead


def _next_iv(iv: bytes) -> bytes:
    """GCMCipher._update_iv: the 64-bit invocation counter after the fixed field, plus one."""
    return iv[:4] + ((int.from_bytes(iv[4:], "big") + 1) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


class _Decrypted:
    """An encryption whose only packet is already decrypted: asyncssh's own code then handles it."""

    def __init__(self, plain: bytes) -> None:
        self.plain = plain

    def decrypt_packet(self, *_args: Any) -> bytes:
        return self.plain


_IGNORE, _DATA = bytes((MSG_IGNORE,)), bytes((MSG_CHANNEL_DATA,))


def install_lean_receive(conn: asyncssh.SSHServerConnection) -> None:
    """Packets received on *conn* with AES-GCM after authentication: IGNORE and channel data lean.

    asyncssh's ``_recv_packet`` runs once the whole packet is in (its header
    read by ``_recv_pkthdr``). Here the packet is decrypted (the same key and
    nonce; a failed tag leaves it to asyncssh, which decrypts again, fails
    and reports it), and an IGNORE is dropped, and a data packet for a known
    channel goes to that channel, with no general dispatch. Anything else
    goes to asyncssh's own code, handed the packet already decrypted.
    """
    original = conn._recv_packet
    state: Any = conn  # asyncssh's internals, as they are in the pinned versions

    def recv_packet() -> bool:
        encryption = conn._recv_encryption
        if (
            type(encryption) is not GCMEncryption
            or not conn._auth_complete
            or conn._decompressor is not None
            or SSHLogger._debug_level >= PACKET_DEBUG_LEVEL
        ):
            return bool(original())
        macsize = conn._recv_macsize
        rem = 4 + conn._pktlen + macsize - conn._recv_blocksize
        inpbuf = conn._inpbuf
        if len(inpbuf) < rem:
            return False
        cipher, first = encryption._cipher, conn._packet
        try:
            plain = _aead(cipher).decrypt(cipher._iv, first[4:] + inpbuf[:rem], first[:4])
        except InvalidTag:
            return bool(original())
        cipher._iv = _next_iv(cipher._iv)
        payload = plain[1 : -plain[0]]
        kind = payload[:1]
        channel = conn._channels.get(int.from_bytes(payload[1:5], "big")) if kind == _DATA else None
        if kind == _IGNORE and len(payload) >= 5 and int.from_bytes(payload[1:5], "big") == len(payload) - 5:
            pkttype = MSG_IGNORE
        elif channel is not None and len(payload) >= 9:
            pkttype = MSG_CHANNEL_DATA
        else:  # asyncssh's own code, with the packet already decrypted
            state._recv_encryption = _Decrypted(plain)
            try:
                return bool(original())
            finally:
                if type(state._recv_encryption) is _Decrypted:  # not replaced by a NEWKEYS meanwhile
                    state._recv_encryption = encryption
        seq = conn._recv_seq
        conn._inpbuf = inpbuf[rem:]
        conn._packet = b""
        if channel is not None:
            try:
                channel.process_packet(MSG_CHANNEL_DATA, seq, SSHPacket(payload[5:]))
            except PacketDecodeError as exc:
                raise ProtocolError(str(exc)) from None
        conn._finish_recv_packet(pkttype, seq)
        return True

    setattr(conn, "_recv_packet", recv_packet)  # noqa: B010 - looked up each time a header is read


def channel_writer(chan: SSHChannel[Any], datatype: asyncssh.DataType) -> Callable[[bytes], None]:
    """A write function for *chan*'s stdout (``datatype`` None) or stderr: ``chan.write`` made lean.

    Data that fits the client's window and one packet, with nothing queued
    before it, is sent at once as one data packet; anything else goes through
    ``chan.write`` (queueing, splitting, waiting for the window).
    """
    conn: Any = chan.get_connection()

    def write(data: bytes) -> None:
        size = len(data)
        if (
            0 < size <= chan._send_window
            and size <= chan._send_pktsize
            and chan._send_state == "open"
            and not chan._send_buf
            and not chan._send_paused
            and chan._send_chan is not None
        ):
            chan._send_window -= size
            head = chan._send_chan.to_bytes(4, "big")
            if datatype is not None:
                head += datatype.to_bytes(4, "big")
            pkttype = MSG_CHANNEL_DATA if datatype is None else MSG_CHANNEL_EXTENDED_DATA
            conn.send_packet(pkttype, head + size.to_bytes(4, "big") + data, handler=chan)
        else:
            chan.write(data, datatype)

    return write


def install_lean_channel(chan: SSHChannel[Any]) -> None:
    """Data packets for *chan* go straight to its session (asyncssh's window rules kept)."""
    original = chan.process_packet

    def process_packet(pkttype: int, pktid: int, packet: SSHPacket) -> bool:
        if (
            pkttype == MSG_CHANNEL_DATA
            and chan._recv_state == "open"
            and chan._recv_paused is False
            and chan._encoding is None
            and chan._send_state not in ("close_pending", "closed")
            and SSHLogger._debug_level < DATA_DEBUG_LEVEL
        ):
            data = packet.get_string()
            packet.check_end()
            size = len(data)
            if size > chan._recv_window:
                raise ProtocolError("Window exceeded")
            if size:
                chan._recv_window -= size
                if chan._recv_window < chan._init_recv_window / 2 or chan._session is None:
                    chan._deliver_data(data, None)  # with its window adjust
                else:
                    chan._session.data_received(data, None)
            return True
        return bool(original(pkttype, pktid, packet))

    setattr(chan, "process_packet", process_packet)  # noqa: B010 - the connection looks it up per packet
