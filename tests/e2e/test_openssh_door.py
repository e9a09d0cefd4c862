"""The command= front door, deployed as deploy/OPENSSH.md says: Debian's real sshd with the
shipped snippet included (only the port and the paths substituted), the `gw` account,
AuthorizedKeysCommand answered live by the running gateway, and `dispatch` handing each
session to it over the door socket.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.confine.spawn import daemon_pid
from tests.e2e.conftest import (
    ROOT,
    Gateway,
    ShippedUnit,
    copy_opts,
    gateway_cli,
    launch_gateway,
    resize_then_exit,
    spawn,
    ssh_command,
    stop_gateway,
)

pytestmark = pytest.mark.e2e

SNIPPET = ROOT / "deploy" / "sshd_config.d" / "gateway.conf"
UNIT = ROOT / "deploy" / "gateway.service"
DOOR_USER = "gw"
KEYS_USER = "gwkeys"


@dataclass
class Sshd:
    """A running sshd on loopback, the gateway behind it, and how to reach them."""

    port: int
    keys: dict[str, Path]
    gateway: Gateway
    config: Path
    #: the door and keys sockets and the door account's copy of the package
    run_dir: Path = Path("/run/gateway")

    #: what `gateway openssh-setup` printed
    setup: str = ""
    #: the unit's spawner's socket (its ExecStartPre=+)
    spawner: Path = Path()

    def argv(
        self, *words: str, key: str = "betty", opts: tuple[str, ...] = (), user: str = DOOR_USER
    ) -> list[str]:
        return ssh_command(self.port, self.keys[key], user, words, opts)

    def run(
        self,
        *words: str,
        key: str = "betty",
        opts: tuple[str, ...] = (),
        stdin: str = "",
        user: str = DOOR_USER,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*words, key=key, opts=opts, user=user),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_accounts() -> None:
    """Step 2 of deploy/OPENSSH.md: the door account and the keys account."""
    _ensure_user(KEYS_USER)
    _ensure_user(DOOR_USER)


def _ensure_user(name: str) -> None:
    if subprocess.run(["id", name], capture_output=True, check=False).returncode != 0:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--shell",
                "/bin/sh",
                "--home-dir",
                "/nonexistent",
                "--no-create-home",
                name,
            ],
            check=True,
        )
    subprocess.run(
        ["usermod", "-p", "*", "-d", "/", name], check=True
    )  # not locked: sshd without PAM refuses those


@pytest.fixture(scope="module")
def sshd(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """deploy/OPENSSH.md, step by step, on loopback with private paths."""
    base = tmp_path_factory.mktemp("door")
    run_dir = Path(f"/run/gwtest-{secrets.token_hex(4)}")
    run_dir.mkdir(mode=0o755)
    # The gw account runs the thin client: give it a copy of the package it can read, wherever
    # this checkout lives (a checkout under /root would be out of its reach).
    install = run_dir / "opt-gateway"
    shutil.copytree(ROOT / "gateway", install / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [install, *install.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    policies = base / "policies"
    shutil.copytree(gateway.policies, policies)
    # 1. the gateway, with its door socket where `gw` can reach it
    ensure_accounts()
    setup = gateway_cli(
        "openssh-setup",
        "--policies",
        str(policies),
        "--keys",
        str(gateway.keydir),
        "--state",
        str(base / "state"),
    )
    assert setup.returncode == 0, setup.stderr  # 2. the accounts: gw, gwkeys, one per action
    state = base / "state"
    paths = {"/opt/gateway": str(install), "/etc/gateway/policies": str(policies),
             "/etc/gateway/keys": str(gateway.keydir), "/var/lib/gateway": str(state),
             "/run/gateway": str(run_dir)}  # fmt: skip
    unit = ShippedUnit.render(paths, base / "gateway.service")
    unit.start_spawner()
    gw = launch_gateway(unit.serve, state, policies, gateway.keydir, gateway.keys)
    # 3. the shipped snippet, only the port and paths substituted; `sshd -t` must pass
    snippet = SNIPPET.read_text().replace("/opt/gateway", str(install)).replace("/run/gateway", str(run_dir))
    (base / "gateway.conf").write_text(snippet)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True)
    port = _free_port()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\nPidFile {base}/sshd.pid\n"
        "UsePAM no\nLogLevel ERROR\nSubsystem sftp /usr/lib/openssh/sftp-server\n"
        f"Include {base}/gateway.conf\n"
    )
    checked = subprocess.run(
        ["/usr/sbin/sshd", "-t", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(base / "sshd.log")])
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield Sshd(port, gateway.keys, gw, config, run_dir, setup.stdout, unit.socket)
    proc.terminate()
    proc.wait(timeout=10)
    assert stop_gateway(gw) == 0
    unit.stop_spawner()
    verified = gateway_cli("audit", "verify", "--state", str(gw.state))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shutil.rmtree(run_dir, ignore_errors=True)
    remove_instance_accounts(state)


def remove_instance_accounts(state: Path) -> None:
    """The action accounts `openssh-setup --state STATE` made (marked with that instance)."""
    import pwd  # noqa: PLC0415

    from gateway.openssh_setup import instance_mark  # noqa: PLC0415

    mark = instance_mark(state)
    for entry in pwd.getpwall():
        if entry.pw_gecos == mark:
            subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)


def _runs_in(gateway: Gateway, pid: int) -> bool:
    """Whether *pid* is the gateway's process or one of its workers."""
    children = Path(f"/proc/{gateway.proc.pid}/task/{gateway.proc.pid}/children").read_text().split()
    return pid == gateway.proc.pid or str(pid) in children


