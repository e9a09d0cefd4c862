"""Attack surface 3: a least-privilege shell, ``via: exec``, point for point like nsenter.

``via: exec`` keeps the container's user, capabilities, seccomp profile and
cgroup, as nsenter now does too (``privileged: true`` aside).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Containers, Gateway, resize_then_exit, spawn

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
actions:
  xdebug: {type: shell, via: exec, allow_args: true}
  xuser: {type: shell, via: exec, user: "1000:1000", allow_args: true}
  nuser: {type: shell, user: "1000:1000", allow_args: true}
  xshort: {type: shell, via: exec, allow_args: true, max_duration: 1}
grants:
  - principals: [betty]
    actions: [xdebug, xuser, nuser, xshort]
    targets: ["{prefix}-*"]
"""


@pytest.fixture
def gw(own_gateway: Any, containers: Containers) -> Gateway:
    """A gateway with exec-mode actions."""
    started: Gateway = own_gateway(policy=POLICY.replace("{prefix}", containers.prefix))
    return started


def _status(gw: Gateway, action: str, target: str) -> dict[str, str]:
    result = gw.ssh(action, target, "grep", "-E", shlex.quote("^(CapEff|Seccomp):"), "/proc/self/status")
    assert result.returncode == 0, result.stderr
    return dict(line.split(":\t") for line in result.stdout.splitlines())


def test_exec_keeps_the_containers_profile_as_nsenter_does(gw: Gateway, web1: str) -> None:
    exec_mode, nsenter_mode = _status(gw, "xdebug", web1), _status(gw, "debug", web1)
    assert exec_mode["Seccomp"].strip() == "2"  # the container's seccomp filter
    assert nsenter_mode == exec_mode  # nsenter takes the same confinement (test_nsenter_confinement)


def test_exec_exit_status_stderr_and_stdin_eof(gw: Gateway, web1: str) -> None:
    result = gw.ssh("xdebug", web1, "sh", "-c", shlex.quote("echo out; echo err >&2; exit 7"))
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    echoed = gw.ssh("xdebug", web1, "cat", stdin="typed\n")
    assert (echoed.returncode, echoed.stdout) == (0, "typed\n")


def test_exec_cgroup_is_the_containers(gw: Gateway, web1: str) -> None:
    container = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", web1], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = gw.ssh("xdebug", web1, "cat", "/proc/self/cgroup")
    memory = next(line for line in result.stdout.splitlines() if ":memory:" in line)
    assert container in memory


@pytest.mark.parametrize("action", ["xuser", "nuser"])
def test_user_for_both_modes(gw: Gateway, web1: str, action: str) -> None:
    result = gw.ssh(action, web1, "id", "-u")
    assert (result.returncode, result.stdout.strip()) == (0, "1000")


def test_exec_pty_resize_ctrl_c_and_exit_status(gw: Gateway, web1: str) -> None:
    mark = gw.mark()
    child = spawn(gw.ssh_argv("xdebug", web1, opts=("-tt",)))
    child.sendline("sleep 30")
    time.sleep(0.5)
    child.sendcontrol("c")
    child.expect(r"[#$] ")
    child.sendline("echo mar''ker")
    child.expect("marker")
    resize_then_exit(child, 33, 101, 4)
    events = gw.since(mark, lambda e: e["event"] == "session.end")
    end = next(e for e in events if e["event"] == "session.end")
    assert end["exit_status"] == 4
    cast = (gw.state / str(end["recording"])).read_text().splitlines()
    kinds = {json.loads(line)[1] for line in cast[1:]}
    assert {"o", "i", "r"} <= kinds  # output, typed input, the resize


def test_exec_maximum_duration(gw: Gateway, web1: str) -> None:
    started = time.monotonic()
    result = gw.ssh("xshort", web1, "sleep", "20")
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "maximum duration" in result.stderr


def test_exec_hangup_kills_the_process(gw: Gateway, web1: str) -> None:
    child = spawn(gw.ssh_argv("xdebug", web1, "sleep", "777", opts=("-tt",)), prompt=False)
    time.sleep(1)
    child.terminate(force=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", "sleep 777"], capture_output=True, text=True, check=False)
        if not left.stdout.strip():
            break
        time.sleep(0.1)
    assert not left.stdout.strip()


def test_explain_and_show_state_the_mode(gw: Gateway, web1: str) -> None:
    from tests.e2e.conftest import gateway_cli  # noqa: PLC0415

    policies, keys = str(gw.policies), str(gw.keydir)
    explained = gateway_cli(
        "policy", "explain", "betty", "xdebug", web1, "--policies", policies, "--keys", keys
    )
    assert "via exec" in explained.stdout + explained.stderr
    shown = gateway_cli("policy", "show", "--policies", policies, "--keys", keys)
    assert "via nsenter" in shown.stdout and "via exec" in shown.stdout
    assert Path(policies).is_dir()
