"""The session core in-process: a fake Channel and Connection, every refusal kind, the audit records.

No SSH, no sshd, no Docker: the Engine is faked at its boundary (``inspect``,
``running``). Everything else is the real thing: the policy loaded from
files, the audit chain on disk, the Session, the front door, the OpenSSH
door's entry (``run_door_session``) and the SSH server's protocol hooks.
These run first in CI: they are fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncssh
import pytest
from asyncssh.packet import SSHPacket, String

from gateway.auth import GatewayServer
from gateway.channel import Handler, Received, pump_received
from gateway.dispatch.main import run_door_session
from gateway.dispatch.stdio import FdProcess
from gateway.docker.engine import ContainerInfo
from gateway.errors import AuditUnavailable, ContainerNotFound, DockerUnavailable
from gateway.events import Event, RefusalKind
from gateway.runtime import Runtime
from gateway.session import Session
from gateway.settings import Settings
from gateway.sshhooks import install_refusal_hooks

POLICY = """\
version: 1
actions:
  debug: {type: shell, allow_args: true}
  memory: {type: host, command: ["true"]}
  why: {type: host, command: ["true"]}
  twice: {type: host, command: ["true"]}
  audit: {type: audit}
grants:
  - principals: [betty]
    actions: [debug]
    targets: ["web*"]
  - principals: [betty]
    actions: [memory, audit]
  - principals: [betty]
    actions: [why]
    reason: required
  - principals: [betty]
    actions: [twice]
    approval: [{from: [dan], count: 1}]
  - principals: [dan]
    actions: [memory]
