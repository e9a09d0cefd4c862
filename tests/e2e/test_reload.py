"""Reload: SIGHUP and file watching swap the policy atomically; a broken edit keeps the old one."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.e2e.conftest import Gateway, spawn, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
def own(gateway: Gateway, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway with its own copy of the test policy, to edit."""
    policies = tmp_path / "policies"
    shutil.copytree(gateway.policies, policies)
    for extra in policies.glob("toolbox.yaml"):
        extra.unlink()
    gw = start_gateway(tmp_path / "state", policies, gateway.keydir, gateway.keys)
    yield gw
    assert stop_gateway(gw) == 0


def _revoke_memory_from_dan(gw: Gateway) -> None:
    path = gw.policies / "test.yaml"
    text = path.read_text()
    path.write_text(
        text.replace(
            "  - principals: [betty, dan]\n    actions: [memory, hello]",
            "  - principals: [betty]\n    actions: [memory, hello]",
        )
    )


def _until(predicate: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_sighup_reload_denies_what_was_allowed(own: Gateway) -> None:
    assert own.ssh("memory", key="dan").returncode == 0
    mark = own.mark()
    _revoke_memory_from_dan(own)
    own.proc.send_signal(signal.SIGHUP)
    assert _until(lambda: any(e["event"] == "policy.reload" for e in own.since(mark, wait=0)))
    denied = own.ssh("memory", key="dan")
    assert denied.returncode == 1
    assert denied.stderr == "gateway: memory: permission denied (ssh help@HOST lists what you may do)\n"
    reloads = [e for e in own.since(mark) if e["event"] == "policy.reload"]
    deny = next(e for e in own.since(mark) if e["event"] == "request.deny")
    assert deny["policy"] == reloads[-1]["policy"] != reloads[-1]["previous"]


def test_file_change_alone_reloads(own: Gateway) -> None:
    assert own.ssh("memory", key="dan").returncode == 0
    _revoke_memory_from_dan(own)
    assert _until(lambda: own.ssh("memory", key="dan").returncode == 1)


def test_broken_edit_keeps_the_old_policy(own: Gateway) -> None:
    mark = own.mark()
    path = own.policies / "test.yaml"
    path.write_text(path.read_text().replace("type: host", "type: hots", 1))
    own.proc.send_signal(signal.SIGHUP)
    assert _until(lambda: any(e["event"] == "policy.reload_failed" for e in own.since(mark, wait=0)))
    failed = next(e for e in own.since(mark) if e["event"] == "policy.reload_failed")
    assert any("unknown action type 'hots'" in error and "test.yaml:" in error for error in failed["errors"])
    assert own.ssh("memory", key="dan").returncode == 0  # the old policy is still in force


def test_live_session_survives_a_reload(own: Gateway, web1: str) -> None:
    argv = own.ssh_argv("debug", web1, opts=("-tt",))
    child = spawn(argv)
    path = own.policies / "test.yaml"
    path.write_text(path.read_text().replace("actions: [debug, console]", "actions: [console]"))
    own.proc.send_signal(signal.SIGHUP)
    assert _until(lambda: own.ssh("debug", web1, "true").returncode == 1)
    child.sendline("echo still-here")
    child.expect("still-here")
    child.sendline("exit 0")
    child.expect(pexpect.EOF)
