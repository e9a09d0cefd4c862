"""The door's thin client: hand sshd's session to `gateway serve`, then wait for its status.

``gateway dispatch`` (and ``gateway authorized-keys --fingerprint``) start here,
before anything heavy is imported. It runs on every connection through sshd,
so it imports only C modules (``_socket``, ``_signal``, ``_struct``,
``termios``) besides ``os``: about 1 ms on top of Python's own start-up,
where ``socket``, ``signal``, ``json`` and ``pathlib`` cost 15 to 20 ms.

The session request passes our stdin, stdout and stderr (SCM_RIGHTS) with the
principal, ``SSH_ORIGINAL_COMMAND``, ``SSH_CONNECTION``, ``TERM`` and the
ticket from the key line (the daemon believes only the ticket); the
daemon reads the terminal size from the descriptor itself. SIGWINCH becomes
a ``winch`` message, SIGHUP and SIGTERM a ``hangup``, and the daemon's last
message is the session's exit status (or the signal it died of). When no
daemon answers, the caller runs the same Session in-process instead; when
the daemon refuses (no valid ticket), that is the answer: one line, exit 1.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found,unused-ignore]  # no stubs; C module
import _socket
import _struct
import os
import termios

from gateway.dispatch import wire

HANGUP_GRACE = 10
# termios indexes and flags for raw mode (what tty.setraw does, without importing tty)
_IFLAG, _OFLAG, _CFLAG, _LFLAG, _CC = 0, 1, 2, 3, 6


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
    return values.get("door_socket") or values.get("state", "state").rstrip("/") + "/door.sock"


def keys_socket_path(values: dict[str, str]) -> str:
    """``--keys-socket``, or ``keys.sock`` beside the door socket."""
    door = socket_path(values)
    return values.get("keys_socket") or door[: door.rfind("/") + 1] + "keys.sock"


def connect(path: str) -> _socket.socket | None:
    """A connection to the daemon's door socket, or None when nothing answers."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def receive(sock: _socket.socket, pending: bytearray) -> list[str] | None:
    """The next message from the daemon; None at EOF or on garbage."""
    while True:
        try:
            found = wire.decode(bytes(pending))
        except ValueError:
            return None
        if found is not None:
            fields, rest = found
            pending[:] = rest
            return fields
        try:
            chunk = sock.recv(4096)
        except OSError:
            return None
        if not chunk or len(pending) > wire.LIMIT:
            return None
        pending += chunk


def _raw(fd: int) -> list[int | list[bytes | int]] | None:
    """Raw mode on sshd's PTY, set with TCSANOW (typed-ahead input is kept); the saved modes."""
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        return None
    mode = list(saved)
    mode[_IFLAG] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
    mode[_OFLAG] &= ~termios.OPOST
    mode[_CFLAG] = (mode[_CFLAG] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    mode[_LFLAG] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    cc = list(mode[_CC])
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    mode[_CC] = cc
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    return saved


def _restore(fd: int, saved: list[int | list[bytes | int]] | None) -> None:
    if saved is not None:
        try:  # noqa: SIM105 - contextlib would cost milliseconds to import here
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        except termios.error:
            pass


def _forward_signals(sock: _socket.socket) -> None:
    def send(message: bytes) -> None:
        try:  # noqa: SIM105 - contextlib would cost milliseconds to import here
            sock.send(message)
        except OSError:
            pass

    def hangup(*_: object) -> None:
        send(wire.encode("hangup"))
        _signal.alarm(HANGUP_GRACE)  # the daemon answers at once; never hang on a dead one

    _signal.signal(_signal.SIGWINCH, lambda *_: send(wire.encode("winch")))
    _signal.signal(_signal.SIGHUP, hangup)
    _signal.signal(_signal.SIGTERM, hangup)
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)


def _send_with_fds(sock: _socket.socket, message: bytes, fds: tuple[int, ...]) -> None:
    rights = _struct.pack(f"{len(fds)}i", *fds)
    sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])


def _handover(sock: _socket.socket, message: bytes, pending: bytearray) -> list[str] | None:
    """Send the request with our descriptors; the daemon's first answer (None: no answer)."""
    try:
        _send_with_fds(sock, message, (0, 1, 2))
    except OSError:
        return None
    answer = receive(sock, pending)
    if answer == ["accepted"]:
        _forward_signals(sock)
    return answer


def session(argv: list[str]) -> int | None:
    """Hand this forced command to the daemon; its exit status, or None to run it in-process."""
    names = {"--principal": "principal", "--policies": "policies", "--keys": "keys", "--state": "state"}
    values = parse(argv, {**names, "--door-socket": "door_socket", "--ticket": "ticket"})
    if values is None or "principal" not in values:
        return None
    sock = connect(socket_path(values))
    if sock is None:
        return None
    env = os.environ
    message = wire.encode(
        "session",
        values["principal"],
        env.get("SSH_ORIGINAL_COMMAND", ""),
        env.get("SSH_CONNECTION", ""),
        env.get("TERM", ""),
        values.get("ticket", ""),
        env.get("GATEWAY_REASON", ""),
    )
    pending = bytearray()
    saved = _raw(0) if os.isatty(0) else None
    try:
        answer = _handover(sock, message, pending)
        result = receive(sock, pending) if answer == ["accepted"] else answer
    finally:
        _restore(0, saved)
        sock.close()
    if answer is None or answer[:1] not in (["accepted"], ["refused"]):
        return None  # nothing ran: the in-process door takes over
    if answer[0] == "refused":
        os.write(2, answer[-1].encode("utf-8", "replace") + b"\n")
        return 1
    if result is None or len(result) < 2 or result[0] != "status" or not result[1].isdigit():
        os.write(2, b"gateway: the gateway went away during the session\n")
        return 255
    return int(result[1])


def key_line(argv: list[str]) -> str | None:
    """``authorized-keys --fingerprint FP``: the daemon's answer ("" for no such key), or None."""
    names = {"--policies": "policies", "--keys": "keys", "--state": "state", "--program": "program"}
    sockets = {"--door-socket": "door_socket", "--keys-socket": "keys_socket"}
    values = parse(argv, {**names, **sockets, "--fingerprint": "fingerprint", "--user": "login"})
    if values is None or "fingerprint" not in values:
        return None
    sock = connect(keys_socket_path(values))
    if sock is None:
        return None
    try:
        request = ("keyline", values["fingerprint"], values.get("program", ""), values.get("login", ""))
        sock.sendall(wire.encode(*request))
        answer = receive(sock, bytearray())
    except OSError:
        answer = None
    finally:
        sock.close()
    if answer is None or not answer or answer[0] != "line":
        return None
    return answer[1] if len(answer) > 1 else ""
