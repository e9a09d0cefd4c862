"""Soak: many concurrent sessions with traffic, then 0 errors, 0 lost audit events, a verified chain.

CI runs a small one; the long mode is GATEWAY_SOAK_SESSIONS=1000 GATEWAY_SOAK_SECONDS=120.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import asyncssh
import pytest

from tests.e2e.conftest import Gateway, gateway_cli, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e
SESSIONS = int(os.environ.get("GATEWAY_SOAK_SESSIONS", "60"))
SECONDS = float(os.environ.get("GATEWAY_SOAK_SECONDS", "8"))
POLICY = "version: 1\nactions:\n  echo: {type: host, command: [cat]}\ngrants:\n  - principals: [dan]\n    actions: [echo]\n"


async def _worker(port: int, key: asyncssh.SSHKey, deadline: float, start: asyncio.Semaphore) -> int:
    async with start:
        conn = await asyncssh.connect(
            "127.0.0.1", port, username="echo", client_keys=[key], known_hosts=None, agent_path=None
        )
    lines = 0
    async with conn:
        proc = await conn.create_process("")
        while asyncio.get_running_loop().time() < deadline:
            line = f"line {lines}\n"
            proc.stdin.write(line)
            assert await asyncio.wait_for(proc.stdout.readline(), 30) == line
            lines += 1
            await asyncio.sleep(0.5)
        proc.stdin.write_eof()
        result = await proc.wait()
        assert result.exit_status == 0
    return lines


async def _soak(port: int, key_path: Path) -> list[int]:
    key = asyncssh.read_private_key(str(key_path))
    deadline = asyncio.get_running_loop().time() + SECONDS + SESSIONS / 20
    start = asyncio.Semaphore(20)
    return await asyncio.gather(*(_worker(port, key, deadline, start) for _ in range(SESSIONS)))


def test_soak(gateway: Gateway, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "soak.yaml").write_text(POLICY)
    keys = tmp_path / "keys"
    keys.mkdir()
    shutil.copy(gateway.keydir / "dan.pub", keys / "dan.pub")
    gw = start_gateway(tmp_path / "state", policies, keys, gateway.keys,
                       extra=("--max-sessions-per-principal", str(SESSIONS + 10), "--max-sessions", str(SESSIONS + 10)))  # fmt: skip
    try:
        lines = asyncio.run(_soak(gw.port, gateway.keys["dan"]))
    finally:
        assert stop_gateway(gw) == 0
    assert len(lines) == SESSIONS and min(lines) >= 1
    events = gw.events()
    starts = [e for e in events if e["event"] == "session.start"]
    ends = [e for e in events if e["event"] == "session.end"]
    assert len(starts) == len(ends) == SESSIONS
    assert all(e["exit_status"] == 0 and "error" not in e for e in ends)
    assert not [e for e in events if e["event"] == "request.deny"]
    verified = gateway_cli("audit", "verify", "--state", str(gw.state))
    assert verified.returncode == 0, verified.stdout + verified.stderr
