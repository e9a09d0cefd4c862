"""The gateway's sftp refusal, said in SFTP: sshd throws a subsystem's stderr away.

For a subsystem request sshd runs the forced command with the channel's
stderr ignored, so the refusal line the Session writes never reaches an
``sftp`` client through the OpenSSH door (it would print only "Connection
closed"). Here the door answers the client's ``SSH_FXP_INIT`` with a version
and every later request with ``SSH_FXP_STATUS`` (permission denied) carrying
that same line, which ``sftp`` prints. Bounded: a few packets, small ones,
a few seconds; then the session ends as refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from gateway.channel import Channel, read_bytes

FXP_INIT, FXP_VERSION, FXP_STATUS = 1, 2, 101
FX_PERMISSION_DENIED = 3
MAX_PACKET = 34000
MAX_PACKETS = 8
SECONDS = 5.0


def _string(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


def answer(packet: bytes, line: str) -> bytes:
    """The reply to one client packet (type byte first, length stripped)."""
    if packet[:1] == bytes([FXP_INIT]):
        body = bytes([FXP_VERSION]) + struct.pack(">I", 3)
    else:
        request_id = packet[1:5].rjust(4, b"\0")
        status = struct.pack(">I", FX_PERMISSION_DENIED)
        body = bytes([FXP_STATUS]) + request_id + status + _string(line.encode()) + _string(b"en")
    return struct.pack(">I", len(body)) + body


async def _packets(process: Channel, line: str) -> None:
    pending = b""
    for _ in range(MAX_PACKETS):
        while len(pending) < 4 or len(pending) < 4 + struct.unpack(">I", pending[:4])[0]:
            if len(pending) >= 4 and struct.unpack(">I", pending[:4])[0] > MAX_PACKET:
                return
            chunk = await read_bytes(process, MAX_PACKET)
            if not chunk:
                return
            pending += chunk
        size = struct.unpack(">I", pending[:4])[0]
        packet, pending = pending[4 : 4 + size], pending[4 + size :]
        process.stdout.write(answer(packet, line))
        await process.stdout.drain()


async def refuse_in_sftp(process: Channel, line: str) -> None:
    """Say *line* to an sftp client in its own protocol; never raises."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(_packets(process, line), SECONDS)
