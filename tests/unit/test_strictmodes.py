"""StrictModes: no serving from files that others could change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.strictmodes import check

ROOT = Path(__file__).resolve().parents[2]


def test_safe_directories_pass(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir(mode=0o755)
    (tmp_path / "p" / "a.yaml").write_text("version: 1\n")
    check(tmp_path / "p")


@pytest.mark.parametrize("which", ["dir", "file"])
def test_group_or_world_writable_is_refused(tmp_path: Path, which: str) -> None:
    directory = tmp_path / "p"
    directory.mkdir(mode=0o755)
    target = directory / "a.yaml"
    target.write_text("version: 1\n")
    (directory if which == "dir" else target).chmod(0o777 if which == "dir" else 0o666)
    with pytest.raises(ConfigError, match="writable by group or others"):
        check(directory)


def test_serve_refuses_then_the_flag_allows(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text((ROOT / "policies" / "example.yaml").read_text())
    policies.chmod(0o777)
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", "127.0.0.1:0", "--policies", str(policies),
            "--keys", str(ROOT / "keys"), "--state", str(tmp_path / "state")]  # fmt: skip
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode != 0
    assert "refusing to start" in refused.stderr
    assert str(policies) in refused.stderr
    proc = subprocess.Popen(
        [*argv, "--no-strict-modes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0
