"""The door socket's wire format, shared by the thin client and the daemon.

Each message is a list of text fields as netstrings (``LEN:BYTES,``) ending in
a newline, so any text (a command with quotes, spaces or newlines) crosses
unchanged, and neither side needs ``json`` (the client must start fast).

- client -> daemon: ``session PRINCIPAL COMMAND CONNECTION TERM TICKET REASON`` (with
  three descriptors, on the door socket), or ``keyline FINGERPRINT PROGRAM``
  (on the keys socket); then ``winch`` / ``hangup``
- daemon -> client: ``accepted`` or ``refused TEXT``; then ``status N SIGNAL``,
  or ``line TEXT`` (``line`` with no text: no such key)

An absent value (no command, no TERM) is an empty field.
"""

from __future__ import annotations

LIMIT = 65536


def encode(*fields: str) -> bytes:
    """One message."""
    out = b""
    for field in fields:
        data = field.encode("utf-8", "surrogateescape")
        out += str(len(data)).encode() + b":" + data + b","
    return out + b"\n"


def decode(buffer: bytes) -> tuple[list[str], bytes] | None:
    """The first whole message in *buffer* and what follows it; None until one is complete.

    Raises ValueError for a malformed message.
    """
    fields: list[str] = []
    at = 0
    while True:
        if at >= len(buffer):
            return None
        if buffer[at : at + 1] == b"\n":
            return fields, buffer[at + 1 :]
        colon = buffer.find(b":", at, at + 12)
        if colon < 0:
            if len(buffer) - at >= 12:
                raise ValueError("bad length")
            return None
        size = int(buffer[at:colon])
        end = colon + 1 + size
        if size < 0 or size > LIMIT:
            raise ValueError("field too long")
        if len(buffer) <= end:
            return None
        if buffer[end : end + 1] != b",":
            raise ValueError("missing comma")
        fields.append(buffer[colon + 1 : end].decode("utf-8", "surrogateescape"))
        at = end + 1
