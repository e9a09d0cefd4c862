"""What each change proposed to asyncssh (docs/asyncssh-upstream.md) saves per echoed keystroke.

Three costs asyncssh 2.24.1 pays on every packet, timed here in isolation, as
microseconds per echoed keystroke (an echo is one packet received and one
sent; an asyncssh or OpenSSH client's keystroke is one data packet):

- a new ``AESGCM`` object for every encryption and decryption (the key is the
  same for the whole key-exchange period);
- an empty ``SSH_MSG_IGNORE`` before every packet sent, whatever the cipher
  (RFC 4251 9.3.1's countermeasure, which only CBC needs): one more padded,
  encrypted packet per packet;
- a packet debug line formatted for every packet before the logger drops it.

``python -m bench.upstream`` prints a table; medians of repeated runs.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import timeit

from asyncssh.logging import logger
from asyncssh.packet import SSHPacketLogger
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPEATS = 7
NUMBER = 20000
KEY, NONCE = os.urandom(16), os.urandom(12)
HEADER = (36).to_bytes(4, "big")
KEYSTROKE = os.urandom(36)  # a one-byte channel data packet, padded, as it is sealed


def _per_call_us(statement: object) -> float:
    runs = timeit.repeat(statement, number=NUMBER, repeat=REPEATS)  # type: ignore[arg-type]
    return statistics.median(runs) / NUMBER * 1e6


def measure() -> dict[str, float]:
    """Microseconds per echoed keystroke each change saves (two packets: one in, one out)."""
    kept = AESGCM(KEY)
    per_packet = _per_call_us(lambda: AESGCM(KEY).encrypt(NONCE, KEYSTROKE, HEADER))
    per_key = _per_call_us(lambda: kept.encrypt(NONCE, KEYSTROKE, HEADER))
    ignore = _per_call_us(lambda: kept.encrypt(NONCE, os.urandom(16), HEADER))

    class _Conn(SSHPacketLogger):
        _handler_names = {94: "MSG_CHANNEL_DATA"}
        logger = logger.get_child(context="conn=0")

    conn = _Conn()
    unformatted = _per_call_us(lambda: conn._log_packet("Sent", 94, 5, b"x" * 14, ""))
    return {
        "one AESGCM per key (2 packets)": round(2 * (per_packet - per_key), 2),
        "no IGNORE before each packet sent, unless CBC (1 packet; encryption only)": round(ignore, 2),
        "packet debug line only at debug level 3 (2 packets)": round(2 * unformatted, 2),
    }


def main() -> None:
    """Print the table (and the JSON on stderr)."""
    found = measure()
    print(json.dumps(found), file=sys.stderr)
    print("| change | saves, us per echoed keystroke |\n| --- | --- |")
    for name, value in found.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
