"""`gateway policy check` and `policy explain`, run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_check_the_repo_example() -> None:
    result = _gateway("policy", "check", "--policies", "policies", "--keys", "keys")
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


def test_explain() -> None:
    allowed = _gateway("policy", "explain", "betty", "debug", "web1")
    assert allowed.returncode == 0
    assert "allow" in allowed.stdout
    assert "policies/example.yaml:" in allowed.stdout
    denied = _gateway("policy", "explain", "dan", "debug", "web1")
    assert denied.returncode == 1
    assert "deny" in denied.stdout


def test_python_dash_m_and_help() -> None:
    result = _gateway("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
