"""Attack 7: root cuts the tail of the audit chain and fixes up the chain state.

Before the fix `audit verify` said intact after the last records were deleted
and `chain.state` rewritten (or deleted), deleting `checkpoints.jsonl` passed
even with `--pubkey`, and `ssh audit@HOST verify` never checked checkpoints.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import chain, store
from gateway.audit.store import ChainState
from tests.e2e.conftest import Gateway, gateway_cli, stop_gateway

pytestmark = pytest.mark.e2e


def _verify(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return gateway_cli("audit", "verify", "--state", str(state), *extra)


def _pubkey(state: Path) -> tuple[str, str]:
    return "--pubkey", str(state / "audit" / "checkpoint.pub")


@pytest.fixture
def stopped(own_gateway: Any) -> Gateway:
    """A gateway that served a few sessions and stopped cleanly (a final checkpoint)."""
    gw: Gateway = own_gateway()
    for _ in range(3):
        assert gw.ssh("memory", key="dan").returncode == 0
    assert stop_gateway(gw) == 0
    return gw


def _cut_tail(state: Path, records: int) -> int:
    """Delete the last *records* lines and rewrite chain.state to match: what root can do."""
    directory = state / "audit"
    path = store.log_files(directory)[-1]
    lines = path.read_bytes().splitlines(keepends=True)[:-records]
    path.write_bytes(b"".join(lines))
    k0 = bytes.fromhex((directory / "initial.key").read_text().strip())
    seq = sum(len(p.read_bytes().splitlines()) for p in store.log_files(directory))
    head = chain.digest(lines[-1].rstrip(b"\n"))
    store.write_state(
        directory, ChainState(seq, head, chain.evolve(k0, seq).hex(), path.name, path.stat().st_size)
    )
    return seq


def test_a_clean_stop_is_fully_anchored(stopped: Gateway) -> None:
    result = _verify(stopped.state, *_pubkey(stopped.state))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 records after it not yet anchored" in result.stdout
    assert "checkpoints, last anchored seq" in result.stdout


def test_a_cut_tail_is_caught_by_the_checkpoints(stopped: Gateway) -> None:
    end = _cut_tail(stopped.state, 3)
    result = _verify(stopped.state, *_pubkey(stopped.state))
    assert result.returncode == 1
    assert "truncated-tail" in result.stderr
    assert f"the chain ends at seq {end}" in result.stderr


def test_a_missing_chain_state_fails(stopped: Gateway) -> None:
    (stopped.state / "audit" / "chain.state").unlink()
    result = _verify(stopped.state)
    assert result.returncode == 1
    assert "missing-state" in result.stderr


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_missing_checkpoints_fail_with_a_pubkey(stopped: Gateway, how: str) -> None:
    log = stopped.state / "audit" / "checkpoints.jsonl"
    if how == "deleted":
        log.unlink()
    else:
        log.write_text("")
    result = _verify(stopped.state, *_pubkey(stopped.state))
    assert result.returncode == 1
    assert "missing-checkpoints" in result.stderr


def test_verify_over_ssh_checks_checkpoints(own_gateway: Any) -> None:
    gw: Gateway = own_gateway()
    assert gw.ssh("memory", key="dan").returncode == 0
    ok = gw.ssh("audit", "verify", key="charlotte")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "checkpoints, last anchored seq" in ok.stdout
    (gw.state / "audit" / "checkpoints.jsonl").unlink()
    cut = gw.ssh("audit", "verify", key="charlotte")
    assert cut.returncode == 1
    assert "missing-checkpoints" in cut.stdout


def test_the_checkpoint_key_can_live_elsewhere(own_gateway: Any, tmp_path: Path) -> None:
    key = tmp_path / "offhost" / "checkpoint.key"
    key.parent.mkdir(mode=0o700)
    gw: Gateway = own_gateway("--checkpoint-key", str(key))
    assert gw.ssh("memory", key="dan").returncode == 0
    assert stop_gateway(gw) == 0
    assert key.exists()
    assert not (gw.state / "audit" / "checkpoint.key").exists()
    result = _verify(gw.state, *_pubkey(gw.state))
    assert result.returncode == 0, result.stdout + result.stderr
