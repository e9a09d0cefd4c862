"""Attack 7: a process running as the door account talks the daemon into a principal.

Before the fix, any ``gw`` process could send ``session betty "debug web1 id"
"203.0.113.9 5555 127.0.0.1 22" ""`` over the door socket and get a root
shell as betty (or list every session as charlotte), with a forged source in
the audit. Now the daemon believes only a single-use ticket that sshd's key
lookup (another account, another socket) had minted for that very connection.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_openssh_door import DOOR_USER, KEYS_USER, Sshd, sshd  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

SEND = """
import socket, sys
sys.path.insert(0, sys.argv[1])
from gateway.dispatch import wire
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[2])
fields = sys.argv[3:]
if fields[0] == "session":
    socket.send_fds(sock, [wire.encode(*fields)], [0, 1, 2])
else:
    sock.sendall(wire.encode(*fields))
data = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    data += chunk
    found = wire.decode(data)
    if found is not None:
        print(found[0])
        break
"""


def _as(user: str, sshd: Sshd, socket_name: str, *fields: str) -> str:  # noqa: F811
    install, door = sshd.run_dir / "opt-gateway", sshd.run_dir / socket_name
    argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "/usr/bin/python3", "-S"]
    done = subprocess.run(
        [*argv, "-c", SEND, str(install), str(door), *fields],
        capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout.strip() + done.stderr.strip()


def _refusals(sshd: Sshd, mark: int) -> list[dict[str, object]]:  # noqa: F811
    events = sshd.gateway.since(mark, lambda e: e["event"] == "door.refused")
    return [e for e in events if e["event"] == "door.refused"]


@pytest.mark.parametrize(
    "fields",
    [
        ("session", "betty", "debug web1 id", "203.0.113.9 5555 127.0.0.1 22", ""),  # the seed's wire
        ("session", "betty", "debug web1 id", "203.0.113.9 5555 127.0.0.1 22", "", ""),
        ("session", "charlotte", "audit sessions list", "203.0.113.9 5555 127.0.0.1 22", "", "f" * 32),
    ],
)
def test_a_forged_session_is_refused_and_audited(sshd: Sshd, fields: tuple[str, ...]) -> None:  # noqa: F811
    mark = sshd.gateway.mark()
    answer = _as(DOOR_USER, sshd, "door.sock", *fields)
    assert "accepted" not in answer, answer
    refused = _refusals(sshd, mark)
    assert refused, answer
    new = sshd.gateway.since(mark)
    assert not [e for e in new if e["event"] in ("request.allow", "session.start")]
    assert not [e for e in new if "203.0.113.9" in str(e.get("peer", ""))]


def test_the_door_account_cannot_mint_tickets(sshd: Sshd) -> None:  # noqa: F811
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{sshd.keys['betty']}.pub"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    fingerprint = listed.stdout.split()[1]
    answer = _as(DOOR_USER, sshd, "keys.sock", "keyline", fingerprint, "")
    assert "PermissionError" in answer, answer  # the keys socket (0600) is not the door account's
    line = _as(KEYS_USER, sshd, "keys.sock", "keyline", fingerprint, "")
    assert "--ticket" not in line  # the keys account outside sshd gets a line, but no ticket


def test_a_used_ticket_is_worth_nothing(sshd: Sshd, web1: str) -> None:  # noqa: F811
    live = subprocess.Popen(sshd.argv("debug", web1, "sleep", "3"), stdin=subprocess.DEVNULL)
    ticket = ""
    deadline = time.monotonic() + 10
    while not ticket and time.monotonic() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                words = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--ticket" in words:
                ticket = words[words.index(b"--ticket") + 1].decode()
                break
        time.sleep(0.05)
    assert ticket, "the dispatch process was not seen"
    mark = sshd.gateway.mark()
    answer = _as(DOOR_USER, sshd, "door.sock", "session", "betty", f"debug {web1} id", "", "", ticket)
    assert "accepted" not in answer, answer
    assert live.wait(timeout=20) == 0  # the real session was not disturbed
    assert any("no valid ticket" in str(e["reason"]) for e in _refusals(sshd, mark))
