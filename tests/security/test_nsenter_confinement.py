"""Attack 6: a granted nsenter shell is host root; the container chooses what the gateway reads.

Before the fix the shell had CapEff/CapBnd ``000001fffeffffff`` and Seccomp 0
(docker exec: ``00000000a80425fb`` and 2): it could mount a cgroup hierarchy
(``release_agent`` runs on the host as root), move itself out of the session
cgroup, and a setuid binary under ``user: nobody`` gave back host root. ``user:``
was resolved on the event loop through ``/proc/PID/root/etc/passwd``: a FIFO
froze every login, an absolute symlink was resolved on the host. ``tty``
printed ``not a tty`` (the PTY lived in the host's devpts).
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import threading
import time
from typing import Any

import pexpect
import pytest

from tests.e2e.conftest import Containers, Gateway, gateway_cli, spawn

pytestmark = pytest.mark.e2e

FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")

POLICY = """\
version: 1
actions:
  nobody: {type: shell, user: nobody, allow_args: true}
  rootshell: {type: shell, privileged: true, allow_args: true}
grants:
  - principals: [betty]
    actions: [nobody, rootshell]
    targets: ["{prefix}-*"]
"""


@pytest.fixture
def gw(own_gateway: Any, containers: Containers) -> Gateway:
    """A gateway with a ``user: nobody`` shell and a privileged one."""
    started: Gateway = own_gateway(policy=POLICY.replace("{prefix}", containers.prefix))
    return started


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=30)


def _status(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: v.strip() for k, v in pairs if k in FIELDS}


def _via_gateway(gw: Gateway, action: str, target: str, *argv: str) -> dict[str, str]:
    result = gw.ssh(action, target, *argv)
    assert result.returncode == 0, result.stderr
    return _status(result.stdout)


@pytest.mark.parametrize(("action", "user"), [("debug", "root"), ("nobody", "nobody")])
def test_the_shell_is_confined_exactly_like_docker_exec(
    gw: Gateway, web1: str, action: str, user: str
) -> None:
    ours = _via_gateway(gw, action, web1, "cat", "/proc/self/status")
    theirs = _status(_docker("exec", "-u", user, web1, "cat", "/proc/self/status").stdout)
    assert ours == theirs
    assert ours["Seccomp"] == "2"
    assert ours["CapBnd"] == "00000000a80425fb"


def test_a_setuid_binary_gives_no_more_than_under_docker_exec(gw: Gateway, containers: Containers) -> None:
    target = containers.run(f"suid{secrets.token_hex(2)}")
    made = _docker("exec", target, "sh", "-c", "mkdir /s && cp /bin/busybox /s/cat && chmod 4755 /s/cat")
    assert made.returncode == 0, made.stderr
    ours = _via_gateway(gw, "nobody", target, "/s/cat", "/proc/self/status")
    theirs = _status(_docker("exec", "-u", "nobody", target, "/s/cat", "/proc/self/status").stdout)
    assert ours == theirs
    assert int(ours["CapEff"], 16) & ~0xA80425FB == 0  # never more than the container's set


def test_mounting_and_leaving_the_session_cgroup_fail(gateway: Gateway, web1: str) -> None:
    seconds = 100_000 + secrets.randbelow(900_000)
    mark = gateway.mark()
    script = (
        "mkdir -p /tmp/cg /tmp/cg2;"
        " mount -t cgroup -o none,name=gwx none /tmp/cg && echo MOUNTED-NAMED;"
        " mount -t cgroup -o freezer none /tmp/cg2 && echo MOUNTED-FREEZER;"
        " (echo $$ > /sys/fs/cgroup/freezer/cgroup.procs) 2>/dev/null && echo MOVED;"
        " (echo 1 > /sys/fs/cgroup/freezer/notify_on_release) 2>/dev/null && echo RELEASE;"
        f" setsid sleep {seconds} >/dev/null 2>&1 </dev/null & echo started"
    )
    result = gateway.ssh("debug", web1, "sh", "-c", shlex.quote(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started", result.stdout
    assert result.stderr.count("mount: permission denied") == 2, result.stderr  # EPERM
    events = gateway.since(mark, lambda e: e["event"] == "session.end")
    end = next(e for e in events if e["event"] == "session.end")
    assert end["ended_processes"] == 1
    left = subprocess.run(["pgrep", "-f", f"sleep {seconds}"], capture_output=True, text=True, check=False)
    assert left.stdout == ""


def _login_ms(gw: Gateway) -> float:
    started = time.monotonic()
    result = gw.ssh("memory")
    assert result.returncode == 0, result.stderr
    return (time.monotonic() - started) * 1000


@pytest.mark.parametrize("trap", ["mkfifo /etc/passwd", "ln -s /etc/shadow /etc/passwd"])
def test_a_hostile_passwd_is_refused_and_blocks_nobody(
    gw: Gateway, containers: Containers, trap: str
) -> None:
    target = containers.run(f"trap{secrets.token_hex(2)}")
    made = _docker("exec", target, "sh", "-c", f"rm -f /etc/passwd && {trap}")
    assert made.returncode == 0, made.stderr
    quiet = sorted(_login_ms(gw) for _ in range(3))[1]
    mark = gw.mark()
    timings: list[float] = []
    watcher = threading.Thread(target=lambda: timings.extend(_login_ms(gw) for _ in range(3)))
    started = time.monotonic()
    watcher.start()
    result = gw.ssh("nobody", target, "id", timeout=10)
    took = time.monotonic() - started
    watcher.join(30)
    assert result.returncode != 0
    assert took < 2, took
    line = result.stderr.strip()
    assert line.startswith("gateway: /etc/passwd in the container is"), line
    assert len(line.splitlines()) == 1
    assert max(timings) < quiet + 1000, (quiet, timings)
    ends = gw.since(mark, lambda e: e["event"] == "session.end")
    assert any("/etc/passwd" in str(e.get("error")) for e in ends if e["event"] == "session.end")


def test_the_pty_lives_in_the_container(gateway: Gateway, web1: str) -> None:
    child = spawn(gateway.ssh_argv("debug", web1, opts=("-tt",)))
    child.sendline('t=$(tty); echo "TTY=$t"; ls -l "$t" >/dev/null && echo NODE-OK')
    child.expect(r"TTY=(/dev/pts/\d+)")
    child.expect("NODE-OK")
    child.sendline("stty size; exit 5")
    child.expect(r"\d+ \d+")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5


def test_privileged_keeps_host_root_with_a_warning_and_an_audit_field(gw: Gateway, web1: str) -> None:
    mark = gw.mark()
    ours = _via_gateway(gw, "rootshell", web1, "cat", "/proc/self/status")
    assert ours["Seccomp"] == "0"
    assert int(ours["CapEff"], 16) & ~0xA80425FB  # more than the container has: host root
    allow = next(e for e in gw.since(mark) if e["event"] == "request.allow")
    assert allow["privileged"] is True
    checked = gateway_cli("policy", "check", "--policies", str(gw.policies), "--keys", str(gw.keydir))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "warning: action rootshell is privileged" in checked.stdout + checked.stderr
    explained = gateway_cli(
        "policy",
        "explain",
        "betty",
        "rootshell",
        web1,
        "--policies",
        str(gw.policies),
        "--keys",
        str(gw.keydir),
    )
    assert "host root" in explained.stdout


def _hold_as_tracer(pid: int, seconds: float) -> threading.Event:
    """Another tracer of *pid* (as a second gateway reading the same container would be), for a while."""
    import ctypes  # noqa: PLC0415

    libc = ctypes.CDLL(None, use_errno=True)
    held = threading.Event()

    def hold() -> None:
        assert libc.ptrace(0x4206, pid, None, None) == 0  # PTRACE_SEIZE
        held.set()
        time.sleep(seconds)
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(5)
    return held


def test_twenty_shells_at_once_into_one_container_over_two_workers_all_run_confined(
    own_gateway: Any, containers: Containers
) -> None:
    """A fresh container (nothing read of it yet), 20 `debug` shells at once over two workers, while
    something else traces its process: every shell waits its turn and runs, with the container's filter."""
    gw = own_gateway("--workers", "2", policy=POLICY.replace("{prefix}", containers.prefix))
    target = containers.run(f"web-burst{secrets.token_hex(2)}")
    pid = int(_docker("inspect", "-f", "{{.State.Pid}}", target).stdout)
    _hold_as_tracer(pid, 0.5)
    procs = [
        subprocess.Popen(gw.ssh_argv("debug", target, "cat", "/proc/self/status"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        for _ in range(20)
    ]  # fmt: skip
    results = [p.communicate(timeout=60) for p in procs]
    failed = [(p.returncode, err) for p, (_, err) in zip(procs, results, strict=True) if p.returncode != 0]
    assert not failed, failed
    assert all(_status(out)["Seccomp"] == "2" for out, _ in results)
