"""The shipped pre-commit hooks, run by real pre-commit against a throwaway policy repository, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def test_the_hooks_pass_a_good_policy_and_fail_a_bad_one(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"  # the hook repository: this checkout's hook file, committed
    hooks.mkdir()
    shutil.copy(ROOT / ".pre-commit-hooks.yaml", hooks)
    _git(hooks, "init", "-q")
    _git(hooks, "add", ".")
    _git(hooks, "commit", "-q", "-m", "hooks")
    rev = _git(hooks, "rev-parse", "HEAD").strip()
    repo = tmp_path / "policy-repo"
    shutil.copytree(ROOT / "policies", repo / "policies")
    shutil.copytree(ROOT / "keys", repo / "keys")
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n"
        "    hooks: [{id: gateway-policy-check}, {id: gateway-policy-test}]\n"
    )
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "policy")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}  # fmt: skip
    run = [sys.executable, "-m", "pre_commit", "run", "--all-files"]
    good = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "gateway policy check" in good.stdout and "Passed" in good.stdout
    broken = repo / "policies" / "example.yaml"
    broken.write_text(broken.read_text().replace("type: signal", "type: sigmal"))
    bad = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert "policies/example.yaml:" in bad.stdout and "Failed" in bad.stdout
    (repo / "policies" / "example.yaml").write_text((ROOT / "policies" / "example.yaml").read_text())
    (repo / "policies" / "tests" / "example.yaml").write_text(
        "- {principal: dan, action: debug, target: web2, expect: allow}\n"
    )
    failing = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert failing.returncode == 1
    assert "0 passed, 1 failed" in failing.stdout
