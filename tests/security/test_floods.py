"""Attack 5: one source fills the unauthenticated-connection limit and locks everyone out.

Before the fix, 40 idle connections from one address filled the global limit
(`--max-unauthenticated 30`) and every other user was refused. Now each source
has its own share, stalling or failing sources earn growing penalties, every
turned-away connection is counted, and the audit log summarises a flood per
source per minute instead of one record each.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from contextlib import ExitStack
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, metrics_port, stop_gateway

pytestmark = pytest.mark.e2e

OTHER = "127.0.0.2"


def _hold(stack: ExitStack, port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), source_address=(source, 0)))
        held.append(sock)
    return held


def _from_other(gw: Gateway) -> bool:
    return gw.ssh("memory", key="dan", opts=("-o", f"BindAddress={OTHER}")).returncode == 0


def test_one_source_cannot_lock_out_another(own_gateway: Any) -> None:
    gw: Gateway = own_gateway(
        "--max-unauthenticated", "30", "--max-unauthenticated-per-source", "10", "--metrics", "127.0.0.1:0"
    )
    metrics = metrics_port(gw)
    with ExitStack() as stack:
        held = _hold(stack, gw.port, 40)
        time.sleep(0.5)
        succeeded = sum(_from_other(gw) for _ in range(10))
        print(f"\nduring a 40-connection flood from 127.0.0.1: {succeeded}/10 logins from {OTHER} succeeded")
        assert succeeded == 10
        del held
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'gateway_connections_turned_away_total{reason="per-source"} 30.0' in text
    assert stop_gateway(gw) == 0
    events = gw.events()
    firsts = [e for e in events if e.get("kind") == "connection-limit" and e.get("source") == "127.0.0.1"]
    summaries = [e for e in events if e["event"] == "connection.refused" and e["source"] == "127.0.0.1"]
    assert len(firsts) == 1  # the first refusal of the minute, at once
    assert [s["count"] for s in summaries] == [29]  # the rest of that minute: one record with a count
    opened = [e for e in events if e["event"] == "connection.open" and e["peer"].startswith("127.0.0.1:")]
    assert len(opened) == 10  # turned-away connections write no record each


def test_a_stalling_source_is_penalised(own_gateway: Any) -> None:
    gw: Gateway = own_gateway("--login-timeout", "1")
    with ExitStack() as stack:
        _hold(stack, gw.port, 2)
        time.sleep(2)  # both stall past the login timeout: 2 x 10 s of penalty, past the 15 s free
    refused = gw.ssh("memory", key="dan")
    assert refused.returncode == 255
    assert _from_other(gw)  # the penalty is the source's alone
    events = gw.since(0, lambda e: "penalised" in str(e.get("reason", "")))
    assert any("penalised" in str(e.get("reason", "")) for e in events)
