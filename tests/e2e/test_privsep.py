"""Privilege separation (``serve --net-user``), from the outside: what the processes on the port hold,
the real flows through the monitor, and a compromised network worker's forged requests.

The "compromised worker" is the real one, stopped (SIGSTOP), whose own socket to the monitor the test
takes with ``pidfd_getfd`` and speaks on: exactly what code running in that process could say.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncssh.packet import Boolean, Byte, String

from gateway.dispatch import wire
from gateway.hostkey import HOST_KEY_NAME
from tests.e2e.conftest import Gateway, spawn

pytestmark = pytest.mark.e2e

ACCOUNT = "gateway-net"
DOCKER_SOCKET = "/var/run/docker.sock"
SYS_PIDFD_GETFD = 438


@pytest.fixture(scope="module")
def account() -> str:
    """The network workers' account (scripts/setup makes it; made here when missing)."""
    try:
        pwd.getpwnam(ACCOUNT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", ACCOUNT],
            check=True,
        )  # fmt: skip
    return ACCOUNT


def _fd_links(pid: int, above: int = -1) -> set[str]:
    """What each of *pid*'s descriptors (those numbered above *above*) names (``socket:[INODE]``, ...)."""
    return {str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir() if int(fd.name) > above}


def _listening_inodes(port: int) -> set[str]:
    """``socket:[INODE]`` of every listening TCP socket on *port*."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    return inodes


def _listeners(port: int) -> list[int]:
    """Every process holding a listening TCP socket on *port* (from /proc/net/tcp and each fd table)."""
    inodes = _listening_inodes(port)
    holders = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = _fd_links(int(entry.name))
        except OSError:
            continue
        if links & inodes:
            holders.append(int(entry.name))
    return holders


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _as_account(uid: int, gid: int, path: Path | str) -> str:
    """What opening *path* for reading gives the worker's identity: "opened" or the error."""
    probe = "import sys\ntry:\n open(sys.argv[1], 'rb').close(); print('opened')\nexcept OSError as e: print(e.strerror)"
    result = subprocess.run(
        ["/usr/bin/python3", "-S", "-c", probe, str(path)], user=uid, group=gid, extra_groups=[],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    return result.stdout.strip()


@pytest.fixture
def separated(own_gateway: Any, account: str) -> Gateway:
    gw: Gateway = own_gateway("--net-user", account, "--workers", "2")
    return gw


def test_every_process_on_the_port_is_unprivileged(separated: Gateway) -> None:
    holders = _listeners(separated.port)
    assert len(holders) == 2, holders  # one network worker per monitor
    assert separated.proc.pid not in holders
    uid = pwd.getpwnam(ACCOUNT).pw_uid
    gid = pwd.getpwnam(ACCOUNT).pw_gid
    for pid in holders:
        status = _status(pid)
        assert status["Uid"].split() == [str(uid)] * 4, status["Uid"]
        assert status["Gid"].split() == [str(gid)] * 4
        assert status["Groups"] == ""
        assert status["CapEff"] == status["CapPrm"] == status["CapAmb"] == "0000000000000000"
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2"
        held = _fd_links(pid, above=2)  # beyond stdin, stdout and stderr: sockets and the event loop's
        assert all(p.split(":")[0] in ("socket", "anon_inode") for p in held), held
    state = separated.state
    for secret in (state / HOST_KEY_NAME, state / "audit" / "initial.key", DOCKER_SOCKET):
        assert Path(secret).exists(), secret
        assert _as_account(uid, gid, secret) == "Permission denied", secret


def test_the_real_flows_pass_through_the_monitor(separated: Gateway, web1: str) -> None:
    mark = separated.mark()
    result = separated.ssh("hello")
    assert (result.stdout, result.stderr, result.returncode) == ("out\n", "err\n", 3)
    refused = separated.ssh("memory", key="eve")
    assert refused.returncode != 0 and "permission denied" in refused.stderr, refused.stderr
    unknown = separated.ssh("memory", key="mallory")
    assert unknown.returncode == 255
    child = spawn(separated.ssh_argv("debug", web1, opts=("-t",)), size=(33, 101))
    child.sendline("stty size; tty; exit 7")
    child.expect("33 101")
    child.expect("/dev/pts/")
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 7
    events = separated.since(mark, lambda e: e["event"] == "session.end" and e.get("exit_status") == 7)
    accepted = [e for e in events if e["event"] == "auth.accept"]
    assert {e["principal"] for e in accepted} >= {"betty", "eve"}
    assert any(e["event"] == "auth.reject" and e.get("reason") == "unknown key" for e in events)
    allowed = [e for e in events if e["event"] == "request.allow"]
    assert {e["action"] for e in allowed} >= {"hello", "debug"}
    assert all(e.get("door") is None for e in allowed)


def pexpect_eof() -> Any:
    import pexpect  # noqa: PLC0415

    return pexpect.EOF


class Worker:
    """A network worker, stopped, and its socket to the monitor in the test's hands."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        config = json.loads(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[3])
        os.kill(pid, signal.SIGSTOP)
        self.sock = socket.socket(fileno=self.take(int(config["link_fd"])))
        self.sock.settimeout(5)

    def take(self, number: int) -> int:
        """A copy of the worker's descriptor *number* (``pidfd_getfd``)."""
        pidfd = os.pidfd_open(self.pid)
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.syscall(SYS_PIDFD_GETFD, pidfd, number, 0))
        os.close(pidfd)
        assert fd >= 0, os.strerror(ctypes.get_errno())
        return fd

    def listener(self, port: int) -> socket.socket:
        """The worker's own listening socket."""
        inodes = _listening_inodes(port)
        number = next(
            int(fd.name) for fd in Path(f"/proc/{self.pid}/fd").iterdir() if str(fd.readlink()) in inodes
        )
        return socket.socket(fileno=self.take(number))

    def ask(self, *fields: str, fds: list[int] | None = None) -> list[str]:
        socket.send_fds(self.sock, [wire.encode(*fields)], fds or [])
        found = wire.decode(self.sock.recv(1 << 18))
        assert found is not None
        return found[0]

    def release(self) -> None:
        self.sock.close()
        os.kill(self.pid, signal.SIGCONT)


