"""Groups, expires and from: loaded from YAML, then decided as a table."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.policy import Allow, Deny, DenyCode, Policy, Request, Target, decide
from tests.unit.policy.conftest import Write

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

POLICY = """\
version: 1
groups:
  sre: [betty, dan]
actions:
  debug: {type: shell}
  memory: {type: host, command: [free]}
grants:
  - principals: ["@sre"]
    actions: [memory]
    from: ["10.0.0.0/8", "::1/128"]
  - principals: [eve]
    actions: [debug]
    targets: ["web*"]
    expires: 2026-06-01T13:00:00Z
  - principals: [eve]
    actions: [memory]
    expires: 2026-05-01
"""


@pytest.fixture
def policy(write: Write, load: Callable[[], Policy]) -> Policy:
    write("p.yaml", POLICY)
    return load()


@pytest.mark.parametrize(
    ("principal", "action", "target", "source", "now", "expected"),
    [
        ("betty", "memory", None, "10.1.2.3", NOW, "allow"),
        ("dan", "memory", None, "::1", NOW, "allow"),
        ("dan", "memory", None, "192.168.1.1", NOW, DenyCode.SOURCE),
        ("dan", "memory", None, None, NOW, DenyCode.SOURCE),
        ("dan", "memory", None, "not-an-ip", NOW, DenyCode.SOURCE),
        ("eve", "memory", None, "10.1.2.3", NOW, DenyCode.EXPIRED),
        ("eve", "debug", "web1", "1.2.3.4", NOW, "allow"),
        ("eve", "debug", "web1", "1.2.3.4", NOW + timedelta(hours=1), DenyCode.EXPIRED),
        ("eve", "debug", "db1", "1.2.3.4", NOW, DenyCode.NOT_GRANTED),
        ("charlie", "memory", None, "10.1.2.3", NOW, DenyCode.NOT_GRANTED),
    ],
)
def test_decisions(
    policy: Policy,
    principal: str,
    action: str,
    target: str | None,
    source: str | None,
    now: datetime,
    expected: object,
) -> None:
    decision = decide(
        policy, Request(principal, action, Target(target) if target else None, source=source, now=now)
    )
    if expected == "allow":
        assert isinstance(decision, Allow)
    else:
        assert isinstance(decision, Deny)
        assert decision.code == expected


def test_unknown_group_and_member(write: Write, problems: Callable[[], list[str]]) -> None:
    write(
        "p.yaml",
        "version: 1\ngroups:\n  sre: [betty, zed]\nactions:\n  m: {type: host, command: [ls]}\ngrants:\n  - principals: ['@ops']\n    actions: [m]\n",
    )
    found = problems()  # a member without a key is a warning (revoking a key never breaks the policy)
    assert len(found) == 1
    assert found[0].startswith("p.yaml:7:18: ") and "unknown group '@ops'" in found[0]


def test_bad_from_and_expires(write: Write, problems: Callable[[], list[str]]) -> None:
    write(
        "p.yaml",
        "version: 1\nactions:\n  m: {type: host, command: [ls]}\ngrants:\n  - principals: [betty]\n    actions: [m]\n    from: [10.0.0.300/8]\n    expires: soon\n",
    )
    found = problems()
    assert [p.split(": ")[0] for p in found] == ["p.yaml:7:12", "p.yaml:8:14"]


def test_check_warns_about_expiring_grants(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    soon = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (policies / "p.yaml").write_text(
        f"version: 1\nactions:\n  m: {{type: host, command: [ls]}}\ngrants:\n  - principals: [betty]\n    actions: [m]\n    expires: {soon}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "policy",
            "check",
            "--policies",
            str(policies),
            "--keys",
            str(ROOT / "keys"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "p.yaml:7:14: warning: grants[0] expires soon" in result.stderr


def _schema() -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "policy", "schema"], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_schema_validates_the_examples_and_rejects_a_broken_one(examples: Path) -> None:
    schema = _schema()
    for path in sorted((examples / "policies").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    broken = yaml.safe_load("version: 1\nactions:\n  x: {type: shell, comand: [sh]}\n")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(POLICY.replace("type: host", "type: hots")), schema)


def test_show_and_explain(examples: Path) -> None:
    run = [sys.executable, "-m", "gateway", "policy"]
    shown = subprocess.run(
        [*run, "show", "--principal", "dan"], capture_output=True, text=True, check=True, cwd=examples
    )
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:3] == ["principal", "action", "type"]
    assert all(line.startswith("dan ") for line in lines[1:])
    assert any(" restart " in line for line in lines)
    denied = subprocess.run(
        [*run, "explain", "betty", "restart", "web1"],
        capture_output=True,
        text=True,
        check=False,
        cwd=examples,
    )
    assert denied.returncode == 1
    assert denied.stdout.startswith("deny: no grant covers")