def _events(gateway: Gateway, mark: int, event: str) -> list[dict[str, Any]]:
    return [e for e in gateway.since(mark, lambda e: e["event"] == event) if e["event"] == event]


def test_the_shipped_snippet_passes_sshd_t(tmp_path: Path) -> None:
    """As shipped, unmodified, included from a minimal main config."""
    ensure_accounts()
    Path("/run/sshd").mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")], check=True)
    (tmp_path / "sshd_config").write_text(f"Port 22\nHostKey {tmp_path}/hk\nInclude {SNIPPET}\n")
    result = subprocess.run(
        ["/usr/sbin/sshd", "-t", "-f", str(tmp_path / "sshd_config")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_host_action_through_sshd(sshd: Sshd) -> None:
    mark = sshd.gateway.mark()
    result = sshd.run("memory", key="dan")
    assert result.returncode == 0, result.stderr
    assert "Mem:" in result.stdout
    (end,) = _events(sshd.gateway, mark, "session.end")
    assert (end["door"], end["principal"], end["action"], end["exit_status"]) == (
        "openssh",
        "dan",
        "memory",
        0,
    )
    allow = _events(sshd.gateway, mark, "request.allow")[0]
    assert allow["peer"].startswith("127.0.0.1:")
    start = _events(sshd.gateway, mark, "session.start")[0]
    assert start["pid"] != end.get("door_pid") and _runs_in(
        sshd.gateway, start["pid"]
    )  # the daemon, not the door


FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")


def _status(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: v.strip() for k, v in pairs if k in FIELDS}


def test_the_unit_confines_the_gateway_and_not_its_shells(sshd: Sshd, web1: str) -> None:
    """The unit's sandbox holds the gateway (no_new_privs, its filters, its bounding set), and a shell,
    through either door, is confined exactly like `docker exec` all the same: the spawner that starts it
    runs apart (ExecStartPre=+)."""
    monitor = _status(Path(f"/proc/{sshd.gateway.proc.pid}/status").read_text())
    assert (monitor["NoNewPrivs"], monitor["Seccomp"]) == ("1", "2")
    assert int(monitor["CapBnd"], 16) & (1 << 21) == 0  # no CAP_SYS_ADMIN
    spawner = _status(Path(f"/proc/{daemon_pid(sshd.spawner)}/status").read_text())
    assert (spawner["NoNewPrivs"], spawner["Seccomp"]) == ("0", "0")
    docker = subprocess.run(["docker", "exec", web1, "cat", "/proc/self/status"],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    theirs = _status(docker.stdout)
    assert theirs["Seccomp"] == "2"
    direct = sshd.gateway.ssh("debug", web1, "cat", "/proc/self/status")
    door = sshd.run("debug", web1, "cat", "/proc/self/status")
    assert direct.returncode == door.returncode == 0, direct.stderr + door.stderr
    assert _status(direct.stdout) == _status(door.stdout) == theirs


def test_shell_argv_streams_and_status(sshd: Sshd, web1: str) -> None:
    result = sshd.run("debug", web1, "sh", "-c", "'echo out; echo err >&2; exit 7'")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert sshd.run("debug", web1, "hostname").stdout == "web1\n"
    assert sshd.run("debug", web1, "cat", stdin="piped\n").stdout == "piped\n"  # stdin EOF reaches it


def test_shell_on_a_pty(sshd: Sshd, web1: str) -> None:
    mark = sshd.gateway.mark()
    child = spawn(sshd.argv("debug", web1, opts=("-tt",)), size=(30, 90), timeout=20)
    child.sendline("hostname; stty size")
    child.expect("web1")
    child.expect("30 90")
    child.sendline("sleep 30")
    time.sleep(0.5)
    child.sendcontrol("c")  # Ctrl-C reaches the foreground job, not the session
    child.sendline("echo after-''interrupt")
    child.expect("after-interrupt")
    resize_then_exit(child, 35, 100, 5)
    (end,) = _events(sshd.gateway, mark, "session.end")
    cast = (sshd.gateway.state / end["recording"]).read_text()
    assert "35 100" in cast


def test_typed_ahead_input_is_kept(sshd: Sshd, web1: str) -> None:
    """printf 'hostname\\nexit 5\\n' | ssh -tt gw@HOST debug web1 (it hung and lost the input)."""
    result = sshd.run("debug", web1, opts=("-tt",), stdin="hostname\nexit 5\n")
    assert result.returncode == 5
    assert "web1" in result.stdout


def test_a_client_that_hangs_up_ends_the_action(sshd: Sshd, web1: str) -> None:
    mark = sshd.gateway.mark()
    child = spawn(sshd.argv("debug", web1, "sleep", "778", opts=("-tt",)), prompt=False)
    time.sleep(1.5)
    child.terminate(force=True)
    ends = _events(sshd.gateway, mark, "session.end")
    assert ends
    left = subprocess.run(["pgrep", "-f", "sleep 778"], capture_output=True, text=True, check=False)
    assert not left.stdout.strip()


def test_refusals_through_sshd(sshd: Sshd, web1: str) -> None:
    mark = sshd.gateway.mark()
    denied = sshd.run("debug", web1, key="dan")
    assert (denied.returncode, denied.stderr) == (
        1,
        f"gateway: debug {web1}: permission denied (ssh help@HOST lists what you may do)\n",
    )
    nobody = sshd.run("memory", key="eve")  # no grants: still a line, refused and audited by the gateway
    assert (nobody.returncode, nobody.stderr) == (
        1,
        "gateway: memory: permission denied (ssh help@HOST lists what you may do)\n",
    )
    unknown = sshd.run("memory", key="mallory")  # not in keys/: no line, sshd refuses
    assert unknown.returncode == 255
    missing = sshd.run("debug", "nosuch")
    assert (
        missing.stderr == "gateway: debug nosuch: permission denied (ssh help@HOST lists what you may do)\n"
    )
    login = sshd.run()
    assert login.returncode == 1
    assert login.stderr.startswith("gateway: usage:")
    denies = _events(sshd.gateway, mark, "request.deny")
    assert {"action", "usage"} <= {e.get("kind") for e in denies}
    assert any(e.get("principal") == "eve" for e in denies)
    rejected = _events(sshd.gateway, mark, "auth.reject")
    assert any(e.get("door") == "openssh" and e["fingerprint"].startswith("SHA256:") for e in rejected)


def test_a_new_grant_works_at_the_next_login(sshd: Sshd) -> None:
    assert sshd.run("memory", key="eve").returncode == 1
    policies = sshd.gateway.policies
    mark = sshd.gateway.mark()
    (policies / "later.yaml").write_text(
        "version: 1\nactions:\n  uptime: {type: host, command: [uptime]}\n"
        "grants:\n  - {principals: [eve], actions: [uptime]}\n"
    )
    try:
        sshd.gateway.since(mark, lambda e: e["event"] == "policy.reload", wait=10)
        result = sshd.run("uptime", key="eve")
        assert result.returncode == 0, result.stderr
        assert "load average" in result.stdout
    finally:
        (policies / "later.yaml").unlink()
        sshd.gateway.since(sshd.gateway.mark(), lambda e: e["event"] == "policy.reload", wait=10)


def test_sftp_and_scp_refused(sshd: Sshd, tmp_path: Path) -> None:
    mark = sshd.gateway.mark()
    common = copy_opts(sshd.port, sshd.keys["betty"])
    sftp = subprocess.run(
        ["sftp", "-b", "-", *common, f"{DOOR_USER}@127.0.0.1"],
        input="ls\n", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert sftp.returncode != 0
    source = tmp_path / "f"
    source.write_text("x")
    scp = subprocess.run(
        ["scp", "-O", *common, str(source), f"{DOOR_USER}@127.0.0.1:/tmp/gw-scp-test"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert scp.returncode != 0
    assert not Path("/tmp/gw-scp-test").exists()
    kinds = {e.get("kind") for e in _events(sshd.gateway, mark, "request.deny")}
    assert {"subsystem", "scp"} <= kinds


def test_forwarding_refused_by_restrict(sshd: Sshd) -> None:
    result = sshd.run("memory", key="dan", opts=("-R", "0:127.0.0.1:9", "-o", "ExitOnForwardFailure=yes"))
    assert result.returncode == 255
    assert "forwarding failed" in result.stderr


def test_both_doors_one_chain(sshd: Sshd) -> None:
    for _ in range(3):
        assert sshd.run("memory", key="dan").returncode == 0
        assert sshd.gateway.ssh("memory", key="dan").returncode == 0
    verified = gateway_cli("audit", "verify", "--state", str(sshd.gateway.state))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    doors = {e.get("door", "gateway") for e in sshd.gateway.events() if e["event"] == "session.end"}
    assert doors == {"openssh", "gateway"}


def test_the_static_file_has_every_key(sshd: Sshd) -> None:
    rendered = gateway_cli(
        "authorized-keys", "--policies", str(sshd.gateway.policies), "--keys", str(sshd.gateway.keydir),
        "--state", str(sshd.gateway.state),
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    principals = [line.rsplit(" ", 1)[1] for line in rendered.stdout.splitlines() if not line.startswith("#")]
    assert sorted(principals) == ["betty", "charlotte", "dan", "eve"]
    eve = next(line for line in rendered.stdout.splitlines() if line.endswith(" eve"))
    assert eve.startswith('restrict,command="') and ",pty" not in eve


def test_in_process_when_no_daemon_answers(gateway: Gateway, tmp_path: Path) -> None:
    """The fallback runs the same Session (as root here), with the same audit records."""
    state = tmp_path / "state"
    env = {
        **os.environ,
        "SSH_ORIGINAL_COMMAND": "memory",
        "SSH_CONNECTION": "127.0.0.9 4242 127.0.0.1 22",
    }
    argv = [
        sys.executable, "-S", str(ROOT / "gateway" / "door.py"), "dispatch", "--principal", "dan",
        "--policies", str(gateway.policies), "--keys", str(gateway.keydir), "--state", str(state),
    ]  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Mem:" in result.stdout
    verified = gateway_cli("audit", "verify", "--state", str(state))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    records = (state / "audit").glob("audit-*.jsonl")
    assert any(
        '"door":"openssh"' in p.read_text() and '"peer":"127.0.0.9:4242"' in p.read_text() for p in records
    )


def test_a_signal_death_is_reraised_for_sshd(gateway: Gateway, web1: str, tmp_path: Path) -> None:
    """dispatch exits the way the child did: killed by TERM, not 143."""
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": f"debug {web1} sh -c 'kill -TERM $$'"}
    argv = [
        sys.executable, "-m", "gateway", "dispatch", "--principal", "betty",
        "--policies", str(gateway.policies), "--keys", str(gateway.keydir), "--state", str(gateway.state),
    ]  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False, cwd=ROOT)
    assert result.returncode == -signal.SIGTERM


def test_the_reason_crosses_the_door(sshd: Sshd) -> None:
    """sshd's AcceptEnv GATEWAY_REASON (the shipped snippet) carries SetEnv to the gateway."""
    mark = sshd.gateway.mark()
    (sshd.gateway.policies / "why.yaml").write_text(
        "version: 1\nactions:\n  why: {type: host, command: [echo, done]}\n"
        "grants:\n  - principals: [dan]\n    actions: [why]\n    reason: required\n"
    )
    assert sshd.gateway.since(mark, lambda e: e["event"] == "policy.reload", wait=10)
    given = sshd.run("why", key="dan", opts=("-o", "SetEnv=GATEWAY_REASON=INC-5"))
    assert (given.returncode, given.stdout) == (0, "done\n"), given.stderr
    missing = sshd.run("why", key="dan")
    assert missing.returncode == 1 and "needs a reason" in missing.stderr
    allow = [e for e in sshd.gateway.since(mark) if e["event"] == "request.allow" and e.get("reason")]
    assert allow and allow[0]["reason"] == "INC-5"


def test_the_same_commands_as_on_the_native_port(sshd: Sshd, web1: str) -> None:
    """`ssh debug@HOST web1 hostname`, `ssh -t debug@HOST web1`, `ssh memory@HOST`, through sshd."""
    mark = sshd.gateway.mark()
    argv = sshd.run(web1, "hostname", user="debug")
    assert (argv.returncode, argv.stdout, argv.stderr) == (0, "web1\n", ""), argv.stderr
    status = sshd.run(web1, "sh", "-c", "'echo err >&2; exit 3'", user="debug")
    assert (status.returncode, status.stderr) == (3, "err\n")
    memory = sshd.run(key="dan", user="memory")
    assert memory.returncode == 0 and "Mem:" in memory.stdout, memory.stderr
    child = spawn(sshd.argv(web1, opts=("-tt",), user="debug"), size=(30, 90), timeout=20)
    child.sendline("hostname; stty size")
    child.expect("web1")
    child.expect("30 90")
    resize_then_exit(child, 35, 100, 0)
    ends = _events(sshd.gateway, mark, "session.end")
    assert [e["action"] for e in ends] == ["debug", "debug", "memory", "debug"]
    assert all(e["door"] == "openssh" for e in ends)
    denied = sshd.run(web1, key="dan", user="debug")
    assert (denied.returncode, denied.stderr) == (
        1,
        f"gateway: debug {web1}: permission denied (ssh help@HOST lists what you may do)\n",
    )
    assert sshd.run("debug", web1, "hostname").stdout == "web1\n"  # ssh gw@HOST ACTION stays


def test_an_action_named_like_a_host_account_is_left_alone(sshd: Sshd, examples: Path) -> None:
    import pwd  # noqa: PLC0415

    backup = pwd.getpwnam("backup")  # Debian's own, uid 34
    assert backup.pw_gecos != "gateway action"
    assert "debug: created" in sshd.setup or "debug: already set up" in sshd.setup
    shipped = gateway_cli(
        "openssh-setup", "--policies", str(examples / "policies"), "--keys", str(examples / "keys"), "--dry-run",
        "--state", str(sshd.gateway.state),
    )  # fmt: skip  # the repo's example policy has a `backup` action
    assert shipped.returncode == 0, shipped.stderr
    assert f"backup: left alone: an account of this host (uid {backup.pw_uid})" in shipped.stdout
    assert f"ssh {DOOR_USER}@HOST backup" in shipped.stdout
    assert pwd.getpwnam("backup") == backup  # untouched


def test_sftp_through_sshd_gets_the_gateways_line(sshd: Sshd) -> None:
    common = copy_opts(sshd.port, sshd.keys["betty"])
    for user in (DOOR_USER, "debug"):
        sftp = subprocess.run(
            ["sftp", "-b", "-", *common, f"{user}@127.0.0.1"],
            input="ls\n", capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert sftp.returncode != 0
        assert "gateway: sftp is not available" in sftp.stderr, sftp.stderr


def test_setup_changes_only_its_own_instances_accounts(sshd: Sshd, tmp_path: Path) -> None:
    """Another instance's accounts are never offered for removal; this instance's stale ones are."""
    lean = tmp_path / "policies"
    lean.mkdir()
    (lean / "p.yaml").write_text("version: 1\nactions:\n  memory: {type: host, command: [free]}\n")

    def dry_run(state: Path) -> subprocess.CompletedProcess[str]:
        keys = str(sshd.gateway.keydir)
        return gateway_cli(
            "openssh-setup", "--policies", str(lean), "--keys", keys, "--dry-run", "--state", str(state)
        )

    other = dry_run(tmp_path / "other")
    assert other.returncode == 0, other.stderr
    assert "would remove" not in other.stdout, other.stdout
    assert "memory: left alone: made by another gateway instance" in other.stdout
    mine = dry_run(sshd.gateway.state)
    assert "debug: would remove: no longer an action" in mine.stdout, mine.stdout


def test_setup_reuses_a_leftover_group_of_the_door_accounts_name(tmp_path: Path) -> None:
    door, keys_user = "gwleft", "gwleftkeys"
    subprocess.run(["groupadd", "--system", door], check=False, capture_output=True)
    lean = tmp_path / "policies"
    lean.mkdir()
    (lean / "p.yaml").write_text("version: 1\nactions:\n  gwleftact: {type: host, command: [free]}\n")
    (tmp_path / "keys").mkdir()
    try:
        made = gateway_cli(
            "openssh-setup", "--policies", str(lean), "--keys", str(tmp_path / "keys"), "--state",
            str(tmp_path / "state"), "--door-user", door, "--keys-user", keys_user,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert f"{door}: created" in made.stdout
        assert (
            subprocess.run(["id", "-gn", door], capture_output=True, text=True, check=True).stdout
            == f"{door}\n"
        )
    finally:
        remove_instance_accounts(tmp_path / "state")
        for name in (keys_user, door):
            subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", door], capture_output=True, check=False)


def test_help_through_sshd_needs_no_grant(sshd: Sshd) -> None:
    """`ssh help@HOST` through sshd: an account made for it, and an answer for any principal with a key."""
    shown = sshd.run(user="help", key="eve")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("what eve may do") or shown.stdout == "eve may do nothing\n", shown.stdout
