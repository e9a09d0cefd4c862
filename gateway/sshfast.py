"""A lean path through asyncssh for what an interactive session sends most: channel data.

asyncssh's packet code is general: every packet it sends passes the rekey,
deferral and logging checks, with an empty SSH_MSG_IGNORE before it; every
packet it receives passes a dispatch on its type, a packet object, four
channel methods and a debug call; a new AESGCM object is made for each
encryption. For a typing session that was most of the gateway's CPU per
keystroke. Here, while a connection is in its steady state (keys exchanged,
user authenticated, no compression, no rekey due, no CBC cipher, packet
logging off), channel data and IGNOREs go through short functions that do
exactly what asyncssh does with them: the same bytes on the wire, the same
nonces, windows, sequence numbers and rekey accounting. Anything else (and
any packet outside the steady state) takes asyncssh's own path. Pinned, with
``sshhooks``, to the asyncssh versions it was written against; the tests in
``tests/e2e/test_sshfast.py`` cross rekeys, windows and every client.
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
from asyncssh.misc import DisconnectError, ProtocolError
from asyncssh.packet import SSHPacket
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway import oplog

#: the one asyncssh release the lean path was written and tested against (its private names move
#: between patch releases: 2.24.1 added ``_max_recv_pktlen`` and moved the window decrement)
LEAN_VERSION = "2.24.1"
#: every attribute of a connection the lean path reads or writes, checked on the live object
#: (``__init__`` sets them, so the class cannot tell)
CONNECTION_NAMES = (
    "_inpbuf", "_recv_encryption", "_recv_seq", "_transport", "_recv_blocksize", "_send_seq", "_send",
    "_rekey_bytes_sent", "_enc_alg_sc", "_send_disconnect", "_reset_keepalive_timer", "_recv_handler",
    "_pktlen", "_packet", "_max_recv_pktlen", "_keepalive_timer", "_keepalive_interval", "_force_close",
    "_decompressor", "_channels", "_auth_final", "_auth_complete", "_send_encryption", "_send_enchdrlen",
    "_send_blocksize", "_rekey_time", "_rekey_seconds", "_rekey_bytes", "_recv_pkthdr",
    "_kex_complete", "_compressor",
)  # fmt: skip
#: and of a channel
CHANNEL_NAMES = (
    "_recv_window", "_session", "_send_window", "_send_state", "_send_chan", "_recv_state", "_recv_paused",
    "_send_pktsize", "_send_paused", "_send_buf", "_init_recv_window", "_encoding", "_deliver_data",
)  # fmt: skip
_warned: list[str] = []
#: set on a connection whose sends go the lean way
LEAN_SENDS = "_gateway_lean_sends"
#: the parts of the lean path, each on its own (``serve --lean-parts``, for measuring what each buys)
PARTS = ("send", "receive", "channel")


def available(conn: object) -> bool:
    """Whether the lean path may serve *conn*: this asyncssh is the one it was written for, and every
    name it uses is there; otherwise asyncssh's own path, with one warning per process."""
    missing = [n for n in CONNECTION_NAMES if not hasattr(conn, n)]
    if asyncssh.__version__ == LEAN_VERSION and not missing:
        return True
    if not _warned:
        _warned.append(asyncssh.__version__)
        oplog.log().warning(
            "lean packet path off",
            asyncssh=asyncssh.__version__,
            written_for=LEAN_VERSION,
            missing=missing[:5],
            why="asyncssh's own packet path serves every connection instead",
        )
    return False


def channel_ready(chan: object) -> bool:
    """Whether every name the lean path uses on *chan* is there."""
    return all(hasattr(chan, n) for n in CHANNEL_NAMES)


_EMPTY_STRING = (b"\0\0\0\0",)  # String(b""): the IGNORE asyncssh puts before each packet
#: asyncssh logs each data packet from this debug level up
DATA_DEBUG_LEVEL = 2
GCM_TAG = 16
_IGNORE, _DATA = bytes((MSG_IGNORE,)), bytes((MSG_CHANNEL_DATA,))
_COUNTER = 0xFFFFFFFFFFFFFFFF


# ---------------------------------------------------------------- sending


