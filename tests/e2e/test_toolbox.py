"""Sidekick, signal, logs, backup and label targets, on real containers."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Containers, Gateway, resize_then_exit, spawn, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

TOOLBOX = """\
version: 1
actions:
  restart: {type: sidekick, command: ["fooctl", "restart"]}
  status: {type: sidekick, command: ["fooctl", "status"], volumes_read_only: true}
  sk: {type: sidekick, command: ["sh", "-c"], allow_args: true}
  ish: {type: sidekick, interactive: true, command: ["sh"]}
  nosuchimage: {type: sidekick, image: "gateway-no-such-image:0", command: ["true"]}
  hup: {type: signal, signal: HUP}
  logs: {type: logs, tail: 100}
  tail2: {type: logs, tail: 2}
  follow: {type: logs, tail: 1, follow: true}
  backup: {type: backup, paths: ["/data"]}
  backup2: {type: backup, paths: ["/data", "/etc/foo"]}
grants:
  - principals: [dan]
    actions: [restart, status, sk, ish, nosuchimage, hup, logs, tail2, follow, backup, backup2]
    targets: ["{prefix}-web*", "{prefix}-db*", "{prefix}-noisy"]
  - principals: [eve]
    actions: [status]
    targets: [{label: "gwtest.role={prefix}"}]
