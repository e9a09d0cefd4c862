"""`type: shell`: nsenter into a real container, with and without a PTY."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from tests.e2e.conftest import Gateway, resize_then_exit, spawn

pytestmark = pytest.mark.e2e


def test_argv_without_pty_keeps_streams_apart_and_status(gateway: Gateway, web1: str) -> None:
    result = gateway.ssh("debug", web1, "sh", "-c", "'echo to-out; echo to-err >&2; exit 7'")
    assert result.returncode == 7
    assert result.stdout == "to-out\n"
    assert result.stderr == "to-err\n"


def test_runs_inside_the_container_namespaces(gateway: Gateway, web1: str) -> None:
    result = gateway.ssh("debug", web1, "hostname")
    assert result.returncode == 0
    assert result.stdout.strip() == "web1"
    ps = gateway.ssh("debug", web1, "ps")
    assert "/usr/local/bin/foo" in ps.stdout  # the container's PID namespace


def test_args_are_an_argv_not_a_shell_line(gateway: Gateway, web1: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    words = ["echo", f"'$(touch {marker})'", f"'`touch {marker}`'", "';'", "id"]
    result = gateway.ssh("debug", web1, *words)
    assert result.returncode == 0
    assert result.stdout == f"$(touch {marker}) `touch {marker}` ; id\n"
    assert not marker.exists()


def test_stdin_reaches_the_child_and_eof_closes_it(gateway: Gateway, web1: str) -> None:
    result = gateway.ssh("debug", web1, "wc", "-l", stdin="a\nb\nc\n")
    assert result.returncode == 0
    assert result.stdout.strip() == "3"


def test_signal_death_comes_back_as_a_signal(gateway: Gateway, web1: str) -> None:
    result = gateway.ssh("debug", web1, "sh", "-c", "'kill -TERM $$'")
    assert result.returncode == 255  # OpenSSH reports a remote signal death as 255
    assert "killed by signal" in result.stderr or result.stderr == ""


def test_child_environment_is_clean(gateway: Gateway, web1: str) -> None:
    result = gateway.ssh("debug", web1, "env", opts=("-o", "SetEnv=LD_PRELOAD=/tmp/evil.so FOO=bar"))
    assert result.returncode == 0
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
    assert "LD_PRELOAD" not in names
    assert "FOO" not in names
    assert "PATH" in names


def _spawn(gateway: Gateway, action: str, *words: str, rows: int = 24, cols: int = 80) -> pexpect.spawn:
    return spawn(gateway.ssh_argv(action, *words, opts=("-tt",)), size=(rows, cols))


def test_pty_shell_size_resize_and_exit_status(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    child = _spawn(gateway, "debug", web1, rows=24, cols=80)
    child.sendline("hostname; stty size")
    child.expect("web1")
    child.expect("24 80")
    resize_then_exit(child, 40, 132, 5)
    end = gateway.since(mark, lambda e: e["event"] == "session.end")
    ended = [e for e in end if e["event"] == "session.end"]
    assert ended and ended[-1]["exit_status"] == 5
    cast = gateway.state / ended[-1]["recording"]
    lines = cast.read_text().splitlines()
    header = json.loads(lines[0])
    assert (header["version"], header["width"], header["height"]) == (2, 80, 24)
    events = [json.loads(line) for line in lines[1:]]
    codes = {e[1] for e in events}
    assert {"o", "i", "r"} <= codes
    assert ["r", "132x40"] in [e[1:] for e in events]
    assert "stty size" in "".join(e[2] for e in events if e[1] == "i")
    assert "40 132" in "".join(e[2] for e in events if e[1] == "o")
    played = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / ".venv/bin/asciinema"), "cat", str(cast)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert played.returncode == 0, played.stderr
    assert "40 132" in played.stdout


def test_ctrl_c_reaches_the_foreground_job(gateway: Gateway, web1: str) -> None:
    child = _spawn(gateway, "debug", web1)
    child.sendline("sleep 30")
    child.expect("sleep 30")
    time.sleep(0.5)  # the shell must have left line editing (raw mode) for ^C to be a signal
    child.sendcontrol("c")
    child.expect(r"[#$] ")
    child.sendline("echo status=$?")
    child.expect(r"status=130")
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_fixed_command_with_pty(gateway: Gateway, web1: str) -> None:
    child = _spawn(gateway, "console", web1)
    child.sendline("echo $0")
    child.expect("-sh|sh")
    child.sendline("exit 0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_disconnect_ends_the_child(gateway: Gateway, web1: str) -> None:
    child = _spawn(gateway, "debug", web1)
    child.sendline("sleep 4321")
    child.terminate(force=True)
    for _ in range(50):
        ps = gateway.ssh("debug", web1, "ps")
        if "sleep 4321" not in ps.stdout:
            break
        time.sleep(0.1)
    assert "sleep 4321" not in ps.stdout


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _daemons() -> list[int]:
    """Spawners started apart (``zygote.py --listen``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if "zygote.py --listen" in _cmdline(int(entry.name)):
                    found.append(int(entry.name))
    return found


def test_an_open_shell_costs_one_process_its_own(gateway: Gateway, web1: str) -> None:
    """The spawner reaps the session's process itself (a subreaper): no waiting process per session."""
    proc = subprocess.Popen(gateway.ssh_argv("debug", web1, "sleep", "4322"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        spawners: list[int] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            workers = [gateway.proc.pid, *_children(gateway.proc.pid)]
            spawners = [c for w in workers for c in _children(w) if "zygote.py" in _cmdline(c)]
            spawners += _daemons()  # --spawner: one started apart
            sessions = [c for s in spawners for c in _children(s)]
            if any("sleep 4322" in _cmdline(c) for c in sessions):
                break
            time.sleep(0.1)
        assert [_cmdline(c) for c in sessions if "sleep 4322" in _cmdline(c)], "no session under a spawner"
        assert all("python" not in _cmdline(c) for c in sessions), [_cmdline(c) for c in sessions]
    finally:
        proc.kill()
        proc.communicate()
    status = gateway.ssh("debug", web1, "sh", "-c", "'exit 7'")
    assert status.returncode == 7  # the spawner reports the status it reaped