@pytest.fixture
def compromised(separated: Gateway) -> Iterator[tuple[Gateway, Worker, str]]:
    """A worker, stopped while dan is logged in through it (``ssh -N``); dan's connection id."""
    mark = separated.mark()
    dan = subprocess.Popen(separated.ssh_argv("memory", key="dan", opts=("-N",)))
    try:
        events = separated.since(mark, lambda e: e["event"] == "auth.accept" and e["principal"] == "dan")
        connection = next(e["session_id"] for e in events if e["event"] == "auth.accept")
        pid = next(p for p in _listeners(separated.port) if _holds_peer_of(p, dan.pid))
        worker = Worker(pid)
        try:
            yield separated, worker, connection
        finally:
            worker.release()
    finally:
        dan.terminate()
        dan.wait(timeout=10)


def _holds_peer_of(worker: int, client: int) -> bool:
    """Whether *worker* holds the server side of a connection *client* made (by the client's port)."""
    client_inodes = _fd_links(client)
    ports = set()
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    for line in rows:
        fields = line.split()
        if f"socket:[{fields[9]}]" in client_inodes:
            ports.add(fields[1])
    worker_inodes = _fd_links(worker)
    return any(line.split()[2] in ports and f"socket:[{line.split()[9]}]" in worker_inodes for line in rows)


