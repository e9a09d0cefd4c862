"""Attack 2: a shell session leaves a process behind (setsid, a daemon) outside any limit.

Before the fix, ``setsid sleep N &`` outlived the session with host root's
capabilities, outside the container's cgroup, untracked by the gateway.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import time

import pytest

from tests.e2e.conftest import Gateway, spawn

pytestmark = pytest.mark.e2e


def _running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return found.stdout.split()


def _container_id(name: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def _session_end(gw: Gateway, mark: int) -> dict[str, object]:
    events = gw.since(mark, lambda e: e["event"] == "session.end")
    return next(e for e in events if e["event"] == "session.end")


def test_setsid_and_daemons_end_with_the_session(gateway: Gateway, web1: str) -> None:
    seconds = 100_000 + secrets.randbelow(900_000)  # a unique argv to look for
    mark = gateway.mark()
    # daemons close their output (or the session would wait for it, as with sshd)
    quiet = ">/dev/null 2>&1 </dev/null"
    script = (
        f"setsid sleep {seconds} {quiet} & (sleep {seconds + 1} {quiet} &) ;"
        f" (trap '' HUP; exec sleep {seconds + 2} {quiet}) &"
    )
    result = gateway.ssh("debug", web1, "sh", "-c", shlex.quote(script))
    assert result.returncode == 0, result.stderr
    end = _session_end(gateway, mark)
    assert end["ended_processes"] == 3
    deadline = time.monotonic() + 5
    while _running(f"sleep {seconds}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(f"sleep {seconds}") == []


def test_a_pty_session_that_hangs_up_leaves_nothing(gateway: Gateway, web1: str) -> None:
    seconds = 100_000 + secrets.randbelow(900_000)
    mark = gateway.mark()
    child = spawn(gateway.ssh_argv("debug", web1, opts=("-tt",)))
    child.sendline(f"setsid sleep {seconds} &")
    child.sendline("echo started")
    child.expect("started")
    time.sleep(0.3)
    assert _running(f"sleep {seconds}")
    child.terminate(force=True)  # the client goes away mid-session
    _session_end(gateway, mark)
    deadline = time.monotonic() + 5
    while _running(f"sleep {seconds}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(f"sleep {seconds}") == []


def test_session_processes_are_in_the_containers_cgroup(gateway: Gateway, web1: str) -> None:
    container = _container_id(web1)
    result = gateway.ssh("debug", web1, "cat", "/proc/self/cgroup")
    assert result.returncode == 0, result.stderr
    lines = [line.split(":", 2) for line in result.stdout.splitlines()]
    limited = {ctrl: path for _, ctrl, path in lines if ctrl in ("memory", "pids", "cpu", "")}
    assert limited, result.stdout
    assert all(container in path for path in limited.values()), result.stdout


def test_the_containers_memory_limit_applies(gateway: Gateway, containers: object, web1: str) -> None:
    """A session in a container limited to 32 MB cannot allocate 200 MB (it did as host root)."""
    from tests.e2e.conftest import Containers  # noqa: PLC0415

    assert isinstance(containers, Containers)
    small = containers.run("web-small", "--memory", "32m", "--memory-swap", "32m")
    # busybox `head -c` through a pipe into a shell variable: the shell must hold 200 MB
    script = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"
    result = gateway.ssh("debug", small, "sh", "-c", shlex.quote(script))
    assert result.returncode != 0 or result.stdout.strip() != "200000000"
