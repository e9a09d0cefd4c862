"""Charlotte's evidence: the HTML file in a real browser, grep across recordings, a clean replay."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.e2e.conftest import ROOT, Gateway, gateway_cli

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
    "--virtual-time-budget=8000",
]  # fmt: skip


def _session(
    gateway: Gateway, *lines: str, action: str = "debug", target: str = "", interrupt: bool = False
) -> str:
    """Run a PTY shell typing *lines* (then ^C at a `cat`, with *interrupt*); return its session id."""
    mark = gateway.mark()
    argv = gateway.ssh_argv(action, target, opts=("-tt",))
    env = {"TERM": "xterm", "PATH": "/usr/bin:/bin"}
    child = pexpect.spawn(argv[0], argv[1:], timeout=15, encoding="utf-8", codec_errors="replace", env=env)
    child.expect(r"[#$] ")
    for line in lines:
        child.sendline(line)
    if interrupt:
        child.sendline("cat")
        time.sleep(0.5)
        child.sendcontrol("c")
        child.expect(r"[#$] ")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    start = next(
        e for e in gateway.since(mark, lambda e: e["event"] == "session.end") if e["event"] == "session.start"
    )
    return str(start["session_id"])


@pytest.fixture(scope="module")
def marked(gateway: Gateway, web1: str) -> str:
    """A shell session whose typed input and output differ: `echo evidence-$((6*7))-MARK`."""
    return _session(gateway, "echo evidence-$((6*7))-MARK", target=web1)


# Chromium's own background traffic, whatever the flags: never the page's.
BROWSER_HOSTS = ("google.com", "gstatic.com", "googleapis.com", "gvt1.com", "chrome.com")


class NetworkWatch:
    """A proxy that only records: every request the browser makes comes here, none is answered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.targets: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                first = conn.recv(512).split(b"\r\n")[0].decode("latin-1")
            except OSError:
                first = "?"
            finally:
                conn.close()
            self.targets.append(first.split(" ")[1] if " " in first else first)

    def page_requests(self) -> list[str]:
        """Requests that are not Chromium's own background traffic."""
        return [t for t in self.targets if not any(h in t for h in BROWSER_HOSTS)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def network() -> Iterator[NetworkWatch]:
    watch = NetworkWatch()
    yield watch
    watch.close()


def _chromium(
    page: Path, profile: Path, network: NetworkWatch, *mode: str
) -> subprocess.CompletedProcess[str]:
    proxy = [f"--proxy-server=http://127.0.0.1:{network.port}", "--proxy-bypass-list=<-loopback>"]
    argv = ["chromium", *CHROMIUM_FLAGS, *proxy, f"--user-data-dir={profile}", *mode, page.as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=120, check=False)


def test_the_html_file_plays_offline_in_a_real_browser(
    gateway: Gateway, marked: str, tmp_path: Path, network: NetworkWatch
) -> None:
    page = tmp_path / "evidence.html"
    made = gateway_cli("sessions", "export", marked, "--html", str(page), "--state", str(gateway.state))
    assert made.returncode == 0, made.stderr
    text = page.read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert "Typed input" in text and "evidence-$((6*7))-MARK" in text  # input, marked apart
    dom = _chromium(page, tmp_path / "profile", network, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "ap-term" in dom.stdout or "ap-terminal" in dom.stdout  # the player built its terminal
    terminal = dom.stdout[dom.stdout.find("ap-term") :]
    assert "evidence-42-MARK" in terminal  # a rendered frame holds the session's output
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "evidence.png"
    taken = _chromium(page, tmp_path / "profile2", network, "--window-size=1200,1600", f"--screenshot={shot}")
    assert taken.returncode == 0 and shot.stat().st_size > 10_000
    assert network.page_requests() == []  # the page asked the network for nothing


def test_control_keys_read_as_keys_in_show_and_in_the_html(
    gateway: Gateway, web1: str, tmp_path: Path
) -> None:
    sid = _session(gateway, "echo keys-MARK", target=web1, interrupt=True)
    shown = gateway_cli("sessions", "show", sid, "--state", str(gateway.state))
    assert shown.returncode == 0, shown.stderr
    typed = [line for line in shown.stdout.splitlines() if line.startswith("typed ")]
    assert any(line.endswith("^C") for line in typed), shown.stdout
    assert any("echo keys-MARK^J" in line for line in typed), shown.stdout  # pexpect types LF
    assert "\x03" not in shown.stdout
    page = tmp_path / "keys.html"
    assert (
        gateway_cli("sessions", "export", sid, "--html", str(page), "--state", str(gateway.state)).returncode
        == 0
    )
    text = page.read_text()
    assert "<code>^C</code>" in text and "\x03" not in text


def test_the_network_watch_sees_a_page_that_does_ask(tmp_path: Path, network: NetworkWatch) -> None:
    """The control: without the CSP, a page's request does reach the watch."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><img src="http://page-request.test/x.png"><p>leaky</p>')
    _chromium(page, tmp_path / "profile", network, "--dump-dom")
    assert any("page-request.test" in t for t in network.page_requests())


def test_the_html_file_over_ssh(gateway: Gateway, marked: str) -> None:
    argv = gateway.ssh_argv("audit", "sessions", "export", "--html", marked, key="charlotte")
    result = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"<!DOCTYPE html>")
    assert b"AsciinemaPlayer" in result.stdout


def _grep(gateway: Gateway, *args: str) -> list[dict[str, object]]:
    result = gateway_cli("sessions", "grep", *args, "--json", "--state", str(gateway.state))
    assert result.returncode in (0, 1), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_grep_by_output_by_input_and_filters(gateway: Gateway, marked: str) -> None:
    out = _grep(gateway, "evidence-42-MARK")
    assert any(m["session"] == marked and m["stream"] == "output" for m in out)
    assert all("\x1b" not in str(m["line"]) for m in out)  # escape sequences removed
    assert not _grep(gateway, "evidence-42-MARK", "--input-only")  # only ever in output
    typed = _grep(gateway, r"evidence-\$\(\(6\*7\)\)", "--input-only")
    assert [m["session"] for m in typed] == [marked] and typed[0]["principal"] == "betty"
    assert isinstance(typed[0]["offset"], float)
    assert not _grep(gateway, "evidence-42-MARK", "--principal", "dan")
    assert _grep(gateway, "evidence-42-MARK", "--action", "debug")
    text = gateway_cli("sessions", "grep", "evidence-42-MARK", "--state", str(gateway.state))
    assert marked in text.stdout and "+" in text.stdout
    over_ssh = subprocess.run(
        gateway.ssh_argv("audit", "sessions", "grep", "evidence-42-MARK", key="charlotte"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert over_ssh.returncode == 0 and marked in over_ssh.stdout


def test_grep_survives_binary_output_and_bad_utf8(gateway: Gateway, web1: str) -> None:
    binary = gateway.ssh_argv("debug", web1, "head", "-c", "20000", "/dev/urandom")
    assert subprocess.run(binary, capture_output=True, timeout=60, check=False).returncode == 0
    _session(gateway, "printf '\\377\\376 bad-utf8-HERE \\033[31mred\\033[0m\\n'", target=web1)
    found = _grep(gateway, "bad-utf8-HERE red")
    assert found and found[-1]["stream"] == "output"
    bad = gateway_cli("sessions", "grep", "(", "--state", str(gateway.state))
    assert bad.returncode == 2 and "not a regular expression" in bad.stderr


def test_replay_leaves_the_shell_clean(gateway: Gateway, web1: str) -> None:
    session = _session(gateway, "printf 'query:\\033[6n:done\\n'", target=web1)
    replay = f"{sys.executable} -m gateway sessions replay {session} --state {gateway.state} --speed 50"
    # after the replay, whatever is left in the terminal's input queue is what the shell would get
    drain = "stty -icanon min 0 time 10; left=$(dd bs=64 count=1 2>/dev/null | od -An -c | tr -d ' \\n')"
    script = f'cd {ROOT} && {replay}; {drain}; echo "LEFT:[$left]"'
    child = pexpect.spawn(
        "/bin/sh", ["-c", script], timeout=30, encoding="utf-8", env={"PATH": "/usr/bin:/bin"}
    )
    child.expect_exact("\x1b[6n")
    child.send("\x1b[12;40R")  # what a real terminal answers, as if typed
    child.expect(r"LEFT:\[(.*)\]")
    assert child.match.group(1) == ""
    child.expect(pexpect.EOF)
    time.sleep(0.1)


def test_host_lists_one_host_of_several_and_is_refused_where_there_is_one(gateway: Gateway) -> None:
    """`--host` names a host of a fleet (over SSH) or of a collector's copy: anywhere else, one line."""
    mark = gateway.mark()
    refused = gateway.ssh("audit", "sessions", "list", "--host", "b", key="charlotte")
    assert refused.returncode == 1 and refused.stdout == ""
    assert (
        refused.stderr.strip()
        == "gateway: audit: --host lists a fleet's sessions: this gateway is not in a fleet"
    )
    ended = gateway.since(mark, lambda e: e["event"] == "session.end")  # a query refused as it runs
    assert [e.get("error") for e in ended if e["event"] == "session.end"] == ["--host without a fleet"]
    cli = gateway_cli("sessions", "list", "--host", "b", "--state", str(gateway.state))
    assert cli.returncode == 2 and "use it with --collected DIR" in cli.stderr
