"""Attack 8: one principal starves the gateway, or a file in policies/ wedges or leaks.

Before the fix: ``sessions grep '(a*)*b'`` pinned the process (Python's ``re``
holds the GIL) and outlived its client; ``yes`` filled the disk through an
unbounded recording; a FIFO in ``policies/`` wedged the watcher and SIGTERM; a
symlink to ``/etc/shadow`` put its first line into the audit chain; removing a
key file did not revoke the key while a grant named the principal; C1
controls and bidi overrides from recordings reached Charlotte's terminal.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

CAPPED = """\
version: 1
actions:
  capped: {type: shell, allow_args: true, recording_max_bytes: 1M}
grants:
  - principals: [betty]
    actions: [capped]
    targets: ["{prefix}-*"]
"""


@pytest.fixture
def private(gateway: Gateway, tmp_path: Path) -> Iterator[Any]:
    """Gateways with their own copies of the policy and the keys, stopped at the end."""
    started: list[Gateway] = []

    def _launch(*extra: str) -> Gateway:
        base = tmp_path / f"gw{len(started)}"
        policies, keydir = base / "policies", base / "keys"
        shutil.copytree(gateway.policies, policies)
        shutil.copytree(gateway.keydir, keydir)
        gw = start_gateway(base / "state", policies, keydir, gateway.keys, extra=extra)
        started.append(gw)
        return gw

    yield _launch
    for gw in started:
        if gw.proc.poll() is None:
            stop_gateway(gw)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _login_ms(gw: Gateway) -> float:
    started = time.monotonic()
    result = gw.ssh("memory", key="dan")
    assert result.returncode == 0, result.stderr
    return (time.monotonic() - started) * 1000


def test_a_catastrophic_pattern_cannot_freeze_the_gateway(private: Any, web1: str) -> None:
    gw = private()
    fill = "yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | head -c 40000000"
    assert gw.ssh("debug", web1, "sh", "-c", shlex.quote(fill), timeout=60).returncode == 0
    argv = gw.ssh_argv("audit", "sessions", "grep", shlex.quote("(a*)*b"), key="charlotte")
    grep = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timings = [_login_ms(gw) for _ in range(20)]  # while the grep runs
    assert sorted(timings)[-1] < 500 * 4 and statistics.quantiles(timings, n=100)[98] < 500, timings
    grep.kill()  # the client leaves mid-search
    grep.wait()
    time.sleep(1.0)
    before = _cpu_seconds(gw.proc.pid)
    time.sleep(1.0)
    assert _cpu_seconds(gw.proc.pid) - before < 0.3  # the search stopped with its client


def test_a_pattern_re2_refuses_is_one_line(gateway: Gateway) -> None:
    result = gateway.ssh("audit", "sessions", "grep", shlex.quote(r"(a)\1"), key="charlotte")
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "RE2" in result.stderr


def test_a_recording_stops_at_its_limit(own_gateway: Any, containers: Any, web1: str) -> None:
    gw = own_gateway(policy=CAPPED.replace("{prefix}", containers.prefix))
    mark = gw.mark()
    result = gw.ssh("capped", web1, "yes", "A" * 64, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("gateway: recording limit reached"), result.stderr[-200:]
    end = next(
        e for e in gw.since(mark, lambda e: e["event"] == "session.end") if e["event"] == "session.end"
    )
    assert "recording limit reached" in str(end["error"])
    assert (1 << 20) * 0.9 < end["recording_size"] <= 1 << 20  # events are up to 64 KiB each
    assert len(result.stdout) <= 1 << 20  # nothing the recording did not keep was shown


def test_below_the_free_space_floor_recorded_sessions_are_refused(private: Any, web1: str) -> None:
    gw = private("--recordings-min-free", "1000000T")
    mark = gw.mark()
    refused = gw.ssh("debug", web1, "true")
    assert refused.returncode == 1
    assert (
        refused.stderr
        == "gateway: the gateway's disk is nearly full; recorded sessions are refused for now\n"
    )
    allowed = gw.ssh("audit", "sessions", "list", key="charlotte")  # records nothing: runs
    assert allowed.returncode == 0, allowed.stderr
    events = gw.since(mark, lambda e: e["event"] == "request.deny")
    assert any("below the floor" in str(e.get("reason")) for e in events)  # the chain still writes


def _make(kind: str, path: Path) -> Any:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to("/etc/shadow")
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    return None


@pytest.mark.parametrize("where", ["policies", "keys"])
@pytest.mark.parametrize("kind", ["fifo", "symlink", "socket", "directory"])
def test_a_hostile_file_fails_the_reload_and_leaks_nothing(private: Any, where: str, kind: str) -> None:
    gw = private()
    mark = gw.mark()
    directory = gw.policies if where == "policies" else gw.keydir
    held = _make(kind, directory / ("zz.yaml" if where == "policies" else "zz.pub"))
    try:
        failed = gw.since(mark, lambda e: e["event"] == "policy.reload_failed", wait=5)
        records = [e for e in failed if e["event"] == "policy.reload_failed"]
        assert records, [e["event"] for e in failed]
        text = str(records)
        assert "not a regular file" in text or (kind == "directory" and where == "keys")
        shadow_first = Path("/etc/shadow").read_text().split(":", 1)[0]
        assert f"{shadow_first}:" not in text  # no content from outside the directory
        assert gw.ssh("memory", key="dan").returncode == 0  # still serving
    finally:
        if held is not None:
            held.close()
    started = time.monotonic()
    assert stop_gateway(gw) == 0
    assert time.monotonic() - started < 15


def test_removing_a_key_revokes_it_even_if_the_policy_breaks(private: Any) -> None:
    gw = private()
    assert gw.ssh("memory", key="dan").returncode == 0
    mark = gw.mark()
    (gw.policies / "broken.yaml").write_text("version: 1\nactions: [\n")
    (gw.keydir / "dan.pub").unlink()  # the grant still names dan
    gw.proc.send_signal(signal.SIGHUP)
    events = gw.since(mark, lambda e: e["event"] == "policy.reload_failed")
    failed = next(e for e in events if e["event"] == "policy.reload_failed")
    assert any(entry.startswith("dan SHA256:") for entry in failed["removed_keys"]), failed
    assert gw.ssh("memory", key="dan").returncode == 255  # the key no longer authenticates
    assert gw.ssh("memory", key="betty").returncode == 0


def test_a_removed_key_is_revoked_with_a_valid_policy(private: Any) -> None:
    gw = private()
    mark = gw.mark()
    (gw.keydir / "dan.pub").unlink()
    gw.proc.send_signal(signal.SIGHUP)
    events = gw.since(mark, lambda e: e["event"] in ("policy.reload", "policy.reload_failed"))
    reload = next(e for e in events if e["event"].startswith("policy.reload"))
    assert reload["event"] == "policy.reload", reload  # a grant naming dan is a warning now
    assert any(entry.startswith("dan SHA256:") for entry in reload["removed_keys"])
    assert gw.ssh("memory", key="dan").returncode == 255


def test_recorded_controls_reach_charlotte_as_escapes(gateway: Gateway, web1: str) -> None:
    marker = f"gwc1-{time.monotonic_ns()}"
    shown = gateway.ssh("debug", web1, "printf", shlex.quote(f"\\302\\2332J \\342\\200\\256{marker}\\n"))
    assert shown.returncode == 0, shown.stderr
    found = gateway.ssh("audit", "sessions", "grep", marker, key="charlotte")
    assert found.returncode == 0, found.stderr
    assert "\u009b" not in found.stdout and "\u202e" not in found.stdout
    assert "\\x9b2J" in found.stdout and f"\\u202e{marker}" in found.stdout
    listed = gateway.ssh("audit", "sessions", "list", key="charlotte")
    assert "\u009b" not in listed.stdout and "\u202e" not in listed.stdout


def test_a_busy_grep_and_a_quiet_healthz(private: Any) -> None:
    """/healthz answers while a search runs (the loop is never held)."""
    gw = private("--metrics", "127.0.0.1:0")
    port = _metrics_port(gw)
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            gw.ssh("audit", "sessions", "grep", shlex.quote("(x+x+)+y"), key="charlotte")

    worker = threading.Thread(target=search)
    worker.start()
    try:
        for _ in range(5):
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                assert answer.status == 200
            assert time.monotonic() - started < 1
    finally:
        stop.set()
        worker.join(30)


def _metrics_port(gw: Gateway) -> int:
    from tests.e2e.conftest import metrics_port  # noqa: PLC0415

    return metrics_port(gw)
