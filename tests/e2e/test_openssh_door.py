"""The command= front door: Debian's real sshd forcing `gateway dispatch`, beside `gateway serve`."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, copy_opts, gateway_cli, resize_then_exit, spawn, ssh_command

pytestmark = pytest.mark.e2e


@dataclass
class Sshd:
    """A running sshd on loopback and how to reach it."""

    port: int
    keys: dict[str, Path]

    def argv(self, *words: str, key: str = "betty", opts: tuple[str, ...] = ()) -> list[str]:
        return ssh_command(self.port, self.keys[key], "root", words, opts)

    def run(
        self, *words: str, key: str = "betty", opts: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*words, key=key, opts=opts), capture_output=True, text=True, timeout=60, check=False
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def sshd(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """sshd with `gateway authorized-keys` output, writing into the serve gateway's state directory."""
    base = tmp_path_factory.mktemp("sshd")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True)
    rendered = gateway_cli(
        "authorized-keys", "--policies", str(gateway.policies), "--keys", str(gateway.keydir), "--state", str(gateway.state),
    )  # fmt: skip
    assert " -S " in rendered.stdout and "door.py dispatch --principal" in rendered.stdout
    assert rendered.returncode == 0, rendered.stderr
    (base / "authorized_keys").write_text(rendered.stdout)
    port = _free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\nPidFile {base}/sshd.pid\n"
        f"AuthorizedKeysFile {base}/authorized_keys\nStrictModes no\nUsePAM no\nPermitRootLogin forced-commands-only\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitUserEnvironment no\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\nSetEnv HOME=/nonexistent\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-f", str(base / "sshd_config"), "-E", str(base / "sshd.log")]
    )
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield Sshd(port, gateway.keys)
    proc.terminate()
    proc.wait(timeout=10)


def _events(gateway: Gateway, mark: int, event: str) -> list[dict[str, Any]]:
    return [e for e in gateway.since(mark, lambda e: e["event"] == event) if e["event"] == event]


def test_host_action_through_sshd(sshd: Sshd, gateway: Gateway) -> None:
    mark = gateway.mark()
    result = sshd.run("memory", key="dan")
    assert result.returncode == 0, result.stderr
    assert "Mem:" in result.stdout
    (end,) = _events(gateway, mark, "session.end")
    assert (end["door"], end["principal"], end["action"], end["exit_status"]) == (
        "openssh",
        "dan",
        "memory",
        0,
    )
    allow = _events(gateway, mark, "request.allow")[0]
    assert allow["peer"].startswith("127.0.0.1:")
    assert allow["policy"]


def test_shell_argv_streams_and_status(sshd: Sshd, web1: str) -> None:
    result = sshd.run("debug", web1, "sh", "-c", "'echo out; echo err >&2; exit 7'")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert sshd.run("debug", web1, "hostname").stdout == "web1\n"


def test_shell_on_a_pty(sshd: Sshd, gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    argv = sshd.argv("debug", web1, opts=("-tt",))
    child = spawn(argv, size=(30, 90), timeout=20)
    child.sendline("hostname; stty size")
    child.expect("web1")
    child.expect("30 90")
    resize_then_exit(child, 35, 100, 5)
    (end,) = _events(gateway, mark, "session.end")
    cast = (gateway.state / end["recording"]).read_text()
    assert "35 100" in cast


def test_refusals_through_sshd(sshd: Sshd, gateway: Gateway, web1: str, tmp_path: Path) -> None:
    mark = gateway.mark()
    denied = sshd.run("debug", web1, key="dan")
    assert (denied.returncode, denied.stderr) == (1, f"gateway: debug {web1}: permission denied\n")
    nobody = sshd.run("memory", key="eve")  # a principal with no grants gets no authorized_keys line
    assert nobody.returncode == 255
    missing = sshd.run("debug", "nosuch")
    assert missing.stderr == "gateway: debug nosuch: permission denied\n"
    login = sshd.run()
    assert login.returncode == 1
    assert login.stderr.startswith("gateway: usage:")
    kinds = {e.get("kind") for e in _events(gateway, mark, "request.deny")}
    assert {"action", "usage"} <= kinds


def test_sftp_and_scp_refused(sshd: Sshd, gateway: Gateway, tmp_path: Path) -> None:
    mark = gateway.mark()
    common = copy_opts(sshd.port, sshd.keys["betty"])
    sftp = subprocess.run(
        ["sftp", "-b", "-", *common, "root@127.0.0.1"],
        input="ls\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert sftp.returncode != 0
    source = tmp_path / "f"
    source.write_text("x")
    scp = subprocess.run(
        ["scp", "-O", *common, str(source), "root@127.0.0.1:/tmp/gw-scp-test"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert scp.returncode != 0
    assert not Path("/tmp/gw-scp-test").exists()
    kinds = {e.get("kind") for e in _events(gateway, mark, "request.deny")}
    assert {"subsystem", "scp"} <= kinds


def test_forwarding_refused_by_restrict(sshd: Sshd) -> None:
    result = sshd.run("memory", key="dan", opts=("-R", "0:127.0.0.1:9", "-o", "ExitOnForwardFailure=yes"))
    assert result.returncode == 255
    assert "forwarding failed" in result.stderr


def test_both_doors_one_chain(sshd: Sshd, gateway: Gateway) -> None:
    for _ in range(3):
        assert sshd.run("memory", key="dan").returncode == 0
        assert gateway.ssh("memory", key="dan").returncode == 0
    verified = gateway_cli("audit", "verify", "--state", str(gateway.state))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    doors = {e.get("door", "gateway") for e in gateway.events() if e["event"] == "session.end"}
    assert doors == {"openssh", "gateway"}
