"""Everything that is not granted: one line on stderr, non-zero exit, an audit event."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, copy_opts

pytestmark = pytest.mark.e2e


def _denials(gateway: Gateway, mark: int, kind: str) -> list[dict[str, Any]]:
    events = gateway.since(mark, lambda e: e["event"] == "request.deny" and e.get("kind") == kind)
    return [e for e in events if e["event"] == "request.deny" and e.get("kind") == kind]


def _one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_and_ungranted_targets_get_the_same_line(
    gateway: Gateway, web1: str, containers: Any
) -> None:
    other = containers.run("db9")  # exists, but betty's grant is for web* only
    mark = gateway.mark()
    missing = _one_line_refusal(gateway.ssh("debug", "nosuchcontainer"))
    ungranted = _one_line_refusal(gateway.ssh("debug", other))
    assert missing.replace("nosuchcontainer", "X") == ungranted.replace(other, "X")
    denials = _denials(gateway, mark, "action")
    assert {d["target"] for d in denials} >= {"nosuchcontainer", other}
    assert all(d["principal"] == "betty" for d in denials)


def test_principal_without_grant(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    line = _one_line_refusal(gateway.ssh("debug", web1, key="eve"))
    assert line == f"gateway: debug {web1}: permission denied (ssh help@HOST lists what you may do)"
    (denial,) = _denials(gateway, mark, "action")
    assert denial["principal"] == "eve"
    assert denial["reason"]


def test_unknown_action(gateway: Gateway, web1: str) -> None:
    line = _one_line_refusal(gateway.ssh("nosuchaction", web1))
    assert line == f"gateway: nosuchaction {web1}: permission denied (ssh help@HOST lists what you may do)"


def test_granted_but_not_running(gateway: Gateway, stopped: str) -> None:
    line = _one_line_refusal(gateway.ssh("debug", stopped))
    assert "not running" in line


def test_host_action_and_its_refusals(gateway: Gateway) -> None:
    result = gateway.ssh("memory")
    assert result.returncode == 0
    assert "Mem:" in result.stdout
    split = gateway.ssh("hello")
    assert (split.returncode, split.stdout, split.stderr) == (3, "out\n", "err\n")
    assert "takes no arguments" in _one_line_refusal(gateway.ssh("memory", "extra"))


def test_container_action_needs_a_target(gateway: Gateway) -> None:
    assert "needs a target" in _one_line_refusal(gateway.ssh("debug"))


def test_args_refused_where_not_allowed(gateway: Gateway, web1: str) -> None:
    assert "arguments are not allowed" in _one_line_refusal(gateway.ssh("console", web1, "id"))


@pytest.mark.parametrize(
    "target",
    ["; id", "$(id)", "`id`", "../web1", "web1;id", "web1 && id", "web1\nid"],
)
def test_injection_in_the_target_runs_nothing(
    gateway: Gateway, web1: str, target: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    evil = target.replace("id", f"touch {marker}")
    result = gateway.ssh("debug", evil)
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert not marker.exists()


def test_control_characters_refused(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    line = _one_line_refusal(gateway.ssh("debug", web1, "echo", "a\x1b]0;x\x07"))
    assert "control characters" in line
    assert _denials(gateway, mark, "command")


def test_unknown_key_is_permission_denied(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    result = gateway.ssh("debug", web1, key="mallory")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr
    rejects = [
        e for e in gateway.since(mark, lambda e: e["event"] == "auth.reject") if e["event"] == "auth.reject"
    ]
    assert rejects and rejects[0]["fingerprint"].startswith("SHA256:")


def test_remote_forwarding_refused(gateway: Gateway) -> None:
    mark = gateway.mark()
    result = gateway.ssh("memory", opts=("-R", "0:127.0.0.1:9", "-o", "ExitOnForwardFailure=yes"))
    assert result.returncode == 255
    assert "forwarding failed" in result.stderr
    assert _denials(gateway, mark, "tcpip-forward")


def test_local_forwarding_refused(gateway: Gateway) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local_port = probe.getsockname()[1]
    mark = gateway.mark()
    argv = gateway.ssh_argv("memory", opts=("-N", "-L", f"{local_port}:127.0.0.1:{gateway.port}"))
    tunnel = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        data = b"unset"
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", local_port), timeout=2) as conn:
                    conn.settimeout(5)
                    data = conn.recv(100)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        assert data == b""  # the channel open was refused: nothing came through
        denial = _denials(gateway, mark, "direct-tcpip")
        assert denial and denial[0]["destination"] == f"127.0.0.1:{gateway.port}"
    finally:
        tunnel.kill()
        tunnel.wait(timeout=10)


def test_agent_forwarding_refused(gateway: Gateway, web1: str, tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        mark = gateway.mark()
        argv = gateway.ssh_argv("debug", web1, "env", opts=("-A",))
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)
        assert result.returncode == 0
        assert "SSH_AUTH_SOCK" not in result.stdout
        assert _denials(gateway, mark, "agent-forwarding")
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_x11_forwarding_refused(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    argv = gateway.ssh_argv("debug", web1, "env", opts=("-X",))
    env = {**os.environ, "DISPLAY": "127.0.0.1:0"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)
    assert "DISPLAY" not in result.stdout
    assert _denials(gateway, mark, "x11-forwarding")


def test_env_requests_refused_and_recorded(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    result = gateway.ssh("debug", web1, "env", opts=("-o", "SetEnv=LD_PRELOAD=/x.so"))
    assert "LD_PRELOAD" not in result.stdout
    (denial,) = _denials(gateway, mark, "env")
    assert denial["name"] == "LD_PRELOAD"
    assert "/x.so" not in str(denial)  # values are never logged


def test_sftp_refused(gateway: Gateway, tmp_path: Path) -> None:
    mark = gateway.mark()
    argv = ["sftp", "-b", "-", *copy_opts(gateway.port, gateway.keys["betty"])]
    result = subprocess.run(
        [*argv, "debug@127.0.0.1"],
        input="ls\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    (denial,) = _denials(gateway, mark, "subsystem")
    assert "sftp" in denial["reason"]


@pytest.mark.parametrize("legacy", [True, False], ids=["scp-O", "scp-sftp"])
def test_scp_refused(gateway: Gateway, tmp_path: Path, legacy: bool) -> None:
    source = tmp_path / "file.txt"
    source.write_text("data\n")
    mark = gateway.mark()
    argv = ["scp", *(["-O"] if legacy else []), *copy_opts(gateway.port, gateway.keys["betty"])]
    result = subprocess.run(
        [*argv, str(source), "debug@127.0.0.1:/tmp/x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert _denials(gateway, mark, "scp" if legacy else "subsystem")


def test_session_limit_per_connection(gateway: Gateway, web1: str) -> None:
    import asyncio  # noqa: PLC0415

    import asyncssh  # noqa: PLC0415

    async def main() -> int:
        key = asyncssh.read_private_key(str(gateway.keys["betty"]))
        async with asyncssh.connect(
            "127.0.0.1", gateway.port, username="memory", client_keys=[key], known_hosts=None
        ) as conn:
            opened = 0
            for _ in range(12):
                try:
                    await conn.create_session(asyncssh.SSHClientSession)
                except asyncssh.ChannelOpenError:
                    break
                opened += 1
            return opened

    mark = gateway.mark()
    assert asyncio.run(main()) == 10
    assert _denials(gateway, mark, "session-limit")
