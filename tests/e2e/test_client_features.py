"""What clients see: ciphers per client, the locale, ACTION+TARGET logins, the target picker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import asyncssh
import pexpect
import pytest

from tests.e2e.conftest import ROOT, SSH_OPTS, Gateway, spawn, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e


def _cipher(gateway: Gateway, *opts: str) -> str:
    argv = [
        "ssh",
        *[o if o != "LogLevel=ERROR" else "LogLevel=DEBUG" for o in SSH_OPTS],
        "-p",
        str(gateway.port),
    ]
    argv += ["-i", str(gateway.keys["dan"]), *opts, "memory@127.0.0.1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr[-500:]
    line = next(x for x in result.stderr.splitlines() if "kex: client->server cipher:" in x)
    return line.split("cipher:")[1].split()[0]


def test_openssh_gets_aes_gcm_and_other_ciphers_still_connect(gateway: Gateway) -> None:
    assert _cipher(gateway) == "aes128-gcm@openssh.com"  # its default list has chacha20 first
    assert _cipher(gateway, "-c", "aes128-ctr") == "aes128-ctr"
    assert _cipher(gateway, "-c", "chacha20-poly1305@openssh.com") == "chacha20-poly1305@openssh.com"


def test_ciphers_option_with_sshd_syntax(gateway: Gateway, tmp_path: Any) -> None:
    gw = start_gateway(
        tmp_path / "state",
        gateway.policies,
        gateway.keydir,
        gateway.keys,
        extra=("--ciphers", "-aes128-gcm@openssh.com"),
    )
    try:
        assert _cipher(gw) == "aes256-gcm@openssh.com"
    finally:
        assert stop_gateway(gw) == 0
    bad = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--ciphers", "rot13", "--state", str(tmp_path / "x")],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--ciphers: unsupported rot13" in bad.stderr


async def _env_run(gateway: Gateway, web1: str, env: dict[str, str]) -> str:
    key = asyncssh.read_private_key(str(gateway.keys["betty"]))
    async with asyncssh.connect(
        "127.0.0.1", gateway.port, username="debug", client_keys=[key], known_hosts=None, agent_path=None
    ) as conn:
        return str((await conn.run(f"{web1} env", env=env)).stdout)


def test_lang_and_lc_are_accepted_and_passed_on(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    env = {"LANG": "de_DE.UTF-8", "LC_TIME": "en_GB.UTF-8", "LC_ALL": "$(id)", "LD_PRELOAD": "/evil.so"}
    out = asyncio.run(_env_run(gateway, web1, env))
    assert "LANG=de_DE.UTF-8" in out and "LC_TIME=en_GB.UTF-8" in out
    assert "LD_PRELOAD" not in out and "$(id)" not in out
    refused = {e.get("name") for e in gateway.since(mark) if e.get("kind") == "env"}
    assert refused == {"LC_ALL", "LD_PRELOAD"}  # a bad value is refused; good locale is no refusal


def test_debian_ssh_sends_lang_without_a_refusal(gateway: Gateway) -> None:
    mark = gateway.mark()
    argv = gateway.ssh_argv("memory", key="dan", opts=("-o", "SendEnv=LANG LC_*"))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_MESSAGES": "C"}
    assert subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode == 0
    assert not [e for e in gateway.since(mark) if e.get("kind") == "env"]


def test_action_plus_target_is_the_same_request(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    plus = gateway.ssh(f"debug+{web1}", "hostname")
    assert (plus.returncode, plus.stdout) == (0, "web1\n")
    denied = gateway.ssh(f"debug+{web1}", "hostname", key="dan")
    assert (denied.returncode, denied.stderr) == (
        1,
        f"gateway: debug {web1}: permission denied (ssh help@HOST lists what you may do)\n",
    )
    missing = gateway.ssh("debug+nosuch")
    assert (
        missing.stderr == "gateway: debug nosuch: permission denied (ssh help@HOST lists what you may do)\n"
    )
    allows = [e for e in gateway.since(mark) if e["event"] == "request.allow"]
    assert allows and allows[0]["action"] == "debug" and allows[0]["target"] == web1


def test_the_picker_lists_running_granted_targets(gateway: Gateway, web1: str, stopped: str) -> None:
    child = spawn(gateway.ssh_argv("debug", opts=("-tt",)), prompt=False)
    child.expect("number or name: ")
    listing = child.before
    assert web1 in listing
    assert stopped not in listing  # granted but not running
    child.sendline(web1)
    child.expect(r"[#$] ")
    child.sendline("hostname")
    child.expect("web1")
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3


def test_a_picked_name_not_granted_gets_the_same_line_as_one_that_does_not_exist(
    gateway: Gateway, web1: str, containers: Any
) -> None:
    db1 = containers.run("db-picked")  # running, but betty's debug grant covers only the web containers
    lines = []
    for name in (db1, "no-such-container"):
        child = spawn(gateway.ssh_argv("debug", key="betty", opts=("-tt",)), prompt=False)
        child.expect("number or name: ")
        child.sendline(name)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 1
        lines.append(child.before.strip().splitlines()[-1].replace(name, "NAME"))
    assert lines[0] == lines[1] == "gateway: NAME is not one of your targets", lines


def test_the_picker_by_number_and_a_bad_answer(gateway: Gateway, web1: str) -> None:
    child = spawn(gateway.ssh_argv("debug", opts=("-tt",)), prompt=False)
    child.expect("number or name: ")
    number = next(
        line.split(")")[0].strip() for line in child.before.splitlines() if line.strip().endswith(web1)
    )
    child.sendline(number)
    child.expect(r"[#$] ")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    bad = spawn(gateway.ssh_argv("debug", opts=("-tt",)), prompt=False)
    bad.expect("number or name: ")
    bad.sendline("nosuch")
    bad.expect("gateway: nosuch is not one of your targets")  # issue 24: was "debug needs a target"
    bad.expect(pexpect.EOF)
    bad.close()
    assert bad.exitstatus == 1
    plain = gateway.ssh("debug")  # without a PTY nothing changes
    assert (plain.returncode, plain.stderr) == (
        1,
        "gateway: debug needs a target: ssh debug@HOST TARGET (ssh help@HOST lists what you may do)\n",
    )
