"""Attack 4: policy files that take the gateway down (alias bombs, nesting, huge files).

Before the fix a recursive alias killed the file watcher for good (a revoked key
stayed valid), a billion-laughs file blocked the event loop, and `policy check`
printed a traceback or hung. Now each gets a `file:line:column` error within 2 s
and 200 MB, and the watcher and SIGHUP keep the old policy and keep serving.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Gateway

pytestmark = pytest.mark.e2e

HEAD = "version: 1\nactions: {}\n"


def _laughs() -> str:
    lines = [HEAD.rstrip(), 'x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join([*lines, "grants: *a9"]) + "\n"


def _grants(count: int) -> str:
    grants = "".join("- {principals: [betty], actions: [memory]}\n" for _ in range(count))
    return "version: 1\nactions:\n  memory: {type: host, command: [free]}\ngrants:\n" + grants


HOSTILE = {
    "recursive-alias": HEAD + "grants: &a [*a]\n",
    "billion-laughs": _laughs(),
    "deep-nesting": HEAD + "grants: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "ten-megabytes": HEAD + "grants: []\n# " + "x" * (10 << 20) + "\n",
    "100000-grants": _grants(100_000),
}


# A small parent measures the peak RSS: a child forked from pytest would report pytest's own.
MEASURE = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], check=False);"
    " print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)"
)


def _check(policies: Path, keys: Path) -> tuple[int, str, float, int]:
    """`gateway policy check`: exit status, output, seconds, peak RSS in MB."""
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "policy",
        "check",
        "--policies",
        str(policies),
        "--keys",
        str(keys),
    ]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - started
    *output, last = result.stderr.splitlines()
    status, peak = map(int, last.split())
    return status, "\n".join(output) + result.stdout, seconds, peak // 1024


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_policy_check_refuses_quickly_and_clearly(gateway: Gateway, tmp_path: Path, name: str) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / f"{name}.yaml").write_text(HOSTILE[name])
    status, output, seconds, megabytes = _check(policies, gateway.keydir)
    print(f"\npolicy check {name}: {seconds:.2f}s, {megabytes} MB: {output.strip()[:120]}")
    assert status == 1
    assert "Traceback" not in output
    assert re.match(rf"^{re.escape(str(policies))}/{name}\.yaml:\d+:\d+: ", output), output[:300]
    assert seconds < 2.0
    assert megabytes < 200


def _reload_failures(gw: Gateway, mark: int, why: str) -> list[dict[str, Any]]:
    def failed(e: dict[str, Any]) -> bool:
        return e["event"] == "policy.reload_failed" and e["why"] == why

    return [e for e in gw.since(mark, failed, wait=10) if failed(e)]


GRANT = "version: 1\nactions:\n  later: {type: host, command: [hostname]}\ngrants:\n  - {principals: [betty], actions: [later]}\n"


def test_the_watcher_survives_every_hostile_file(own_gateway: Any) -> None:
    gw: Gateway = own_gateway()
    extra = gw.policies / "extra.yaml"
    for name, text in HOSTILE.items():
        mark = gw.mark()
        extra.write_text(text)
        started = time.monotonic()
        assert gw.ssh("memory", key="dan").returncode == 0, name  # still serving meanwhile
        assert time.monotonic() - started < 5, name
        failures = _reload_failures(gw, mark, "file change")
        assert failures and failures[0]["errors"], name
        assert gw.proc.poll() is None
    mark = gw.mark()
    extra.write_text(GRANT)  # a later, good change still takes effect
    gw.since(mark, lambda e: e["event"] == "policy.reload", wait=10)
    assert gw.ssh("later").returncode == 0


def test_sighup_survives_a_hostile_file(own_gateway: Any) -> None:
    gw: Gateway = own_gateway()
    (gw.policies / "extra.yaml").write_text(HOSTILE["recursive-alias"])
    time.sleep(1.5)  # let the watcher see (and refuse) it first
    mark = gw.mark()
    gw.proc.send_signal(signal.SIGHUP)
    failures = _reload_failures(gw, mark, "SIGHUP")
    assert failures and "anchors and aliases" in failures[0]["errors"][0]
    assert gw.ssh("memory", key="dan").returncode == 0
