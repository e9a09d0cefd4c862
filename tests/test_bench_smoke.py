"""The benchmark's smoke run: it must keep working (the figures are not asserted: no timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_bench_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    figures = {
        "connect",
        "bulk",
        "sessions",
        "decision",
        "door",
        "confine",
        "compliance",
        "evidence",
        "memory",
        "typing",
    }
    assert figures <= set(data)
    assert {"load_before", "load_after"} <= set(data)
    assert {"median", "min", "max", "n"} <= set(data["connect"]["gateway_first_byte_ms"])
    assert (tmp_path / "results.png").stat().st_size > 0
    assert "| figure |" in (tmp_path / "results.md").read_text()


@pytest.mark.e2e
def test_bench_fleet_smoke() -> None:
    """The fleet's cost (a private PostgreSQL, a fleet member against a single host) keeps running."""
    result = subprocess.run([sys.executable, "-m", "bench.fleet", "--smoke"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| an approval round trip" in result.stdout and "fleet member" in result.stdout


@pytest.mark.e2e
def test_privsep_bench_smoke(tmp_path: Path) -> None:
    """bench.privsep's before-and-after table, on a tiny load."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.privsep", "--runs", "2", "--typists", "10", "--rounds", "1",
         "--seconds", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "privsep.json").read_text())
    assert {"connect_separated_ms", "connect_one_process_ms", "prompt_separated_ms", "typing"} <= set(data)
    assert "| figure |" in (tmp_path / "privsep.md").read_text()
