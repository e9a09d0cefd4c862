"""The interop matrix: real SSH clients that nobody here wrote, against the real gateway.

OpenSSH (ssh, sftp), PuTTY (plink, psftp; keys converted with puttygen),
Dropbear (dbclient; keys converted with dropbearconvert), paramiko and asyncssh.
For each: a host action, an exec with arguments, a PTY shell through an
``ACTION+TARGET`` login with a resize seen by ``stty size`` and the exit
status, a refused forward showing its reason, and sftp where the client has
it. The matrix is printed at the end of the run (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pexpect
import pytest

from tests.e2e.conftest import SSH_OPTS, Gateway

pytestmark = pytest.mark.e2e

CLIENTS = ("openssh", "plink", "dbclient", "paramiko", "asyncssh")
FEATURES = ("host action", "exec with args", "ACTION+TARGET PTY, resize, exit", "forward refused", "sftp")
#: (client, feature) -> what happened, for the printed matrix
MATRIX: dict[tuple[str, str], str] = {("dbclient", "sftp"): "n/a (Dropbear has no sftp client)"}
REASON = "gateway: port forwarding is not available"


def _note(client: str, feature: str, result: str) -> None:
    MATRIX[(client, feature)] = result


# ---------------------------------------------------------------- command-line clients


class Cli:
    """How one command-line client is invoked against the gateway."""

    def __init__(self, gateway: Gateway, keys: dict[str, Path], name: str) -> None:
        self.gw, self.keys, self.name = gateway, keys, name
        self.hostkey = subprocess.run(
            ["ssh-keygen", "-lf", str(gateway.state / "ssh_host_ed25519_key")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]

    def argv(
        self, login: str, words: tuple[str, ...] = (), *, pty: bool = False, extra: tuple[str, ...] = ()
    ) -> list[str]:
        port, key = str(self.gw.port), str(self.keys[self.name])
        if self.name == "openssh":  # INFO: ssh shows a refused channel's reason at that level
            return [
                "ssh",
                *[o if o != "LogLevel=ERROR" else "LogLevel=INFO" for o in SSH_OPTS],
                "-p",
                port,
                "-i",
                key,
                *(["-tt"] if pty else []),
                *extra,
                f"{login}@127.0.0.1",
                *words,
            ]
        if self.name == "plink":
            flags = ["-t"] if pty else ["-T"]
            return [
                "plink",
                "-batch",
                "-hostkey",
                self.hostkey,
                "-i",
                key,
                "-P",
                port,
                *flags,
                *extra,
                f"{login}@127.0.0.1",
                *words,
            ]
        flags = ["-t"] if pty else ["-T"]
        return ["dbclient", "-y", "-y", "-i", key, "-p", port, *flags, *extra, f"{login}@127.0.0.1", *words]

    def run(self, login: str, *words: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(login, words, extra=extra), capture_output=True, text=True, timeout=30, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip


@pytest.fixture(scope="module")
def client_keys(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """betty's key in each client's own format."""
    base = tmp_path_factory.mktemp("clientkeys")
    betty = gateway.keys["betty"]
    ppk, db = base / "betty.ppk", base / "betty.db"
    subprocess.run(["puttygen", str(betty), "-O", "private", "-o", str(ppk)], check=True, capture_output=True)
    subprocess.run(
        ["dropbearconvert", "openssh", "dropbear", str(betty), str(db)], check=True, capture_output=True
    )
    return {"openssh": betty, "plink": ppk, "dbclient": db, "paramiko": betty, "asyncssh": betty}


@pytest.mark.parametrize("name", ["openssh", "plink", "dbclient"])
def test_cli_host_action_and_exec(
    gateway: Gateway, client_keys: dict[str, Path], web1: str, name: str
) -> None:
    cli = Cli(gateway, client_keys, name)
    memory = cli.run("memory")
    assert memory.returncode == 0, memory.stderr
    assert "Mem:" in memory.stdout
    _note(name, "host action", "ok")
    echoed = cli.run("debug", web1, "echo", "a", "b")
    assert (echoed.returncode, echoed.stdout) == (0, "a b\n"), echoed.stderr
    _note(name, "exec with args", "ok")


@pytest.mark.parametrize("name", ["openssh", "plink", "dbclient"])
def test_cli_pty_login_target_resize_exit(
    gateway: Gateway, client_keys: dict[str, Path], web1: str, name: str
) -> None:
    cli = Cli(gateway, client_keys, name)
    env = {"TERM": "xterm", "PATH": "/usr/bin:/bin"}
    argv = cli.argv(f"debug+{web1}", pty=True)
    child = pexpect.spawn(argv[0], argv[1:], dimensions=(24, 80), timeout=20, encoding="utf-8", env=env)
    child.expect(r"[#$] ")
    child.sendline("hostname")
    child.expect("web1")
    child.setwinsize(33, 101)
    time.sleep(0.5)
    child.sendline("stty size")
    child.expect("33 101")
    child.sendline("exit 4")
    child.expect(pexpect.EOF)
    child.wait()  # the client may still be exiting after the EOF: close() alone kills it after 0.1 s
    child.close()
    assert child.exitstatus == 4
    _note(name, "ACTION+TARGET PTY, resize, exit", "ok")


@pytest.mark.parametrize(
    ("name", "extra", "shown"),
    [
        ("openssh", ("-W", "127.0.0.1:9"), f"administratively prohibited: {REASON}"),
        ("plink", ("-nc", "127.0.0.1:9"), f"Administratively prohibited [{REASON}]"),
        ("dbclient", ("-B", "127.0.0.1:9"), None),
    ],
)
def test_cli_forward_refused_with_reason(
    gateway: Gateway, client_keys: dict[str, Path], name: str, extra: tuple[str, ...], shown: str | None
) -> None:
    mark = gateway.mark()
    result = Cli(gateway, client_keys, name).run("memory", extra=extra)
    if shown is not None:
        assert shown in result.stderr
    kinds = [e.get("kind") for e in gateway.since(mark, lambda e: e.get("kind") == "direct-tcpip")]
    assert "direct-tcpip" in kinds  # refused and audited, whatever the client shows
    _note(name, "forward refused", "reason shown" if shown else "refused (the client shows no reason)")


@pytest.mark.parametrize("name", ["openssh", "plink"])
def test_cli_sftp_refused_with_a_line(gateway: Gateway, client_keys: dict[str, Path], name: str) -> None:
    cli = Cli(gateway, client_keys, name)
    if name == "openssh":
        argv = [
            "sftp",
            "-b",
            "-",
            *SSH_OPTS,
            "-P",
            str(gateway.port),
            "-i",
            str(client_keys[name]),
            "memory@127.0.0.1",
        ]
    else:
        argv = [
            "psftp",
            "-batch",
            "-hostkey",
            cli.hostkey,
            "-i",
            str(client_keys[name]),
            "-P",
            str(gateway.port),
            "memory@127.0.0.1",
        ]
    result = subprocess.run(argv, input="ls\n", capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert "gateway: sftp is not available" in result.stdout + result.stderr
    _note(name, "sftp", "refused with the line")


def test_openssh_scp_refused_with_a_line(
    gateway: Gateway, client_keys: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "f"
    source.write_text("x")
    for mode in ((), ("-O",)):
        argv = [
            "scp",
            *mode,
            *SSH_OPTS,
            "-P",
            str(gateway.port),
            "-i",
            str(client_keys["openssh"]),
            str(source),
            "memory@127.0.0.1:/tmp/x",
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode != 0
        line = "gateway: scp is not available" if mode else "gateway: sftp is not available"
        assert line in result.stderr


# ---------------------------------------------------------------- library clients


def _paramiko(gateway: Gateway, key: Path, login: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - a private test server
    client.connect(
        "127.0.0.1", gateway.port, username=login, key_filename=str(key),
        look_for_keys=False, allow_agent=False, timeout=15,
    )  # fmt: skip
    return client


def _read_until(read: Callable[[], bytes], wanted: str, seconds: float = 15) -> str:
    seen, deadline = "", time.monotonic() + seconds
    while wanted not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{wanted!r} not in {seen!r}")
        seen += read().decode("utf-8", "replace")
    return seen


def test_paramiko(
    gateway: Gateway, client_keys: dict[str, Path], web1: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = client_keys["paramiko"]
    with _paramiko(gateway, key, "memory") as client:
        _, out, _ = client.exec_command("")
        assert "Mem:" in out.read().decode()
    _note("paramiko", "host action", "ok")
    with _paramiko(gateway, key, "debug") as client:
        _, out, _ = client.exec_command(f"{web1} echo a b")
        assert out.read() == b"a b\n"
    _note("paramiko", "exec with args", "ok")
    with _paramiko(gateway, key, f"debug+{web1}") as client:
        chan = client.invoke_shell(
            term="xterm", width=80, height=24
        )  # no command: the login names the target
        _read_until(lambda: chan.recv(4096), "# ")
        chan.resize_pty(width=101, height=33)
        time.sleep(0.3)
        chan.send(b"stty size\n")
        _read_until(lambda: chan.recv(4096), "33 101")
        chan.send(b"exit 4\n")
        assert chan.recv_exit_status() == 4
    _note("paramiko", "ACTION+TARGET PTY, resize, exit", "ok")
    with _paramiko(gateway, key, "memory") as client:
        transport = client.get_transport()
        assert transport is not None
        with pytest.raises(paramiko.ChannelException) as refused:
            transport.open_channel("direct-tcpip", ("127.0.0.1", 9), ("127.0.0.1", 0))
        assert (refused.value.code, refused.value.text) == (1, "Administratively prohibited")
        assert REASON in caplog.text  # paramiko logs the server's text beside its own words
        _note("paramiko", "forward refused", "reason shown (in its log)")
        chan = transport.open_session()
        chan.invoke_subsystem("sftp")
        assert chan.makefile_stderr().read() == b"gateway: sftp is not available\n"
        assert chan.recv_exit_status() == 1
        _note("paramiko", "sftp", "refused with the line")


async def _asyncssh_all(gateway: Gateway, key: Path, web1: str) -> dict[str, Any]:
    private = asyncssh.read_private_key(str(key))
    out: dict[str, Any] = {}

    def connect(login: str) -> Any:
        return asyncssh.connect(
            "127.0.0.1",
            gateway.port,
            username=login,
            client_keys=[private],
            known_hosts=None,
            agent_path=None,
        )

    async with connect("memory") as conn:
        out["memory"] = (await conn.run()).stdout
        try:
            await conn.open_connection("127.0.0.1", 9)
        except asyncssh.ChannelOpenError as exc:
            out["forward"] = (exc.code, exc.reason)
        sftp = await conn.run(subsystem="sftp")
        out["sftp"] = (sftp.exit_status, sftp.stderr)
    async with connect("debug") as conn:
        out["exec"] = (await conn.run(f"{web1} echo a b")).stdout
    async with connect(f"debug+{web1}") as conn:
        process = await conn.create_process(term_type="xterm", term_size=(80, 24))
        seen = ""
        while "# " not in seen:
            seen += await asyncio.wait_for(process.stdout.read(4096), 15)
        process.change_terminal_size(101, 33)
        await asyncio.sleep(0.3)
        process.stdin.write("stty size\n")
        while "33 101" not in seen:
            seen += await asyncio.wait_for(process.stdout.read(4096), 15)
        process.stdin.write("exit 4\n")
        await process.wait()
        out["pty_status"] = process.exit_status
    return out


def test_asyncssh(gateway: Gateway, client_keys: dict[str, Path], web1: str) -> None:
    out = asyncio.run(_asyncssh_all(gateway, client_keys["asyncssh"], web1))
    assert "Mem:" in out["memory"]
    _note("asyncssh", "host action", "ok")
    assert out["exec"] == "a b\n"
    _note("asyncssh", "exec with args", "ok")
    assert out["pty_status"] == 4
    _note("asyncssh", "ACTION+TARGET PTY, resize, exit", "ok")
    assert out["forward"] == (asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, REASON)
    _note("asyncssh", "forward refused", "reason shown")
    assert out["sftp"] == (1, "gateway: sftp is not available\n")
    _note("asyncssh", "sftp", "refused with the line")


def matrix_text() -> str:
    """The matrix as a markdown table (printed at the end of the run, and in the README)."""
    if not MATRIX:
        return ""
    head = "| feature | " + " | ".join(CLIENTS) + " |\n| --- |" + " --- |" * len(CLIENTS) + "\n"
    rows = "".join(
        f"| {feature} | " + " | ".join(MATRIX.get((c, feature), "n/a") for c in CLIENTS) + " |\n"
        for feature in FEATURES
    )
    return head + rows
