"""Every policy change audited with its meaning: `policy diff`, the reload record, `audit grants`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Gateway, gateway_cli, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

BASE = """\
version: 1
groups:
  sre: [betty, charlotte]
actions:
  uptime: {type: host, command: [uptime]}
  poke: {type: shell}
grants:
  - principals: ["@sre"]
    actions: [uptime]
  - principals: [dan]
    actions: [poke]
    targets: ["web*"]
"""


def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True)


def test_diff_between_two_git_revisions(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "policies").mkdir(parents=True)
    shutil.copytree(ROOT / "keys", repo / "keys")
    (repo / "policies" / "p.yaml").write_text(BASE)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    changed = BASE.replace(
        "sre: [betty, charlotte]", "sre: [betty, charlotte, dan]"
    )  # a principal joins a group
    changed = changed.replace(
        'targets: ["web*"]', 'targets: ["web1"]\n    expires: 2027-01-31'
    )  # narrowed, expiring
    (repo / "policies" / "p.yaml").write_text(changed)
    _git(repo, "commit", "-q", "-am", "two")
    result = subprocess.run(
        [str(Path(os.sys.executable).parent / "gateway"), "policy", "diff", "git:HEAD~1", "git:HEAD"],
        cwd=repo, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "dan gains: poke on web1 (until 2027-01-31T00:00:00+00:00)",
        "dan gains: uptime",
        "dan loses: poke on web*",
    ]
    same = subprocess.run(
        [str(Path(os.sys.executable).parent / "gateway"), "policy", "diff", "git:HEAD", "git:HEAD:policies"],
        cwd=repo, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert same.returncode == 0, same.stdout + same.stderr
    as_json = gateway_cli(
        "policy",
        "diff",
        "--json",
        "--keys",
        str(repo / "keys"),
        str(repo / "policies"),
        str(repo / "policies"),
    )
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["same"] is True


def test_a_reload_record_carries_the_change_and_audit_grants_answers(
    gateway: Gateway, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(BASE)
    gw = start_gateway(tmp_path / "state", policies, gateway.keydir, gateway.keys)
    try:
        before = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        mark = gw.mark()
        (policies / "p.yaml").write_text(BASE.replace('targets: ["web*"]', 'targets: ["web*", "db1"]'))
        gw.proc.send_signal(signal.SIGHUP)
        events = gw.since(mark, lambda e: e["event"] == "policy.reload")
        reload = next(e for e in events if e["event"] == "policy.reload")
        assert reload["changes"]["gained"] == 1 and reload["changes"]["complete"] is True
        assert reload["changes"]["changes"] == [["+", "dan", "poke", "db1", ""]]
    finally:
        assert stop_gateway(gw) == 0
    state = str(tmp_path / "state")
    then = gateway_cli("audit", "grants", "--state", state, "--principal", "dan", "--at", before)
    assert then.returncode == 0, then.stderr
    assert "poke on db1" not in then.stdout and "dan: poke on web*  since " in then.stdout
    now = gateway_cli("audit", "grants", "--state", state, "--principal", "dan")
    assert f"dan: poke on db1  since {reload['ts']}" in now.stdout
    first = now.stdout
    again = start_gateway(tmp_path / "state", policies, gateway.keydir, gateway.keys)  # a restart: a snapshot
    assert stop_gateway(again) == 0
    restarted = gateway_cli("audit", "grants", "--state", state, "--principal", "dan")
    assert restarted.stdout == first, "since: the first time in force, across restarts"
    collected = tmp_path / "collected" / "host1"
    collected.mkdir(parents=True)
    lines = [
        line
        for p in sorted((tmp_path / "state" / "audit").glob("audit-*.jsonl"))
        for line in p.read_text().splitlines()
    ]
    (collected / "audit.jsonl").write_text("\n".join(lines) + "\n")
    fleet = gateway_cli("audit", "grants", "--collected", str(tmp_path / "collected"), "--principal", "dan")
    assert f"host1: dan: poke on db1  since {reload['ts']}" in fleet.stdout, fleet.stdout
