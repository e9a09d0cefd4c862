"""Four eyes over plain SSH: a reason, approvals by two other principals, in the same connection."""

from __future__ import annotations

import re
import shlex
import signal
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
  modsh: {type: shell, allow_args: true}
  why: {type: host, command: [echo, done]}
  brief: {type: host, command: [echo, brief]}
grants:
  - principals: [betty]
    actions: [why]
    reason: required
  - principals: [betty]
    actions: [brief]
    approval: [{from: [eve], count: 1}]
    approval_window: 2
  - principals: [betty]
    actions: [foureyes]
    targets: ["{prefix}-*"]
    reason: "^INC-[0-9]+"
    approval:
      - {from: [security], count: 1}
      - {from: [leads], count: 1}
    approval_window: 1h
  - principals: [eve, dan, betty, charlotte]
    actions: [approve]
  - principals: [dan]
    actions: [modsh]
    targets: ["{prefix}-*"]
    moderated: {by: [charlotte], count: 1}
"""

REQUEST = re.compile(r"request (R-[0-9A-F]{6}); waiting")
MODERATION = re.compile(r"waiting for a moderator: ssh approve@HOST watch (R-[0-9A-F]{6})")


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
    listed = gw.ssh("audit", "sessions", "list", key="charlotte")
    assert f"{request} by eve,dan" in listed.stdout, listed.stdout
    shown = gw.ssh("audit", "sessions", "show", allow["session_id"], key="charlotte")
    assert '"INC-42"' in shown.stdout and request in shown.stdout


def test_a_denial_ends_the_wait(gw: Gateway, containers: Containers) -> None:
    target = containers.run(f"deny{time.monotonic_ns() % 10000}")
    proc, request = _waiting(gw, target, "echo", "never")
    denied = gw.ssh("approve", "deny", request, "not", "now", key="dan")
    assert denied.returncode == 0, denied.stderr
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and out == ""
    assert err.strip() == f"gateway: request {request} was denied by dan: not now"


def test_the_reason_hint_works_as_typed_in_a_posix_shell(gw: Gateway) -> None:
    """The hint's own form, with spaces in the reason, through /bin/sh: the reason arrives whole."""
    mark = gw.mark()
    missing = gw.ssh("why")
    assert missing.returncode == 1
    hint = missing.stderr.strip().split("needs a reason: ", 1)[1]
    assert hint == "ssh -o 'SetEnv=GATEWAY_REASON=\"...\"' why@HOST", hint
    common = " ".join(shlex.quote(word) for word in gw.ssh_argv("why")[1:-1])
    line = hint.replace("...", "INC-42 disk full").replace("ssh ", f"ssh {common} ", 1)
    typed = subprocess.run(
        ["/bin/sh", "-c", line.replace("@HOST", "@127.0.0.1")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (typed.returncode, typed.stdout) == (0, "done\n"), typed.stderr
    allow = next(e for e in gw.since(mark) if e["event"] == "request.allow")
    assert allow["reason"] == "INC-42 disk full"


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


def _moderated(gw: Gateway, target: str) -> tuple[subprocess.Popen[str], str]:
    argv = gw.ssh_argv("modsh", target, "sh", "-c", "'echo started; sleep 60'", key="dan")
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = MODERATION.search(line)
    assert found and "is moderated (1 of charlotte)" in line, line
    return proc, found.group(1)


def _watch(gw: Gateway, key: str) -> subprocess.Popen[bytes]:
    argv = gw.ssh_argv("approve", "watch", key, key="charlotte")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE)


def test_a_moderated_session_runs_while_its_moderator_watches(gw: Gateway, web1: str) -> None:
    mark = gw.mark()
    proc, key = _moderated(gw, web1)
    time.sleep(0.5)
    assert proc.poll() is None  # nobody watches: nothing runs
    assert proc.stdout is not None
    watcher = _watch(gw, key)
    assert proc.stdout.readline() == "started\n"  # the moderator came: it runs
    time.sleep(1.0)
    watcher.kill()  # the moderator leaves
    watcher.communicate()
    started = time.monotonic()
    _, err = proc.communicate(timeout=15)
    assert time.monotonic() - started < 10
    assert proc.returncode == 1 and "the moderators left" in err
    events = gw.since(mark, lambda e: e["event"] == "moderator.left")
    kinds = [e["event"] for e in events]
    assert "moderator.joined" in kinds and "moderator.left" in kinds
    allow = next(e for e in events if e["event"] == "request.allow" and e.get("action") == "modsh")
    assert allow["moderation"] == key and allow["moderators"] == ["charlotte"]


def test_a_moderator_ends_the_session_with_ctrl_bracket(gw: Gateway, web1: str) -> None:
    proc, key = _moderated(gw, web1)
    assert proc.stdout is not None
    watcher = _watch(gw, key)
    assert proc.stdout.readline() == "started\n"
    assert watcher.stdin is not None
    watcher.stdin.write(b"\x1d")
    watcher.stdin.flush()
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 1 and "ended by moderator charlotte" in err
    watcher.kill()
    watcher.communicate()


def test_the_requester_cannot_moderate_and_a_stranger_may_not(gw: Gateway, web1: str) -> None:
    proc, key = _moderated(gw, web1)
    try:
        stranger = gw.ssh("approve", "watch", key, key="eve")
        assert stranger.returncode == 1 and f"you may not moderate {key}" in stranger.stderr
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()


def test_the_reason_asked_on_a_terminal(gw: Gateway, web1: str) -> None:
    import pexpect  # noqa: PLC0415

    child = pexpect.spawn(
        gw.ssh_argv("foureyes", web1, "echo", "typed-reason-ok", opts=("-tt",))[0],
        gw.ssh_argv("foureyes", web1, "echo", "typed-reason-ok", opts=("-tt",))[1:],
        timeout=20, encoding="utf-8", env={"TERM": "xterm", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    child.expect("reason: ")
    child.send("INC-77\r")
    child.expect(r"request (R-[0-9A-F]{6}); waiting")
    request = child.match.group(1)
    assert gw.ssh("approve", request, key="eve").returncode == 0
    assert gw.ssh("approve", request, key="dan").returncode == 0
    child.expect("typed-reason-ok")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_a_pending_request_survives_a_restart(
    gateway: Gateway, tmp_path: Any, containers: Containers
) -> None:
    import shutil  # noqa: PLC0415

    from tests.e2e.conftest import start_gateway, stop_gateway  # noqa: PLC0415

    policies = tmp_path / "policies"
    shutil.copytree(gateway.policies, policies)
    (policies / "extra.yaml").write_text(POLICY.replace("{prefix}", containers.prefix))
    first = start_gateway(tmp_path / "state", policies, gateway.keydir, gateway.keys)
    target = containers.run(f"persist{time.monotonic_ns() % 10000}")
    proc, request = _waiting(first, target, "true")
    proc.kill()
    proc.communicate()
    assert stop_gateway(first) == 0
    second = start_gateway(tmp_path / "state", policies, gateway.keydir, gateway.keys)
    try:
        listed = second.ssh("approve", key="eve")
        assert request in listed.stdout, listed.stdout
        assert second.ssh("approve", request, key="eve").returncode == 0
        assert second.ssh("approve", request, key="dan").returncode == 0
        again = second.ssh("foureyes", target, "echo", "after-restart", opts=_reason("INC-9"))
        assert (again.returncode, again.stdout) == (0, "after-restart\n")
    finally:
        stop_gateway(second)


def test_the_reason_through_paramiko(gw: Gateway) -> None:
    import paramiko  # noqa: PLC0415

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - a private test server
    client.connect("127.0.0.1", gw.port, username="why", key_filename=str(gw.keys["betty"]),
                   look_for_keys=False, allow_agent=False, timeout=15)  # fmt: skip
    try:
        _, out, err = client.exec_command("", environment={"GATEWAY_REASON": "INC-1 disk full"})
        assert out.read() == b"done\n" and out.channel.recv_exit_status() == 0, err.read()
        _, out, err = client.exec_command("")
        assert out.channel.recv_exit_status() == 1 and b"needs a reason" in err.read()
    finally:
        client.close()


def test_an_expired_window_asks_again(gw: Gateway) -> None:
    argv = gw.ssh_argv("brief")
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    request = REQUEST.search(proc.stderr.readline())
    assert request, "no request line"
    assert gw.ssh("approve", request.group(1), key="eve").returncode == 0
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, "brief\n")
    assert gw.ssh("brief").stdout == "brief\n"  # inside the 2 s window: at once
    time.sleep(2.5)
    again = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert again.stderr is not None
    line = again.stderr.readline()
    assert "needs approval (1 of eve)" in line, line  # the window is over: a new request
    again.kill()
    again.communicate()


HELP = """\
version: 1
actions:
  help: {type: help}
grants:
  - principals: [betty, dan]
    actions: [help]
"""


def test_help_lists_only_the_callers_grants_and_refusals_point_to_it(
    own_gateway: Any, containers: Containers, web1: str
) -> None:
    gw = own_gateway(policy=HELP)
    shown = gw.ssh("help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("what betty may do (policy ")
    assert "ssh -t debug@HOST TARGET [ARGS...]" in shown.stdout and f"running: {web1}" in shown.stdout
    assert "ssh memory@HOST" in shown.stdout
    assert "audit" not in shown.stdout  # charlotte's grant is not betty's business
    ungranted = gw.ssh("memory", key="eve")
    assert (
        ungranted.stderr == "gateway: memory: permission denied (ssh help@HOST lists what you may do)\n"
    )  # help needs no grant: the hint is for everyone
    eves = gw.ssh("help", key="eve")  # no grant of help, none of anything: still answered, with nothing
    assert eves.returncode == 0, eves.stderr
    assert eves.stdout == "eve may do nothing\n", eves.stdout
    missing = gw.ssh("debug", f"{containers.prefix}-nosuch")
    other = gw.ssh("hello", "x")
    assert missing.stderr.endswith("(ssh help@HOST lists what you may do)\n"), missing.stderr
    assert other.stderr.endswith("(ssh help@HOST lists what you may do)\n"), other.stderr


MODERATOR_ONLY = """\
version: 1
actions:
  modsh: {type: shell, allow_args: true}
grants:
  - principals: [dan]
    actions: [modsh]
    targets: ["{prefix}-*"]
    moderated: {by: [charlotte], count: 1}
  - principals: [charlotte]
    actions: [audit]
"""


@pytest.mark.parametrize("how", ["approve", "audit"])
def test_a_moderator_without_an_approve_grant_lists_and_joins(
    own_gateway: Any, containers: Containers, web1: str, how: str
) -> None:
    """The policy names charlotte as the moderator and grants her only `audit`: she lists and joins."""
    gw = own_gateway(policy=MODERATOR_ONLY.replace("{prefix}", containers.prefix))
    proc, key = _moderated(gw, web1)
    try:
        listed = gw.ssh("approve", key="charlotte")
        assert listed.returncode == 0, listed.stderr
        assert (
            f"{key}  dan  modsh {web1}" in listed.stdout and f"ssh approve@HOST watch {key}" in listed.stdout
        )
        assert "waiting for a moderator" in listed.stdout
        sessions = gw.ssh("audit", "sessions", "list", key="charlotte")
        row = next((line.split() for line in sessions.stdout.splitlines() if f"waiting {key}" in line), [])
        assert row[4:7] == ["dan", "modsh", web1], sessions.stdout  # sessions list names it, with its id
        approving = gw.ssh("approve", key, key="charlotte")  # watching is all the rule gives her
        assert approving.returncode == 1 and "you may only watch" in approving.stderr
        assert gw.ssh("approve", key="eve").returncode == 1  # neither an approver nor a moderator
        words = ("approve", "watch", key) if how == "approve" else ("audit", "sessions", "watch", key)
        watcher = subprocess.Popen(
            gw.ssh_argv(*words, key="charlotte"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"  # she came: it runs
        watcher.kill()
        watcher.communicate()
    finally:
        proc.kill()
        proc.communicate()


BRIEF = """\
version: 1
actions:
  brief: {type: host, command: [echo, brief]}
  approve: {type: approve}
grants:
  - principals: [betty]
    actions: [brief]
    approval: [{from: [eve], count: 1}]
  - principals: [eve]
    actions: [approve]
"""


@pytest.mark.parametrize("removed", [True, False])
def test_a_decision_is_bound_to_the_policy_that_made_it(own_gateway: Any, removed: bool) -> None:
    """The grant removed while the request waits: refused after the approval, both digests in the record.
    The grant kept (another change reloaded): it runs, and its allow record names the policy that allowed it."""
    gw = own_gateway("--workers", "1", policy=BRIEF)
    proc = subprocess.Popen(gw.ssh_argv("brief"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    assert proc.stderr is not None
    found = REQUEST.search(proc.stderr.readline())
    assert found
    mark = gw.mark()
    changed = (
        BRIEF.replace("    actions: [brief]\n", "    actions: [approve]\n") if removed else BRIEF + "# x\n"
    )
    (gw.policies / "extra.yaml").write_text(changed)
    gw.proc.send_signal(signal.SIGHUP)
    reloads = [
        e for e in gw.since(mark, lambda e: e["event"] == "policy.reload") if e["event"] == "policy.reload"
    ]
    assert reloads, "the reload happened"
    approved = gw.ssh("approve", found.group(1), key="eve")
    assert approved.returncode == 0, approved.stderr
    out, err = proc.communicate(timeout=30)
    records = gw.since(
        mark, lambda e: e["event"] in ("request.deny", "request.allow") and e.get("action") == "brief"
    )
    decided = [
        e for e in records if e["event"] in ("request.deny", "request.allow") and e.get("action") == "brief"
    ]
    first = next(e["policy"] for e in gw.events() if e["event"] == "server.start")
    if removed:
        assert proc.returncode == 1 and out == ""
        assert err == "gateway: brief: permission denied: the policy changed while it waited; ask again\n", (
            err
        )
        deny = decided[-1]
        assert deny["event"] == "request.deny" and deny["decided_policy"] == first
        assert deny["policy"] == reloads[0]["policy"] != first
    else:
        assert (proc.returncode, out) == (0, "brief\n"), err
        allow = decided[-1]
        assert allow["event"] == "request.allow" and allow["policy"] == reloads[0]["policy"] != first
