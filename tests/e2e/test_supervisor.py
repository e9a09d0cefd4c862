"""The supervisor (gateway/supervisor.py): workers replaced when they die, what they held given back,
one reload per policy change that every worker follows, and a stop that takes them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, metrics_port, stop_gateway

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
actions:
  hold: {type: host, command: [sleep, "30"]}
grants:
  - principals: [betty, dan]
    actions: [hold]
"""


def _workers(gw: Gateway) -> set[int]:
    children = Path(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def _wait(what: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    return what()


def _hold(gw: Gateway, key: str = "betty") -> subprocess.Popen[str]:
    return subprocess.Popen(gw.ssh_argv("hold", key=key), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)  # fmt: skip


def test_a_worker_killed_is_replaced_and_what_it_held_is_given_back(own_gateway: Any) -> None:
    gw = own_gateway("--workers", "2", "--max-sessions", "1", policy=POLICY)
    assert len(_workers(gw)) == 2
    mark = gw.mark()
    holder = _hold(gw)
    start = _wait(lambda: [e for e in gw.since(mark) if e["event"] == "session.start"], 10)
    assert start, "the first session started"
    victim = int(start[0]["pid"])
    assert victim in _workers(gw)  # a worker runs it, not the supervisor
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    replaced = _wait(lambda: len(_workers(gw) - {victim}) == 2, 5)
    assert replaced and time.monotonic() - killed < 2.0, "a new worker within 2 s"
    holder.communicate(timeout=30)  # its connection went with the worker
    exited = _wait(lambda: [e for e in gw.since(mark) if e["event"] == "worker.exited"], 5)
    assert exited and exited[0]["pid"] == victim and exited[0]["signal"] == 9
    assert exited[0]["released"].get("sessions") == 1.0
    assert gw.ssh("hold", "x").returncode == 1  # logins go on meanwhile (a refusal is an answer)
    second = _hold(gw, key="dan")  # the dead worker's slot is free again: --max-sessions 1 is not stuck
    started = _wait(lambda: len([e for e in gw.since(mark) if e["event"] == "session.start"]) == 2, 5)
    assert started, "the slot was given back"
    third = subprocess.run(gw.ssh_argv("hold"), capture_output=True, text=True, timeout=30, check=False)
    assert third.returncode == 1 and "too many sessions" in third.stderr  # ... and not exceeded
    second.kill()
    second.communicate()
    workers = _workers(gw)
    assert stop_gateway(gw) == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "SIGTERM stopped every worker"


def _readyz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:  # 503 while a check fails: the body is the same JSON
        return json.loads(exc.read())  # type: ignore[no-any-return]


def test_one_policy_change_one_reload_every_worker_on_its_digest(own_gateway: Any) -> None:
    gw = own_gateway("--workers", "2", "--metrics", "127.0.0.1:0", policy=POLICY)
    port = metrics_port(gw)
    first = next(e["policy"] for e in gw.events() if e["event"] == "server.start")
    assert _wait(lambda: {w["policy"] for w in _readyz(port)["workers"].values()} == {first}, 5)
    mark = gw.mark()
    (gw.policies / "extra.yaml").write_text(POLICY + "# one change\n")
    reloads = _wait(lambda: [e for e in gw.since(mark) if e["event"] == "policy.reload"], 10)
    assert reloads
    seen = time.monotonic()
    new = reloads[0]["policy"]
    assert new != first
    followed = _wait(lambda: {w["policy"] for w in _readyz(port)["workers"].values()} == {new}, 1.0)
    assert followed, (_readyz(port), time.monotonic() - seen)
    time.sleep(1.5)  # the watcher has looked again: still one record for one change
    assert len([e for e in gw.since(mark) if e["event"] == "policy.reload"]) == 1