def _steady(conn: Any) -> bool:
    """Whether *conn* is in its steady state, the one test every lean step makes: keys exchanged, the
    user authenticated, no compression, no rekey due, no CBC cipher, data not being logged. Outside
    it, every packet, sent or received, takes asyncssh's own path."""
    return bool(
        conn._kex_complete
        and conn._auth_complete
        and conn._compressor is None
        and conn._decompressor is None
        and conn._rekey_bytes_sent < conn._rekey_bytes
        and not (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)
        and SSHLogger._debug_level < DATA_DEBUG_LEVEL
        and b"-cbc" not in conn._enc_alg_sc
    )


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
    setattr(conn, LEAN_SENDS, True)

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY_STRING:
            if b"-cbc" not in conn._enc_alg_sc:
                return
        elif pkttype > MSG_USERAUTH_LAST and _steady(conn):
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
    packet = bytes((padlen,)) + payload + _padding(padlen)
    pktlen = len(packet)
    header = pktlen.to_bytes(4, "big")
    seq = conn._send_seq
    encryption = conn._send_encryption
    if type(encryption) is GCMEncryption:  # GCMCipher.encrypt_and_sign, with its AESGCM kept
        cipher = encryption._cipher
        iv = cipher._iv
        sealed = _aead(cipher).encrypt(iv, packet, header)
        cipher._iv = _next_iv(iv)
        conn._send(header + sealed)
    else:
        packet, mac = encryption.encrypt_packet(seq, header, packet)
        conn._send(packet + mac)
    conn._send_seq = (seq + 1) & 0xFFFFFFFF
    conn._rekey_bytes_sent += pktlen


_POOL = bytearray()
POOL_SIZE = 4096


def _padding(size: int) -> bytes:
    """*size* random bytes from a pool of ``os.urandom`` (one system call per 4 KiB, not per packet)."""
    if len(_POOL) < size:
        _POOL[:] = os.urandom(POOL_SIZE)
    out = bytes(_POOL[-size:])
    del _POOL[-size:]
    return out


def _next_iv(iv: bytes) -> bytes:
    """GCMCipher._update_iv: the 64-bit invocation counter after the 4-byte fixed field, plus one."""
    return iv[:4] + ((int.from_bytes(iv[4:], "big") + 1) & _COUNTER).to_bytes(8, "big")


def _aead(cipher: GCMCipher) -> AESGCM:
    """The cipher's AESGCM, made once per key (asyncssh makes one per packet)."""
    aead: AESGCM | None = getattr(cipher, "_gateway_aead", None)
    if aead is None:
        aead = AESGCM(cipher._key)
        setattr(cipher, "_gateway_aead", aead)  # noqa: B010
    return aead


def channel_writer(chan: SSHChannel[Any], datatype: asyncssh.DataType) -> Callable[[bytes], None]:
    """A write function for *chan*'s stdout (``datatype`` None) or stderr: ``chan.write`` made lean.

    Data that fits the client's window and one packet, with nothing queued
    before it, on a steady connection, is sent at once as one data packet;
    anything else goes through ``chan.write`` (queueing, splitting, waiting
    for the window or for a key exchange to end).
    """
    conn: Any = chan.get_connection()
    if not getattr(conn, LEAN_SENDS, False):  # serve --no-lean-path, or not this asyncssh: its own path

        def plain(data: bytes) -> None:
            chan.write(data, datatype)

        return plain
    kind = _DATA if datatype is None else bytes((MSG_CHANNEL_EXTENDED_DATA,))
    extended = b"" if datatype is None else datatype.to_bytes(4, "big")

    def write(data: bytes) -> None:
        size = len(data)
        if (
            0 < size <= chan._send_window
            and size <= chan._send_pktsize
            and chan._send_state == "open"
            and not chan._send_buf
            and not chan._send_paused
            and chan._send_chan is not None
            and _steady(conn)
        ):
            chan._send_window -= size
            _send(conn, kind + chan._send_chan.to_bytes(4, "big") + extended + size.to_bytes(4, "big") + data)
        else:
            chan.write(data, datatype)

    return write


# ---------------------------------------------------------------- receiving


def _channel_data(chan: Any, data: bytes) -> bool:
    """SSHChannel._process_data with *data* already parsed; False when asyncssh's own must run."""
    if (
        chan._recv_state != "open"
        or chan._recv_paused is not False
        or chan._encoding is not None
        or chan._send_state in ("close_pending", "closed")
    ):
        return False
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