def _session_fds() -> tuple[list[int], list[int]]:
    """What a worker passes with a session request (control socket, three pipes), and its own ends."""
    ours, theirs = socket.socketpair()
    (in_r, in_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
    return [theirs.detach(), in_r, out_w, err_w], [ours.detach(), in_w, out_r, err_r]


def test_a_forged_session_for_another_principal_is_refused_and_audited(
    compromised: tuple[Gateway, Worker, str], web1: str
) -> None:
    gw, worker, dans = compromised
    mark = gw.mark()
    passed, kept = _session_fds()
    try:
        reply = worker.ask("session", dans, "betty", f"debug {web1}", "", "", "", fds=passed)
    finally:
        for fd in passed + kept:
            os.close(fd)
    assert reply[0] == "refused" and "nothing was run" in reply[1]
    events = gw.since(mark, lambda e: e["event"] == "door.refused")
    forged = [e for e in events if e["event"] == "door.refused"]
    assert forged and forged[0]["claimed_principal"] == "betty"
    assert "did not authenticate" in forged[0]["reason"]
    assert forged[0]["socket"] == "monitor" and forged[0]["uid"] == pwd.getpwnam(ACCOUNT).pw_uid
    assert not [e for e in events if e["event"] in ("request.allow", "session.start")]


def test_a_worker_cannot_make_up_connections_or_authentications(
    compromised: tuple[Gateway, Worker, str],
) -> None:
    gw, worker, dans = compromised
    mark = gw.mark()
    passed, kept = _session_fds()
    try:
        unknown = worker.ask("session", "0" * 16, "betty", "memory", "", "", "", fds=passed)
    finally:
        for fd in passed + kept:
            os.close(fd)
    assert unknown[0] == "refused"
    # a signature over a session id the monitor never signed, for a known connection
    assert worker.ask("auth", dans, "ab" * 32, "32" * 8, "00")[0] == "no"
    # a connection that is not a TCP connection on the gateway's port
    left, right = socket.socketpair()
    with left, right:
        assert worker.ask("open", fds=[left.fileno()])[0] == "no"
    assert worker.ask("nonsense", dans)[0] == "no"
    reasons = [e["reason"] for e in gw.since(mark, lambda e: "not a request" in str(e.get("reason")))
               if e["event"] == "door.refused"]  # fmt: skip
    assert any("did not open" in r for r in reasons), reasons
    assert any("did not sign" in r for r in reasons), reasons
    assert any("not on the gateway's port" in r for r in reasons), reasons
    assert any("not a request" in r for r in reasons), reasons
    time.sleep(0.1)


def test_a_network_worker_killed_is_replaced_with_its_monitor(separated: Gateway) -> None:
    """kill -9 of a network worker: its monitor stops (failed), the supervisor starts both again, and the
    port keeps serving; the new worker is as unprivileged as the old."""
    mark = separated.mark()
    before = set(_listeners(separated.port))
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = set(_listeners(separated.port))
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.1)
    now = set(_listeners(separated.port))
    assert len(now) == 2 and victim not in now, now
    exited = [
        e
        for e in separated.since(mark, lambda e: e["event"] == "worker.exited")
        if e["event"] == "worker.exited"
    ]
    assert exited, "the supervisor records the monitor that stopped"
    for pid in now:
        status = _status(pid)
        assert (status["CapEff"], status["NoNewPrivs"], status["Seccomp"]) == ("0000000000000000", "1", "2")
    for _ in range(4):  # both workers answer
        assert separated.ssh("hello").returncode == 3


def test_a_worker_cannot_run_before_authentication_or_pass_off_a_bad_signature(
    compromised: tuple[Gateway, Worker, str],
) -> None:
    """A connection the worker really accepted (taken from its own listening socket) and opened through
    the monitor: no session before someone authenticates; a signature that does not verify, over a hash
    the monitor did sign, names no one; and what the monitor cannot read is answered, never its end."""
    gw, worker, _dans = compromised
    mark = gw.mark()
    clients, accepted = [], None
    with worker.listener(gw.port) as listener:
        listener.settimeout(0.2)
        for _ in range(40):  # the kernel spreads connections over both workers' sockets
            clients.append(socket.create_connection(("127.0.0.1", gw.port)))
            try:
                accepted, _addr = listener.accept()
                break
            except TimeoutError:
                continue
    assert accepted is not None
    try:
        opened = worker.ask("open", fds=[accepted.fileno()])
        assert opened[0] == "ok", opened
        connection = opened[1]
        passed, kept = _session_fds()
        try:
            early = worker.ask("session", connection, "dan", "memory", "", "", "", fds=passed)
        finally:
            for fd in passed + kept:
                os.close(fd)
        assert early[0] == "refused"
        exchange = os.urandom(32)
        assert worker.ask("sign", exchange.hex())[0] == "sig"
        blob = base64.b64decode(gw.keys["dan"].with_suffix(".pub").read_text().split()[1])
        request = (Byte(50) + String(b"memory") + String(b"ssh-connection") + String(b"publickey")
                   + Boolean(True) + String(b"ssh-ed25519") + String(blob))  # fmt: skip
        forged = String(b"ssh-ed25519") + String(bytes(64))
        assert worker.ask("auth", connection, exchange.hex(), request.hex(), forged.hex())[0] == "no"
        assert worker.ask("sign", "ab" * 100)[0] == "no"  # not an exchange hash
        assert worker.ask("refused", connection, "no-such-kind", "{}")[0] == "no"
        worker.sock.send(b"not a netstring")
        found = wire.decode(worker.sock.recv(1 << 16))
        assert found is not None and found[0][0] == "no"
    finally:
        accepted.close()
        for client in clients:
            client.close()
    events = gw.since(mark, lambda e: "cannot read (" in str(e.get("reason")))
    reasons = [e["reason"] for e in events if e["event"] == "door.refused"]
    for expected in ("where no one authenticated", "does not verify", "not an exchange hash",
                     "refusal report the monitor cannot read", "a request the monitor cannot read"):  # fmt: skip
        assert any(expected in r for r in reasons), (expected, reasons)
    assert not [e for e in events if e["event"] in ("auth.accept", "request.allow")]
