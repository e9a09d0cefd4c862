"""A short coverage-guided fuzzing run of each target (the long run is in the README)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("target", "runs"), [("command", 20000), ("policy", 3000)])
def test_fuzz_smoke(target: str, runs: int, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fuzz.targets", target, f"-runs={runs}", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
