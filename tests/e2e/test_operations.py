"""Operations in the ecosystem's own terms: systemd (real systemd-analyze, the notify protocol),
health and readiness, CLI conventions, and a reproducible install."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway import sshfast, sshhooks
from gateway.confine.spawn import daemon_pid
from tests.e2e.conftest import (
    ROOT,
    SANDBOX,
    SSH_OPTS,
    Gateway,
    gateway_cli,
    metrics_port,
    start_gateway,
    stop_gateway,
)

pytestmark = pytest.mark.e2e

UNIT = ROOT / "deploy" / "gateway.service"


# ---------------------------------------------------------------- systemd


def _rendered_unit(tmp_path: Path) -> Path:
    """The shipped unit with /opt/gateway pointing at this checkout (so its commands exist)."""
    unit = tmp_path / "gateway.service"
    unit.write_text(UNIT.read_text().replace("/opt/gateway", str(ROOT)))
    return unit


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(_rendered_unit(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [line for line in result.stderr.splitlines() if "gateway.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_systemd_analyze_verify_retention_units() -> None:
    """The shipped retention timer and its service, exactly as shipped."""
    units = [ROOT / "deploy" / "gateway-retention.timer", ROOT / "deploy" / "gateway-retention.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, check=False
    )
    problems = [line for line in result.stderr.splitlines() if "gateway-retention" in line]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.parametrize("name", ["gateway.service", "gateway-retention.service"])
def test_systemd_analyze_security_exposure(tmp_path: Path, name: str) -> None:
    """Each shipped unit at most 3.0: the gateway's monitor and workers run under every seccomp-based
    setting again (its spawner is the ExecStartPre=+ line, outside the sandbox: test_openssh_door.py runs
    the unit's lines under tests/unit_sandbox.py and checks the shells against docker exec)."""
    unit = tmp_path / name
    unit.write_text((ROOT / "deploy" / name).read_text().replace("/opt/gateway", str(ROOT)))
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    print(f"\nsystemd-analyze security {name}: exposure {match.group(1)}")
    assert float(match.group(1)) <= 3.0, result.stdout
    if name != "gateway.service":
        return
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=",
        "WatchdogSec=",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "--net-user gateway-net",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "ExecStartPre=+/opt/gateway/.venv/bin/python -I -S /opt/gateway/gateway/confine/zygote.py --listen",
        "--spawner /run/gateway/spawner.sock",
    ):
        assert line in text


