"""Four eyes over plain SSH: a reason, approvals by two other principals, in the same connection."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.conftest import Containers, Gateway, gateway_cli

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
groups:
  security: [eve]
  leads: [dan]
actions:
  foureyes: {type: shell, allow_args: true}
  approve: {type: approve}
grants:
  - principals: [betty]
    actions: [foureyes]
    targets: ["{prefix}-*"]
    reason: "^INC-[0-9]+"
    approval:
      - {from: [security], count: 1}
      - {from: [leads], count: 1}
    approval_window: 1h
  - principals: [eve, dan, betty]
    actions: [approve]
"""

REQUEST = re.compile(r"request (R-[0-9A-F]{6}); waiting")


@pytest.fixture
def gw(own_gateway: Any, containers: Containers) -> Gateway:
    """A gateway whose foureyes action needs a reason and two approvals."""
    started: Gateway = own_gateway(policy=POLICY.replace("{prefix}", containers.prefix))
    return started


def _reason(value: str) -> tuple[str, ...]:
    return ("-o", f"SetEnv=GATEWAY_REASON={value}")


def _waiting(gw: Gateway, target: str, *words: str) -> tuple[subprocess.Popen[str], str]:
    argv = gw.ssh_argv("foureyes", target, *words, opts=_reason("INC-42"))
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = REQUEST.search(line)
    assert found, line
    assert "needs approval (1 of security, 1 of leads)" in line
    return proc, found.group(1)


def test_two_approvals_from_other_principals_run_the_waiting_command(gw: Gateway, web1: str) -> None:
    mark = gw.mark()
    proc, request = _waiting(gw, web1, "echo", "ran-after-approval")
    own = gw.ssh("approve", request)  # betty's own
    assert own.returncode == 1 and "your own request" in own.stderr
    first = gw.ssh("approve", request, key="eve")
    assert first.returncode == 0 and "still needs more approvals" in first.stdout
    time.sleep(0.5)
    assert proc.poll() is None  # one rule met is not enough
    listed = gw.ssh("approve", key="dan")
    assert request in listed.stdout and "INC-42" in listed.stdout
    second = gw.ssh("approve", request, key="dan")
    assert second.returncode == 0 and "every rule is met" in second.stdout
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out == "ran-after-approval\n"
    again = gw.ssh("foureyes", web1, "echo", "within-window", opts=_reason("INC-43"))
    assert (again.returncode, again.stdout) == (0, "within-window\n")  # the window: no new request
    events = gw.since(mark, lambda e: e["event"] == "session.end")
    kinds = [e["event"] for e in events]
    assert kinds.count("request.approved") == 2 and "request.filed" in kinds
    allow = next(e for e in events if e["event"] == "request.allow" and e.get("action") == "foureyes")
    assert (
        allow["request"] == request and allow["approvers"] == ["eve", "dan"] and allow["reason"] == "INC-42"
    )


def test_a_denial_ends_the_wait(gw: Gateway, containers: Containers) -> None:
    target = containers.run(f"deny{time.monotonic_ns() % 10000}")
    proc, request = _waiting(gw, target, "echo", "never")
    denied = gw.ssh("approve", "deny", request, "not", "now", key="dan")
    assert denied.returncode == 0, denied.stderr
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and out == ""
    assert err.strip() == f"gateway: request {request} was denied by dan: not now"


def test_the_reason_is_required_and_must_match(gw: Gateway, web1: str) -> None:
    missing = gw.ssh("foureyes", web1, "true")
    assert missing.returncode == 1
    assert missing.stderr.startswith("gateway: foureyes ") and "needs a reason" in missing.stderr
    bad = gw.ssh("foureyes", web1, "true", opts=_reason("because"))
    assert bad.returncode == 1
    assert bad.stderr == f"gateway: the reason for foureyes {web1} must match ^INC-[0-9]+\n"


def test_policy_check_and_explain_show_the_conditions(gw: Gateway, web1: str) -> None:
    args = ("--policies", str(gw.policies), "--keys", str(gw.keydir))
    assert gateway_cli("policy", "check", *args).returncode == 0
    explained = gateway_cli("policy", "explain", "betty", "foureyes", web1, *args)
    assert (
        "conditions: needs a reason matching ^INC-[0-9]+ and approval (1 of security, 1 of leads"
        in explained.stdout
    )