def install_lean_channel(chan: SSHChannel[Any]) -> None:
    """Data packets for *chan* that reach its ``process_packet`` (ciphers other than AES-GCM) go lean too."""
    original = chan.process_packet

    def process_packet(pkttype: int, pktid: int, packet: SSHPacket) -> bool:
        if pkttype == MSG_CHANNEL_DATA and chan._recv_state == "open" and chan._recv_paused is False:
            position = packet._idx
            data = packet.get_string()
            packet.check_end()
            if _channel_data(chan, data):
                return True
            packet._idx = position
        return bool(original(pkttype, pktid, packet))

    setattr(chan, "process_packet", process_packet)  # noqa: B010 - the connection looks it up per packet


def install_lean_receive(conn: asyncssh.SSHServerConnection) -> None:
    """Whole AES-GCM packets after authentication, read at their header: IGNORE and channel data lean.

    asyncssh reads a header block (``_recv_pkthdr``), then the rest of the
    packet (``_recv_packet``), then dispatches it. Here, when the whole
    packet is already in, it is decrypted at once (the same key and nonce; a
    failed tag is left to asyncssh, which decrypts again, fails and reports
    it); an IGNORE is dropped, and data for a known channel goes to that
    channel, and only then is anything consumed. Anything else goes to
    asyncssh's own code from its first step, which decrypts the packet again
    (never re-entered mid-packet). The connection's ``data_received`` skips
    asyncssh's keepalive reset when no keepalive is set (the gateway sets none).
    """
    state: Any = conn  # asyncssh's internals, as they are in the pinned version
    read_header = conn._recv_pkthdr

    def recv_pkthdr() -> bool:
        encryption = state._recv_encryption
        inpbuf: bytes = state._inpbuf
        if type(encryption) is not GCMEncryption or not _steady(state):
            return bool(read_header())
        pktlen = int.from_bytes(inpbuf[:4], "big")
        end = 4 + pktlen + GCM_TAG
        if len(inpbuf) < end or pktlen > state._max_recv_pktlen or len(inpbuf) < state._recv_blocksize:
            return bool(read_header())  # not all in yet (or too long: asyncssh says so)
        cipher = encryption._cipher
        iv = cipher._iv
        try:
            plain = _aead(cipher).decrypt(iv, inpbuf[4:end], inpbuf[:4])
        except InvalidTag:
            return bool(read_header())  # asyncssh decrypts it again, fails, and disconnects
        payload = plain[1 : -plain[0]]
        kind = payload[:1]
        if kind == _IGNORE and int.from_bytes(payload[1:5], "big") == len(payload) - 5:
            _received(state, cipher, iv, end)
            return True
        if kind == _DATA and int.from_bytes(payload[5:9], "big") == len(payload) - 9:
            channel = state._channels.get(int.from_bytes(payload[1:5], "big"))
            if channel is not None and _channel_data(channel, payload[9:]):
                _received(state, cipher, iv, end)
                state._auth_final = True  # _finish_recv_packet for a connection-layer packet
                return True
        # Anything else (rare: window adjusts, requests, EOF, a key exchange) goes to asyncssh's own
        # code from its first step: nothing was consumed, and it decrypts the packet again itself.
        return bool(read_header())

    setattr(conn, "_recv_pkthdr", recv_pkthdr)  # noqa: B010 - looked up after every packet
    setattr(conn, "data_received", _reader(state))  # noqa: B010 - the transport looks it up per read


def _received(state: Any, cipher: GCMCipher, iv: bytes, end: int) -> None:
    """What asyncssh's _recv_packet and _finish_recv_packet do for a packet taken here: the nonce,
    the input consumed, the sequence number."""
    cipher._iv = _next_iv(iv)
    state._inpbuf = state._inpbuf[end:]
    if state._transport:
        state._recv_seq = (state._recv_seq + 1) & 0xFFFFFFFF


def _reader(state: Any) -> Callable[..., None]:
    """The connection's data_received, lean."""

    def data_received(data: bytes, datatype: Any = None) -> None:
        """SSHConnection.data_received and _recv_data, without the keepalive reset when there is none."""
        state._inpbuf += data
        if state._keepalive_interval or state._keepalive_timer:
            state._reset_keepalive_timer()
        try:
            while state._inpbuf and state._recv_handler():
                pass
        except DisconnectError as exc:
            state._send_disconnect(exc.code, exc.reason, exc.lang)
            state._force_close(exc)
        except Exception:
            state.internal_error()

    return data_received