def test_the_retention_unit_as_shipped(tmp_path: Path) -> None:
    """Its ExecStart lines, only the path substituted, under its own sandbox (no capability, its filter):
    recordings past 90 days go, with the directories they leave empty; the rest stays."""
    state = tmp_path / "state"
    old, new = state / "recordings" / "2020-01-01", state / "recordings" / "today"
    for directory in (old, new):
        directory.mkdir(parents=True)
        (directory / "s.cast").write_text("{}\n")
    past = time.time() - 91 * 86400
    os.utime(old / "s.cast", (past, past))
    unit = tmp_path / "gateway-retention.service"
    unit.write_text(
        (ROOT / "deploy" / "gateway-retention.service").read_text().replace("/var/lib/gateway", str(state))
    )
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
            ran = subprocess.run(["/usr/bin/python3", str(SANDBOX), str(unit), "--", *argv],
                                 capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            assert ran.returncode == 0, ran.stderr
    assert not old.exists()
    assert (new / "s.cast").exists()


class Notifications:
    """Everything the gateway sent to the notify socket, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.seen = sock, list[str]()

    def wait(self, wanted: str, after: int = 0, seconds: float = 10) -> int:
        """The index of the first message at or after *after* that holds *wanted*."""
        deadline = time.monotonic() + seconds
        while True:
            for i, message in enumerate(self.seen[after:], start=after):
                if wanted in message:
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"{wanted!r} never came: {self.seen}")
            self.sock.settimeout(0.2)
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue


def test_the_notify_protocol(gateway: Gateway, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
        gw = start_gateway(tmp_path / "state", gateway.policies, gateway.keydir, gateway.keys, env=env)
        notes = Notifications(sock)
        try:
            ready = notes.wait("READY=1")
            assert "STATUS=listening on 127.0.0.1:" in notes.seen[ready]
            notes.wait("WATCHDOG=1")  # fed from the event loop
            gw.proc.send_signal(signal.SIGHUP)
            reloading = notes.wait("RELOADING=1", after=ready + 1)
            assert "MONOTONIC_USEC=" in notes.seen[reloading]
            notes.wait("READY=1", after=reloading + 1)
            gw.proc.send_signal(signal.SIGTERM)
            notes.wait("STOPPING=1", after=reloading + 1)
        finally:
            assert stop_gateway(gw) == 0


# ---------------------------------------------------------------- health


def _get(port: int, path: str) -> tuple[int, dict[str, Any] | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def _ready(port: int, wanted: bool) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        status, body = _get(port, "/readyz")
        assert isinstance(body, dict)
        if body.get("checked") and body["ready"] is wanted:
            assert status == (200 if wanted else 503)
            return body
        if time.monotonic() > deadline:
            raise AssertionError(body)
        time.sleep(0.2)


def test_readiness_says_when_the_spawner_apart_is_gone(gateway: Gateway, web1: str, tmp_path: Path) -> None:
    """With --spawner (the unit's daemon), /readyz checks it answers; when it is gone, no shell starts
    (refused with the one line, nothing run) and the gateway is not ready."""
    place = Path(tempfile.mkdtemp(prefix="gwspawn-", dir="/run"))
    sock = place / "spawner.sock"
    zygote = ROOT / "gateway" / "confine" / "zygote.py"
    started = subprocess.run(
        [sys.executable, "-I", "-S", str(zygote), "--listen", str(sock)], timeout=30, check=False
    )
    assert started.returncode == 0
    gw = start_gateway(tmp_path / "s", gateway.policies, gateway.keydir, gateway.keys,
                       extra=("--metrics", "127.0.0.1:0", "--spawner", str(sock)))  # fmt: skip
    try:
        port = metrics_port(gw)
        assert _ready(port, True)["checks"]["spawner"] == {"ok": True}
        assert gw.ssh("debug", web1, "hostname").stdout == "web1\n"
        os.kill(daemon_pid(sock), signal.SIGKILL)
        down = _ready(port, False)
        assert not down["checks"]["spawner"]["ok"]
        mark = gw.mark()
        refused = gw.ssh("debug", web1, "hostname")
        assert refused.returncode != 0 and refused.stdout == ""
        assert refused.stderr.strip().endswith("nothing was run"), refused.stderr
        (end,) = [
            e for e in gw.since(mark, lambda e: e["event"] == "session.end") if e["event"] == "session.end"
        ]
        assert "spawner" in end["error"] and end["exit_status"] != 0, end  # why, in the audit log
    finally:
        assert stop_gateway(gw) == 0
        shutil.rmtree(place, ignore_errors=True)


def test_liveness_readiness_and_unknown_paths(gateway: Gateway, tmp_path: Path) -> None:
    gw = start_gateway(
        tmp_path / "s1", gateway.policies, gateway.keydir, gateway.keys, extra=("--metrics", "127.0.0.1:0")
    )
    try:
        port = metrics_port(gw)
        status, body = _get(port, "/healthz")
        assert status == 200 and isinstance(body, dict) and body["status"] == "ok"
        ready = _ready(port, True)
        assert set(ready["checks"]) == {"docker", "audit_log", "policy", "recordings"}
        assert _get(port, "/nope")[0] == 404
        assert _get(port, "/metrics")[0] == 200
    finally:
        assert stop_gateway(gw) == 0
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    down = start_gateway(
        tmp_path / "s2",
        gateway.policies,
        gateway.keydir,
        gateway.keys,
        env=env,
        extra=("--metrics", "127.0.0.1:0"),
    )
    try:
        port = metrics_port(down)
        assert _get(port, "/healthz")[0] == 200  # alive
        body = _ready(port, False)  # but not ready: no engine answers
        assert body["checks"]["docker"]["ok"] is False
    finally:
        assert stop_gateway(down) == 0


# ---------------------------------------------------------------- the command line


def test_dash_h_everywhere() -> None:
    for args in ((), ("serve",), ("policy", "check"), ("sessions", "grep"), ("audit", "verify")):
        result = gateway_cli(*args, "-h")
        assert result.returncode == 0 and "Usage:" in result.stdout, args


def test_exit_statuses_and_stdout(gateway: Gateway, tmp_path: Path) -> None:
    common = ("--policies", str(gateway.policies), "--keys", str(gateway.keydir))
    allow = gateway_cli("policy", "explain", "dan", "memory", *common)
    deny = gateway_cli("policy", "explain", "eve", "memory", *common)
    assert (allow.returncode, deny.returncode) == (0, 1)
    assert deny.stdout.startswith("deny: ") and deny.stderr == ""  # a query answer, on stdout
    assert gateway_cli("policy", "check", "--bogus-flag").returncode == 2
    assert gateway_cli("policy", "explain").returncode == 2
    missing = gateway_cli(
        "policy", "check", "--policies", str(tmp_path / "nope"), "--keys", str(gateway.keydir)
    )
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == f"{tmp_path / 'nope'}: policies directory not found"
    )  # no made-up position
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.yaml").write_text("version: 1\nactions: {x: {type: nope}}\n")
    serve = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--policies", str(bad), "--keys", str(gateway.keydir),
         "--state", str(tmp_path / "st"), "--no-strict-modes"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert serve.returncode == 1  # a failed check, as `policy check` says it
    usage = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--ciphers", "rot13", "--state", str(tmp_path / "st2")],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert usage.returncode == 2


def test_json_on_every_listing_and_query(gateway: Gateway) -> None:
    common = ("--policies", str(gateway.policies), "--keys", str(gateway.keydir))
    shown = gateway_cli("policy", "show", "--json", *common)
    assert {"principal", "action", "grant"} <= set(json.loads(shown.stdout.splitlines()[0]))
    explained = json.loads(gateway_cli("policy", "explain", "eve", "memory", "--json", *common).stdout)
    assert explained["decision"] == "deny"
    checked = json.loads(gateway_cli("policy", "check", "--json", *common).stdout)
    assert checked["ok"] is True
    assert gateway.ssh("memory", key="dan").returncode == 0
    sid = json.loads(
        gateway_cli("sessions", "list", "--json", "--state", str(gateway.state)).stdout.splitlines()[-1]
    )["id"]
    shown_session = gateway_cli("sessions", "show", sid, "--json", "--state", str(gateway.state))
    assert all("event" in json.loads(line) for line in shown_session.stdout.splitlines())
    verified = json.loads(gateway_cli("audit", "verify", "--json", "--state", str(gateway.state)).stdout)
    assert verified["intact"] is True and verified["records"] > 0


# ---------------------------------------------------------------- the install


def test_gateway_is_on_the_path_after_setup() -> None:
    found = shutil.which("gateway")
    assert found is not None, "scripts/setup puts `gateway` on the PATH"
    assert subprocess.run([found, "--version"], capture_output=True, check=False).returncode == 0


def test_the_lock_file_pins_every_dependency_and_asyncssh_matches_the_hooks() -> None:
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    pins = [line for line in lock if line.strip() and not line.startswith(("#", " "))]
    assert pins and all("==" in line for line in pins), [p for p in pins if "==" not in p]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    asyncssh = next(d for d in project["dependencies"] if d.startswith("asyncssh"))
    assert asyncssh == "asyncssh==2.24.1"  # sshhooks.py and sshfast.py are pinned to its internals
    assert sshhooks.TESTED == ("2.24.1",) and sshfast.LEAN_VERSION == "2.24.1"
    locked = next(line for line in pins if line.startswith("asyncssh=="))
    assert locked.split("==")[1].startswith(sshhooks.TESTED)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_demo_prints_the_fingerprint_and_fills_db1_and_runs_four_eyes(tmp_path: Path) -> None:
    """`scripts/demo --listen` as a new user runs it: the fingerprint to compare, data to back up, a banner
    that runs nothing, and the README's "Four eyes" section, run as written against it."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    port = _free_port()
    before = sorted(p.name for p in ROOT.iterdir())
    shutil.rmtree(
        ROOT / "state" / "requests", ignore_errors=True
    )  # an approval of an earlier run still lasts
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "demo"), "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if "listening on" in line or not line:
                break
        text = "".join(seen)
        assert re.search(r"Host key fingerprint .*: ED25519 SHA256:[A-Za-z0-9+/]{43}", text), text
        assert any(line.startswith("setup: ") for line in seen)  # one line per step, not silence
        assert f"-p {port} -t debug@127.0.0.1 web1" in text
        assert "error" not in text.lower() and "`gateway audit export-key --state STATE > k0`" in text
        listing = subprocess.run(
            ["docker", "exec", "db1", "ls", "/data"], capture_output=True, text=True, check=False
        )
        assert "orders.csv" in listing.stdout
        _four_eyes_as_the_readme_says(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    after = {p.name for p in ROOT.iterdir()}
    assert after <= {*before, "state"}, after - set(before)  # nothing written outside state/
    assert not (ROOT / "k0").exists()


def _readme_block(after: str) -> list[str]:
    """The `ssh` lines of the README's first ```sh block after *after*."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```sh", text.index(after))
    block = text[start : text.index("```", start + 5)]
    return [line for line in block.splitlines() if line.startswith("ssh ")]


def _argv(line: str, port: int, ids: dict[str, str]) -> list[str]:
    for placeholder, real in ids.items():
        line = line.replace(placeholder, real)
    words = shlex.split(line.replace("-p 2222", f"-p {port}"))
    return ["ssh", *SSH_OPTS, *words[1:]]


def _four_eyes_as_the_readme_says(port: int) -> None:
    import pexpect  # noqa: PLC0415

    lines = _readme_block("Try it against `scripts/demo`")
    assert len(lines) == 6, lines
    ids: dict[str, str] = {}

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    betty = subprocess.Popen(_argv(lines[0], port, ids), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    assert betty.stderr is not None
    waiting = betty.stderr.readline()
    found = re.search(
        r"needs approval \(1 of security, 1 of ops-leads\): request (R-[0-9A-F]{6}); waiting", waiting
    )
    assert found, waiting
    ids["R-XXXXXX"] = found.group(1)
    listed = run(_argv(lines[1], port, ids))
    assert ids["R-XXXXXX"] in listed.stdout, listed.stdout + listed.stderr
    for line in lines[2:4]:
        approved = run(_argv(line, port, ids))
        assert approved.returncode == 0, approved.stderr
    out, err = betty.communicate(timeout=30)
    assert betty.returncode == 0 and "orders.csv" in out, out + err
    env = {"TERM": "xterm", "PATH": "/usr/bin:/bin"}
    dan_argv = _argv(lines[4], port, ids)
    dan = pexpect.spawn(dan_argv[0], dan_argv[1:], cwd=str(ROOT), env=env, timeout=30, encoding="utf-8")
    dan.expect(r"waiting for a moderator: ssh approve@HOST watch (R-[0-9A-F]{6})")
    ids["R-YYYYYY"] = dan.match.group(1)
    watch_argv = _argv(lines[5], port, ids)
    charlotte = pexpect.spawn(
        watch_argv[0], watch_argv[1:], cwd=str(ROOT), env=env, timeout=30, encoding="utf-8"
    )
    charlotte.expect("moderating")
    dan.expect(r"[#$] ")
    dan.sendline("echo four-eyes-$((6*7))")
    dan.expect("four-eyes-42")
    charlotte.expect("four-eyes-42")  # she sees it live
    dan.sendline("exit")
    dan.expect(pexpect.EOF)
    charlotte.close(force=True)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_one_gateway_per_listen_address(gateway: Gateway, tmp_path: Path, workers: str) -> None:
    """A second `serve` on an address in use says who holds it, and nothing of it starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"

    def serve(state: Path) -> list[str]:
        return [sys.executable, "-m", "gateway", "serve", "--listen", address, "--workers", workers,
                "--policies", str(gateway.policies), "--keys", str(gateway.keydir), "--state", str(state)]  # fmt: skip

    first = subprocess.Popen(
        serve(tmp_path / "one"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert first.stdout is not None and "listening on" in first.stdout.readline()
        second = subprocess.run(
            serve(tmp_path / "two"), capture_output=True, text=True, timeout=30, check=False
        )
        assert second.returncode == 1
        assert second.stderr == (
            f"gateway: {address} is already served by gateway pid {first.pid} (state {tmp_path / 'one'});"
            " stop it or choose another --listen\n"
        )
        assert not (tmp_path / "two" / "audit").exists()  # nothing of the second one started
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    again = subprocess.Popen(
        serve(tmp_path / "two"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:  # the address is free again once the first one has stopped
        assert again.stdout is not None and "listening on" in again.stdout.readline()
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)


def test_a_door_without_a_keys_user_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    result = gateway_cli(
        "serve", "--listen", "127.0.0.1:0", "--state", str(tmp_path / "s"), "--door-user", "gw"
    )
    assert result.returncode == 2
    assert (
        result.stderr.startswith("gateway: --door-user needs --keys-user") and result.stderr.count("\n") == 1
    )


@pytest.mark.parametrize("script", ["demo", "update-asciinema-player"])
def test_the_readmes_scripts_answer_help(script: str) -> None:
    """`--help` says how to call the script and does nothing else (no setup, no download)."""
    done = subprocess.run([str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith(f"usage: scripts/{script}"), (
        done.stdout + done.stderr
    )