"""


class FakeEngine:
    """The Engine API boundary: a few containers by name, or no engine at all."""

    def __init__(self) -> None:
        self.down = False
        self.containers = {
            "web1": ContainerInfo("c" * 64, "web1", True, 4242, "demo", "sha256:1"),
            "web2": ContainerInfo("d" * 64, "web2", False, 0, "demo", "sha256:1"),
            "db1": ContainerInfo("e" * 64, "db1", True, 4343, "demo", "sha256:1"),
        }

    async def inspect(self, name: str) -> ContainerInfo:
        if self.down:
            raise DockerUnavailable("no engine")
        if name not in self.containers:
            raise ContainerNotFound(name)
        return self.containers[name]

    async def running(self) -> list[tuple[str, dict[str, str]]]:
        return [(c.name, {}) for c in self.containers.values() if c.running]

    async def close(self) -> None:
        return None


class _Out:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes, /) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def backlog(self) -> int:
        return 0


class FakeChannel:
    """A client that sent *command* (or asked for *subsystem*), then *typed*, then hung up."""

    def __init__(self, command: str | None = None, *, subsystem: str | None = None, env: Any = None) -> None:
        self.command, self.subsystem, self.env = command, subsystem, dict(env or {})
        self.stdout, self.stderr = _Out(), _Out()
        self.typed: list[Received] = []
        self.status: int | None = None
        self.closed = asyncio.Event()

    async def receive(self, n: int = 65536, /) -> Received:
        return self.typed.pop(0) if self.typed else b""

    async def pump(self, handler: Handler, /) -> None:
        await pump_received(self, handler)

    async def wait_closed(self) -> None:
        await self.closed.wait()

    def get_terminal_type(self) -> str | None:
        return None

    def get_terminal_size(self) -> tuple[int, int, int, int]:
        return 0, 0, 0, 0

    def exit(self, status: int, /) -> None:
        self.status = status
        self.closed.set()

    def exit_with_signal(self, signal: str, /) -> None:
        self.status = 255
        self.closed.set()


class FakeConnection:
    """A connection some transport authenticated."""

    def __init__(self, rt: Runtime, principal: str, action: str, target: str | None = None) -> None:
        self.rt, self.principal, self.action, self.login_target = rt, principal, action, target
        self.session_id = secrets.token_hex(8)
        self.peer, self.peer_host, self.opened = "127.0.0.1:40000", "127.0.0.1", time.monotonic()

    def audit(self, event: Event, *, durable: bool = False, **fields: Any) -> None:
        self.rt.audit.emit(event, durable=durable, session_id=self.session_id, peer=self.peer, **fields)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    (tmp_path / "keys").mkdir()
    for who in ("betty", "dan"):
        line = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        (tmp_path / "keys" / f"{who}.pub").write_text(line)
    settings = Settings(
        policies=tmp_path / "policies", keys=tmp_path / "keys", state=tmp_path / "state", approval_wait=0.2
    )
    runtime = Runtime.start(settings)
    runtime.engine = FakeEngine()  # type: ignore[assignment]
    yield runtime
    runtime.audit.close()


def _records(rt: Runtime) -> list[dict[str, Any]]:
    files = sorted((rt.settings.state / "audit").glob("audit-*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def _session(rt: Runtime, channel: FakeChannel, action: str, principal: str = "betty") -> FakeChannel:
    asyncio.run(Session(FakeConnection(rt, principal, action), channel, 1).run())
    return channel


def _refused(
    rt: Runtime, channel: FakeChannel, kind: RefusalKind, notices: int = 0
) -> tuple[str, dict[str, Any]]:
    """The one line the client saw (after *notices*), the request.deny record; exit 1, nothing allowed."""
    assert channel.status == 1
    lines = channel.stderr.data.decode().splitlines()[notices:]
    assert len(lines) == 1 and lines[0].startswith("gateway: "), lines
    records = _records(rt)
    assert not [r for r in records if r["event"] == Event.REQUEST_ALLOW]
    (deny,) = [r for r in records if r["event"] == Event.REQUEST_DENY]
    assert deny["kind"] == kind and deny["reason"]
    return lines[0], deny


#: every refusal of an action points to help, which every principal with a key may use
HINT = " (ssh help@HOST lists what you may do)"


@pytest.mark.parametrize(
    ("action", "command", "line"),
    [
        ("debug", "web9", "gateway: debug web9: permission denied" + HINT),  # no such container
        ("debug", "db1", "gateway: debug db1: permission denied" + HINT),  # exists, not granted: the same
        ("debug", "web2", "gateway: web2 is not running"),
        ("nosuch", None, "gateway: nosuch: permission denied" + HINT),
        ("debug", None, "gateway: debug needs a target: ssh debug@HOST TARGET" + HINT),
    ],
)
def test_action(rt: Runtime, action: str, command: str | None, line: str) -> None:
    seen, deny = _refused(rt, _session(rt, FakeChannel(command), action), RefusalKind.ACTION)
    assert seen == line
    assert deny["principal"] == "betty" and deny["action"] == action and deny["channel"] == 1


def test_action_when_the_engine_is_down(rt: Runtime) -> None:
    rt.engine.down = True  # type: ignore[attr-defined]
    seen, _ = _refused(rt, _session(rt, FakeChannel("web1"), "debug"), RefusalKind.ACTION)
    assert "Docker engine is not reachable" in seen


@pytest.mark.parametrize(
    "command", ["web1 \x1b[31m", "web1 'unbalanced", "web1 " + " ".join(["a"] * 300), "x" * 5000]
)
def test_command(rt: Runtime, command: str) -> None:
    _refused(rt, _session(rt, FakeChannel(command), "debug"), RefusalKind.COMMAND)


def test_command_for_the_audit_action(rt: Runtime) -> None:
    seen, _ = _refused(rt, _session(rt, FakeChannel("sessions rm x"), "audit"), RefusalKind.COMMAND)
    assert seen.startswith("gateway: audit: ")


def test_subsystem_and_scp(rt: Runtime) -> None:
    seen, _ = _refused(rt, _session(rt, FakeChannel(subsystem="sftp"), "memory"), RefusalKind.SUBSYSTEM)
    assert seen == "gateway: sftp is not available"


def test_scp(rt: Runtime) -> None:
    seen, _ = _refused(rt, _session(rt, FakeChannel("scp -t /tmp/x"), "memory"), RefusalKind.SCP)
    assert seen == "gateway: scp is not available"


def test_reason(rt: Runtime) -> None:
    _refused(rt, _session(rt, FakeChannel(), "why"), RefusalKind.REASON)


def test_approval(rt: Runtime) -> None:
    seen, _ = _refused(rt, _session(rt, FakeChannel(), "twice"), RefusalKind.APPROVAL, notices=1)
    assert "was not approved within 0.2s; nothing was run" in seen
    assert any(r["event"] == Event.REQUEST_FILED for r in _records(rt))


def test_session_limit(rt: Runtime) -> None:
    rt.draining = True
    seen, _ = _refused(rt, _session(rt, FakeChannel(), "memory"), RefusalKind.SESSION_LIMIT)
    assert seen == "gateway: the gateway is shutting down"


def test_audit_down_runs_nothing(rt: Runtime) -> None:
    (rt.settings.state / "audit" / "chain.state").unlink()  # the chain cannot be sealed any more
    with pytest.raises(AuditUnavailable):
        rt.audit.emit(Event.SERVER_START)
    channel = _session(rt, FakeChannel(), "memory")
    assert channel.status == 1
    assert channel.stderr.data.decode() == "gateway: the audit log is unavailable; nothing was run\n"


def test_an_allowed_session_is_recorded_start_to_end(rt: Runtime) -> None:
    channel = _session(rt, FakeChannel(), "memory")
    assert channel.status == 0, channel.stderr.data
    events = [r["event"] for r in _records(rt)]
    assert events[-3:] == [Event.REQUEST_ALLOW, Event.SESSION_START, Event.SESSION_END]


def _door(rt: Runtime, principal: str, original: str | None, login: str = "") -> tuple[int, str]:
    """The OpenSSH door's entry, on real descriptors (pipes standing in for sshd's)."""
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.close(stdin_w)
    process = FdProcess(None, (stdin_r, out_w, err_w))

    async def go() -> None:
        with process.attached():
            await run_door_session(rt, principal, original, "127.0.0.1 40000 127.0.0.1 22", process, login)

    asyncio.run(go())
    for fd in (stdin_r, out_w, err_w):
        os.close(fd)
    with os.fdopen(err_r, "rb") as err, os.fdopen(out_r, "rb"):
        return process.status, err.read().decode()


def test_usage_through_the_door(rt: Runtime) -> None:
    status, said = _door(rt, "betty", None)
    assert (status, said) == (1, "gateway: usage: ssh USER@HOST ACTION [TARGET] [ARGS...]\n")
    (deny,) = [r for r in _records(rt) if r["event"] == Event.REQUEST_DENY]
    assert deny["kind"] == RefusalKind.USAGE and deny["door"] == "openssh"


def test_the_door_takes_the_action_from_the_login_or_the_first_word(rt: Runtime) -> None:
    assert _door(rt, "betty", "web9", login="debug") == (1, f"gateway: debug web9: permission denied{HINT}\n")
    status, said = _door(rt, "dan", "", login="memory")
    assert (status, said) == (0, "")
    status, said = _door(rt, "dan", "memory")
    assert (status, said) == (0, "")
    status, said = _door(rt, "dan", "/usr/lib/openssh/sftp-server")
    assert status == 1 and said == "gateway: sftp is not available\n"
    opens = [r for r in _records(rt) if r["event"] == Event.CONNECTION_OPEN]
    assert opens and all(r["door"] == "openssh" for r in opens)


def _server(rt: Runtime) -> GatewayServer:
    server = GatewayServer(rt)
    server.principal, server.action = "betty", "memory"
    return server


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda s: s.connection_requested("10.0.0.1", 22, "127.0.0.1", 1), RefusalKind.DIRECT_TCPIP),
        (lambda s: s.server_requested("127.0.0.3", 8080), RefusalKind.TCPIP_FORWARD),
        (lambda s: s.unix_connection_requested("/run/docker.sock"), RefusalKind.DIRECT_STREAMLOCAL),
        (lambda s: s.unix_server_requested("/tmp/x.sock"), RefusalKind.STREAMLOCAL_FORWARD),
        (lambda s: s.tun_requested(0), RefusalKind.TUN),
        (lambda s: s.tap_requested(0), RefusalKind.TAP),
    ],
)
def test_forwarding_and_tunnels(rt: Runtime, call: Any, kind: RefusalKind) -> None:
    server = _server(rt)
    try:
        assert call(server) is False
    except asyncssh.ChannelOpenError as exc:
        assert exc.reason.startswith("gateway: ")
    (deny,) = [r for r in _records(rt) if r["event"] == Event.REQUEST_DENY]
    assert (deny["kind"], deny["principal"], deny["action"]) == (kind, "betty", "memory")


@pytest.mark.parametrize(
    ("handler", "payload", "kind"),
    [
        ("_process_env_request", String(b"LD_PRELOAD") + String(b"/tmp/x.so"), RefusalKind.ENV),
        ("_process_auth_agent_req_at_openssh_dot_com_request", b"", RefusalKind.AGENT_FORWARDING),
        ("_process_x11_req_request", b"", RefusalKind.X11_FORWARDING),
    ],
)
def test_channel_requests(rt: Runtime, handler: str, payload: bytes, kind: RefusalKind) -> None:
    server = _server(rt)
    chan = SimpleNamespace(_env={})
    install_refusal_hooks(chan, server.refused)  # type: ignore[arg-type]
    assert getattr(chan, handler)(SSHPacket(payload)) is False
    (deny,) = [r for r in _records(rt) if r["event"] == Event.REQUEST_DENY]
    assert deny["kind"] == kind
    assert "/tmp/x.so" not in json.dumps(deny)  # an env value is never logged


def test_session_and_connection_limits(rt: Runtime) -> None:
    server = _server(rt)
    server._conn = object()  # type: ignore[assignment]
    server._sessions = rt.settings.max_sessions_per_connection
    with pytest.raises(asyncssh.ChannelOpenError):
        server.session_requested()
    server.peer_host = "127.0.0.9"
    server._turn_away("too many connections from 127.0.0.9")
    kinds = [r["kind"] for r in _records(rt) if r["event"] == Event.REQUEST_DENY]
    assert kinds == [RefusalKind.SESSION_LIMIT, RefusalKind.CONNECTION_LIMIT]


def test_every_refusal_kind_is_covered_here() -> None:
    text = Path(__file__).read_text()
    missing = [kind.name for kind in RefusalKind if f"RefusalKind.{kind.name}" not in text]
    assert (
        missing == ["AUDIT"] or not missing
    )  # AUDIT: the record cannot be written; its test checks the line


def test_a_gated_grant_is_refused_by_a_process_outside_the_fleet_its_state_is_in(rt: Runtime) -> None:
    """The in-process door on a fleet member's state: no request filed where no approver would see it."""
    (rt.settings.state / "fleet-member").write_text("a\n")
    outside = Runtime.start(rt.settings)
    outside.engine = rt.engine
    try:
        seen, _ = _refused(outside, _session(outside, FakeChannel(), "twice"), RefusalKind.APPROVAL)
        assert seen == "gateway: approvals are unavailable: the fleet database does not answer"
        assert not [r for r in _records(outside) if r["event"] == Event.REQUEST_FILED]
        assert _session(outside, FakeChannel(), "memory").status == 0  # plain grants run
    finally:
        outside.audit.close()
