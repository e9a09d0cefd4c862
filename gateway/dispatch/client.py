"""The door's thin client: hand sshd's session to `gateway serve`, then wait for its status.

``gateway dispatch`` (and ``gateway authorized-keys --fingerprint``) start here,
before anything heavy is imported: only the standard library, so that the
process sshd starts on every connection costs little more than Python itself.

The session op passes our stdin, stdout and stderr (SCM_RIGHTS) with the
principal, ``SSH_ORIGINAL_COMMAND``, ``SSH_CONNECTION`` and ``TERM``; the
daemon reads the terminal size from the descriptor itself. SIGWINCH becomes
a ``winch`` line, SIGHUP and SIGTERM a ``hangup`` line, and the daemon's last
line is the session's exit status (or the signal it died of). When no daemon
answers (or it refuses before accepting), the caller runs the same Session
in-process instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import termios
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LINE_LIMIT = 65536
HANGUP_GRACE = 10.0


def parse(argv: list[str], names: dict[str, str]) -> dict[str, str] | None:
    """``--flag VALUE`` pairs for the flags in *names*; None for anything else."""
    values: dict[str, str] = {}
    pairs = iter(argv)
    for flag in pairs:
        value = next(pairs, None)
        if flag not in names or value is None:
            return None
        values[names[flag]] = value
    return values


def socket_path(values: dict[str, str]) -> str:
    """``--door-socket``, or ``STATE/door.sock``."""
    return values.get("door_socket") or str(Path(values.get("state", "state")) / "door.sock")


def connect(path: str) -> socket.socket | None:
    """A connection to the daemon's door socket, or None when nothing answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def read_line(sock: socket.socket, pending: bytearray) -> dict[str, Any] | None:
    """The next JSON line from the daemon; None at EOF."""
    while b"\n" not in pending:
        try:
            chunk = sock.recv(4096)
        except OSError:
            return None
        if not chunk or len(pending) > LINE_LIMIT:
            return None
        pending += chunk
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    value = json.loads(line)
    return value if isinstance(value, dict) else None


@contextlib.contextmanager
def _raw_terminal() -> Iterator[None]:
    """Raw mode on sshd's PTY, set with TCSANOW: typed-ahead input is kept."""
    saved = termios.tcgetattr(0) if os.isatty(0) else None
    if saved is not None:
        tty.setraw(0, termios.TCSANOW)
    try:
        yield
    finally:
        if saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _forward_signals(sock: socket.socket) -> None:
    def send(line: bytes) -> None:
        with contextlib.suppress(OSError):
            sock.send(line)

    def hangup(*_: object) -> None:
        send(b"hangup\n")
        signal.alarm(int(HANGUP_GRACE))  # the daemon answers at once; never hang on a dead one

    signal.signal(signal.SIGWINCH, lambda *_: send(b"winch\n"))
    signal.signal(signal.SIGHUP, hangup)
    signal.signal(signal.SIGTERM, hangup)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def session(argv: list[str]) -> int | None:
    """Hand this forced command to the daemon; its exit status, or None to run it in-process."""
    names = {"--principal": "principal", "--policies": "policies", "--keys": "keys", "--state": "state"}
    values = parse(argv, {**names, "--door-socket": "door_socket"})
    if values is None or "principal" not in values:
        return None
    sock = connect(socket_path(values))
    if sock is None:
        return None
    header = {
        "op": "session",
        "principal": values["principal"],
        "command": os.environ.get("SSH_ORIGINAL_COMMAND"),
        "connection": os.environ.get("SSH_CONNECTION", ""),
        "term": os.environ.get("TERM"),
    }
    pending = bytearray()
    with sock, _raw_terminal():
        try:
            socket.send_fds(sock, [json.dumps(header).encode() + b"\n"], [0, 1, 2])
        except OSError:
            return None
        if read_line(sock, pending) != {"accepted": True}:
            return None  # refused before anything ran: the in-process door takes over
        _forward_signals(sock)
        result = read_line(sock, pending)
    if result is None:
        os.write(2, b"gateway: the gateway went away during the session\n")
        return 255
    return int(result.get("status", 255))


def key_line(argv: list[str]) -> str | None:
    """``authorized-keys --fingerprint FP``: the daemon's answer ("" for no key), or None."""
    names = {"--policies": "policies", "--keys": "keys", "--state": "state", "--program": "program"}
    values = parse(argv, {**names, "--fingerprint": "fingerprint", "--door-socket": "door_socket"})
    if values is None or "fingerprint" not in values:
        return None
    sock = connect(socket_path(values))
    if sock is None:
        return None
    with sock:
        try:
            request = {
                "op": "keyline",
                "fingerprint": values["fingerprint"],
                "program": values.get("program"),
            }
            sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            return None
        answer = read_line(sock, bytearray())
    if answer is None or "line" not in answer:
        return None
    return str(answer["line"] or "")
