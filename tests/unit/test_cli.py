"""`gateway policy check` and `policy explain`, run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.events import Event

ROOT = Path(__file__).resolve().parents[2]


def _gateway(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_check_the_repo_example(examples: Path) -> None:
    result = _gateway("policy", "check", "--policies", "policies", "--keys", "keys", cwd=examples)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def test_check_reports_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "version: 1\nactions:\n  x: {type: nope}\ngrants:\n  - {principals: [zed], actions: [memory]}\n"
    )
    (tmp_path / "b.yaml").write_text("version: 1\nbogus: 1\n")
    result = _gateway("policy", "check", "--policies", str(tmp_path), "--keys", "keys")
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{tmp_path}/a.yaml:3:")
    assert lines[1].startswith(f"{tmp_path}/b.yaml:2:1: ")


def test_explain(examples: Path) -> None:
    allowed = _gateway("policy", "explain", "betty", "debug", "web1", cwd=examples)
    assert allowed.returncode == 0
    assert "allow" in allowed.stdout
    assert "policies/example.yaml:" in allowed.stdout
    denied = _gateway("policy", "explain", "dan", "debug", "web2", cwd=examples)
    assert denied.returncode == 1
    assert "deny" in denied.stdout


def test_python_dash_m_and_help() -> None:
    result = _gateway("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout


def test_policy_test_passes_on_the_example_and_writes_junit(tmp_path: Path, examples: Path) -> None:
    import xml.etree.ElementTree as ET  # noqa: PLC0415

    junit = tmp_path / "junit.xml"
    result = _gateway("policy", "test", "--junit", str(junit), "policies/tests", cwd=examples)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(" passed, 0 failed")
    suite = ET.parse(junit).getroot()  # noqa: S314 - our own output
    assert suite.tag == "testsuite" and suite.get("failures") == "0" and int(suite.get("tests") or 0) > 10
    first = suite.find("testcase")
    assert (
        first is not None and first.get("file") == "policies/tests/example.yaml" and first.get("line") == "2"
    )


def test_policy_test_names_a_failing_case_and_the_grant(tmp_path: Path, examples: Path) -> None:
    cases = tmp_path / "t.yaml"
    cases.write_text(
        "- {principal: betty, action: debug, target: web1, expect: deny}\n"
        "- {principal: betty, action: debug, target: cache1, expect: deny}\n"
    )
    junit = tmp_path / "j.xml"
    result = _gateway("policy", "test", "--junit", str(junit), str(cases), cwd=examples)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"{cases}:1: betty debug web1: expected allow=False, got allow=True (granted by "
    )
    assert "policies/example.yaml:" in lines[0]
    assert lines[-1] == "1 passed, 1 failed"
    assert b"<failure" in junit.read_bytes()


def test_policy_test_load_errors_name_file_line_column(tmp_path: Path) -> None:
    cases = tmp_path / "t.yaml"
    cases.write_text(
        "- {principal: zed, action: debug, target: web1, expect: allow}\n- {principal: betty, actoin: x}\n"
    )
    result = _gateway("policy", "test", str(cases))
    assert result.returncode == 2
    assert f"{cases}:1:15: case 1: unknown principal 'zed'" in result.stderr
    assert f"{cases}:2:" in result.stderr and "unknown field 'actoin'" in result.stderr


def test_export_key_prints_k0_and_removes_it(tmp_path: Path) -> None:
    from gateway.audit import AuditLog  # noqa: PLC0415

    log = AuditLog(tmp_path / "audit")
    log.emit(Event.SERVER_STOP)
    log.close()
    k0 = (tmp_path / "audit" / "initial.key").read_text().strip()
    kept = _gateway("audit", "export-key", "--state", str(tmp_path), "--keep")
    assert kept.stdout.strip() == k0 and (tmp_path / "audit" / "initial.key").exists()
    moved = _gateway("audit", "export-key", "--state", str(tmp_path))
    assert moved.returncode == 0 and moved.stdout.strip() == k0
    assert not (tmp_path / "audit" / "initial.key").exists()
    assert "removed" in moved.stderr


def test_verify_says_what_k0_on_the_host_weakens(tmp_path: Path) -> None:
    from gateway.audit import AuditLog  # noqa: PLC0415

    log = AuditLog(tmp_path / "audit")
    log.emit(Event.SERVER_STOP)
    log.close()
    here = _gateway("audit", "verify", "--state", str(tmp_path))
    assert here.returncode == 0 and here.stdout.startswith("ok:")
    assert "K_0 is still on this host" in here.stdout and "export-key" in here.stdout
    k0 = tmp_path / "k0"
    k0.write_text(_gateway("audit", "export-key", "--state", str(tmp_path)).stdout)
    off = _gateway("audit", "verify", "--state", str(tmp_path), "--key", str(k0))
    assert off.returncode == 0 and "still on this host" not in off.stdout