"""


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def toolbox(gateway: Gateway, containers: Containers) -> Iterator[Gateway]:
    """The shared gateway with the toolbox policy added (reloaded by a restart)."""
    (gateway.policies / "toolbox.yaml").write_text(TOOLBOX.replace("{prefix}", containers.prefix))
    gw = start_gateway(gateway.state.parent / "toolbox-state", gateway.policies, gateway.keydir, gateway.keys)
    yield gw
    assert stop_gateway(gw) == 0
    (gateway.policies / "toolbox.yaml").unlink()


@pytest.fixture(scope="module")
def db1(containers: Containers) -> tuple[str, str]:
    """A container whose /data volume holds a 50 MB random file; returns (name, sha256)."""
    name = containers.run("db1")
    _docker(
        "exec",
        name,
        "sh",
        "-c",
        "head -c 52428800 /dev/urandom > /data/blob && echo hi > /data/small",
    )
    digest = _docker("exec", name, "sha256sum", "/data/blob").split()[0]
    return name, digest


def _sidekicks(session_label: str | None = None) -> list[str]:
    label = "org.gateway.sidekick=1" if session_label is None else f"org.gateway.session={session_label}"
    return _docker("ps", "-aq", "--filter", f"label={label}").split()


def _end(gw: Gateway, mark: int) -> dict[str, Any]:
    events = gw.since(mark, lambda e: e["event"] == "session.end")
    return next(e for e in events if e["event"] == "session.end")


def test_restart_through_a_sidekick(toolbox: Gateway, web1: str) -> None:
    before = _docker("exec", web1, "cat", "/var/run/foo/state")
    mark = toolbox.mark()
    result = toolbox.ssh("restart", web1, key="dan")
    assert result.returncode == 0, result.stderr
    assert "restarted" in result.stdout
    after = _docker("exec", web1, "cat", "/var/run/foo/state")
    assert before != after
    assert "restarts=" in after
    end = _end(toolbox, mark)
    assert end["exit_status"] == 0
    assert end["sidekick"]
    allow = next(e for e in toolbox.since(mark) if e["event"] == "request.allow")
    assert allow["container"] == _docker("inspect", "-f", "{{.Id}}", web1).strip()
    assert allow["image"]
    cast = (toolbox.state / end["recording"]).read_text()
    assert "restarted" in cast
    assert not _sidekicks(end["session_id"])


def test_sidekick_streams_and_exit_status(toolbox: Gateway, web1: str) -> None:
    result = toolbox.ssh("sk", web1, "'echo out; echo err >&2; ls /var/run/foo; exit 9'", key="dan")
    assert result.returncode == 9
    assert result.stdout.startswith("out\n")
    assert "control" in result.stdout
    assert result.stderr == "err\n"


def test_sidekick_has_no_network_and_read_only_volumes(toolbox: Gateway, web1: str) -> None:
    net = toolbox.ssh("sk", web1, "'ip -o link | grep -v lo: | wc -l'", key="dan")
    assert net.stdout.strip() == "0"
    status = toolbox.ssh("status", web1, key="dan")
    assert status.returncode == 0
    assert "pid=" in status.stdout


def test_hup_is_observed_by_the_service(toolbox: Gateway, web1: str) -> None:
    result = toolbox.ssh("hup", web1, key="dan")
    assert result.returncode == 0
    for _ in range(40):
        if "reloaded (SIGHUP)" in _docker("logs", web1):
            break
        time.sleep(0.1)
    assert "reloaded (SIGHUP)" in _docker("logs", web1)


def test_logs_tail_keeps_streams_apart(toolbox: Gateway, containers: Containers) -> None:
    noisy = f"{containers.prefix}-noisy"
    _docker(
        "run",
        "-d",
        "--name",
        noisy,
        "gateway-demo:latest",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; sleep 600",
    )
    containers.made.append(noisy)
    for _ in range(50):
        if (
            "err5"
            in subprocess.run(["docker", "logs", noisy], capture_output=True, text=True, check=False).stderr
        ):
            break
        time.sleep(0.1)
    result = toolbox.ssh("logs", noisy, key="dan")
    assert result.returncode == 0
    assert result.stdout.split() == [f"out{i}" for i in range(1, 6)]
    assert result.stderr.split() == [f"err{i}" for i in range(1, 6)]
    tail = toolbox.ssh("tail2", noisy, key="dan")
    assert len(tail.stdout.split() + tail.stderr.split()) == 2


def test_logs_follow_until_the_client_hangs_up(toolbox: Gateway, web1: str) -> None:
    mark = toolbox.mark()
    child = spawn(toolbox.ssh_argv("follow", web1, key="dan"), prompt=False)
    child.expect("foo: ")
    _docker("kill", "-s", "HUP", web1)
    child.expect("reloaded")
    child.terminate(force=True)
    end = _end(toolbox, mark)
    assert end["action"] == "follow"


def test_backup_is_byte_exact(toolbox: Gateway, db1: tuple[str, str], tmp_path: Path) -> None:
    name, digest = db1
    out = tmp_path / "db1.tar"
    mark = toolbox.mark()
    with out.open("wb") as f:
        argv = toolbox.ssh_argv("backup", name, key="dan")
        result = subprocess.run(argv, stdout=f, stderr=subprocess.PIPE, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    with tarfile.open(out) as tar:
        member = tar.extractfile("data/blob")
        assert member is not None
        assert hashlib.sha256(member.read()).hexdigest() == digest
    end = _end(toolbox, mark)
    assert end["stream_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert end["stream_size"] == out.stat().st_size
    assert "recording" not in end  # a tar stream is recorded as size and digest only


def test_backup_of_several_paths_is_one_archive(toolbox: Gateway, db1: tuple[str, str]) -> None:
    name, _ = db1
    argv = toolbox.ssh_argv("backup2", name, key="dan")
    data = subprocess.run(argv, capture_output=True, timeout=120, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
    assert {"data/blob", "data/small", "foo/foo.conf"} <= names


def test_interactive_sidekick_on_a_pty(toolbox: Gateway, web1: str) -> None:
    mark = toolbox.mark()
    argv = toolbox.ssh_argv("ish", web1, key="dan", opts=("-tt",))
    child = spawn(argv, size=(33, 101))
    child.sendline("stty size; cat /etc/foo/foo.conf")
    child.expect("33 101")
    child.expect("greeting=")
    resize_then_exit(child, 20, 70, 6)
    end = _end(toolbox, mark)
    events = [json.loads(line) for line in (toolbox.state / end["recording"]).read_text().splitlines()[1:]]
    assert "stty size" in "".join(e[2] for e in events if e[1] == "i")
    assert not _sidekicks(end["session_id"])


def test_client_killed_mid_run_removes_the_sidekick(toolbox: Gateway, web1: str) -> None:
    mark = toolbox.mark()
    argv = toolbox.ssh_argv("sk", web1, "'echo started; sleep 300'", key="dan")
    child = spawn(argv, prompt=False)
    child.expect("started")
    start = next(
        e
        for e in toolbox.since(mark, lambda e: e["event"] == "session.start")
        if e["event"] == "session.start"
    )
    assert _sidekicks(start["session_id"])
    child.terminate(force=True)
    for _ in range(100):
        if not _sidekicks(start["session_id"]):
            break
        time.sleep(0.1)
    assert not _sidekicks(start["session_id"])


def test_label_targets(toolbox: Gateway, containers: Containers, web1: str) -> None:
    labelled = containers.run("lab1", "--label", f"gwtest.role={containers.prefix}")
    other = containers.run("lab2", "--label", "gwtest.role=other")
    allowed = toolbox.ssh("status", labelled, key="eve")
    assert allowed.returncode == 0, allowed.stderr
    denied = toolbox.ssh("status", other, key="eve")
    assert denied.returncode == 1
    assert (
        denied.stderr == f"gateway: status {other}: permission denied (ssh help@HOST lists what you may do)\n"
    )


def test_refusals(toolbox: Gateway, web1: str, stopped: str) -> None:
    mark = toolbox.mark()
    missing = toolbox.ssh("nosuchimage", web1, key="dan")
    assert missing.returncode == 1
    assert missing.stderr == "gateway: the sidekick image gateway-no-such-image:0 is not on this host\n"
    assert "not running" in toolbox.ssh("restart", stopped, key="dan").stderr
    assert (
        toolbox.ssh("restart", web1, key="betty").stderr
        == f"gateway: restart {web1}: permission denied (ssh help@HOST lists what you may do)\n"
    )
    events = toolbox.since(mark)
    assert any(e["event"] == "session.end" and e.get("error") == "image missing" for e in events)
    assert sum(e["event"] == "request.deny" for e in events) >= 2


def test_gateway_restart_reaps_a_leftover_sidekick(toolbox: Gateway, web1: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    gw = start_gateway(state, toolbox.policies, toolbox.keydir, toolbox.keys)
    argv = gw.ssh_argv("sk", web1, "'echo started; sleep 300'", key="dan")
    child = spawn(argv, prompt=False)
    child.expect("started")
    session = next(e for e in gw.events() if e["event"] == "session.start")["session_id"]
    gw.proc.kill()  # SIGKILL: no cleanup at all
    gw.proc.communicate()
    child.terminate(force=True)
    assert _sidekicks(session)
    again = start_gateway(state, toolbox.policies, toolbox.keydir, toolbox.keys)
    try:
        assert not _sidekicks(session)
        assert any(e["event"] == "sidekick.reaped" for e in again.events())
    finally:
        assert stop_gateway(again) == 0


def test_engine_unreachable_then_back(toolbox: Gateway, web1: str, tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    gw = start_gateway(
        tmp_path / "state",
        toolbox.policies,
        toolbox.keydir,
        toolbox.keys,
        env={"DOCKER_HOST": f"unix://{sock}"},
    )
    try:
        down = gw.ssh("status", web1, key="dan")
        assert down.returncode == 1
        assert down.stderr == "gateway: the Docker engine is not reachable; try again later\n"
        assert gw.ssh("memory", key="dan").returncode == 0  # host actions keep working
        sock.symlink_to("/var/run/docker.sock")  # the engine "returns"
        back = gw.ssh("status", web1, key="dan")
        assert back.returncode == 0, back.stderr
    finally:
        assert stop_gateway(gw) == 0


def test_backup_and_a_sidekick_on_a_stopped_container(toolbox: Gateway, containers: Containers) -> None:
    """The archive endpoint reads a stopped container; a sidekick says what it would do."""
    name = containers.run("db-stopped")
    _docker("exec", name, "sh", "-c", "mkdir -p /data && echo kept > /data/note")
    _docker("stop", "-t", "0", name)
    argv = toolbox.ssh_argv("backup", name, key="dan")
    backup = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert backup.returncode == 0, backup.stderr
    with tarfile.open(fileobj=io.BytesIO(backup.stdout)) as tar:
        member = tar.extractfile("data/note")
        assert member is not None and member.read() == b"kept\n"
    beside = toolbox.ssh("status", name, key="dan")  # a sidekick says what it would do, and why not
    assert beside.returncode == 1
    assert beside.stderr == (
        f"gateway: {name} is not running: status runs `fooctl status` in a sidekick beside a running"
        f" {name} and does not start it; start {name} first\n"
    )
    shell = toolbox.ssh("hup", name, key="dan")  # a signal needs a running process: refused as before
    assert (shell.returncode, shell.stderr) == (1, f"gateway: {name} is not running\n")
