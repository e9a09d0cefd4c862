"""End-to-end fixtures: the real gateway, the real ssh client, real containers."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.confine.spawn import daemon_pid

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "gateway-demo:latest"
SSH_OPTS = [
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
]  # fmt: skip

pytestmark = pytest.mark.e2e


def ssh_command(
    port: int, key: Path, login: str, words: tuple[str, ...], opts: tuple[str, ...] = ()
) -> list[str]:
    """``ssh [OPTS] LOGIN@127.0.0.1 WORDS...`` with the test client options."""
    return ["ssh", *SSH_OPTS, "-p", str(port), "-i", str(key), *opts, f"{login}@127.0.0.1", *words]


def spawn(
    argv: list[str], *, size: tuple[int, int] = (24, 80), prompt: bool = True, timeout: float = 15
) -> Any:
    """A real ssh client on a real PTY (pexpect); waits for a shell prompt unless *prompt* is False."""
    import pexpect  # noqa: PLC0415

    env = {"TERM": "xterm", "PATH": "/usr/bin:/bin"}
    child = pexpect.spawn(argv[0], argv[1:], dimensions=size, timeout=timeout, encoding="utf-8", env=env)
    if prompt:
        child.expect(r"[#$] ")
    return child


def resize_then_exit(child: Any, rows: int, cols: int, status: int) -> None:
    """Resize the client's terminal, check the shell sees it, exit with *status* and check it comes back."""
    import pexpect  # noqa: PLC0415

    child.setwinsize(rows, cols)
    time.sleep(0.3)  # SIGWINCH reaches ssh, then the window-change request the shell
    child.sendline("stty size")
    child.expect(f"{rows} {cols}")
    child.sendline(f"exit {status}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == status


def copy_opts(port: int, key: Path) -> list[str]:
    """sftp/scp options for a test server: port (-P), key, no host-key prompts."""
    return ["-P", str(port), "-i", str(key), *SSH_OPTS[2:10]]


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """The engine answers and the demo image exists (built offline if missing)."""
    if _docker("info", check=False).returncode != 0:
        pytest.fail("no Docker engine answers: run scripts/setup first")
    if _docker("image", "inspect", IMAGE, check=False).returncode != 0:
        subprocess.run([str(ROOT / "images/build.sh"), IMAGE], check=True, timeout=120)


@dataclass
class Containers:
    """Containers made by the tests, each with a unique name, removed at the end."""

    prefix: str
    made: list[str] = field(default_factory=list)

    def run(self, short: str, *extra: str) -> str:
        """Start a demo container named ``PREFIX-short``; return its name."""
        name = f"{self.prefix}-{short}"
        _docker("run", "-d", "--name", name, "--hostname", short, *extra, IMAGE)
        self.made.append(name)
        return name

    def remove_all(self) -> None:
        """Remove every container this run made."""
        for name in self.made:
            _docker("rm", "-f", "-v", name, check=False)


@pytest.fixture(scope="session")
def containers(docker_ready: None) -> Iterator[Containers]:
    """A per-run container factory."""
    made = Containers(prefix=f"gwt{secrets.token_hex(3)}")
    yield made
    made.remove_all()


@pytest.fixture(scope="session")
def web1(containers: Containers) -> str:
    """A running demo container the test policy grants as a shell target."""
    return containers.run("web1")


@pytest.fixture(scope="session")
def stopped(containers: Containers) -> str:
    """A granted container that exists but is not running."""
    name = containers.run("web2")
    _docker("stop", "-t", "0", name)
    return name


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Key pairs: betty and dan are known, eve is known but has no grant, mallory is unknown."""
    base = tmp_path_factory.mktemp("keys")
    out: dict[str, Path] = {}
    for who in ("betty", "dan", "eve", "charlotte", "mallory"):
        path = base / who
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f", str(path)], check=True
        )
        out[who] = path
    return out


POLICY = """\
version: 1
actions:
  debug:
    type: shell
    allow_args: true
  console:
    type: shell
    command: ["/bin/sh", "-l"]
  memory:
    type: host
    command: ["free", "-m"]
  hello:
    type: host
    command: ["sh", "-c", "echo out; echo err >&2; exit 3"]
  audit:
    type: audit
grants:
  - principals: [charlotte]
    actions: [audit]
  - principals: [betty]
    actions: [debug, console]
    targets: ["{prefix}-web*"]
  - principals: [betty, dan]
    actions: [memory, hello]
"""


@dataclass
class Gateway:
    """A running `gateway serve` and the ways to talk to it."""

    proc: subprocess.Popen[str]
    port: int
    state: Path
    keys: dict[str, Path]
    policies: Path
    keydir: Path

    def ssh_argv(self, action: str, *words: str, key: str = "betty", opts: tuple[str, ...] = ()) -> list[str]:
        """The ssh command line for ``ssh ACTION@127.0.0.1 WORDS...``."""
        return ssh_command(self.port, self.keys[key], action, words, opts)

    def ssh(
        self,
        action: str,
        *words: str,
        key: str = "betty",
        opts: tuple[str, ...] = (),
        stdin: str = "",
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """Run ssh to the end; stdout and stderr kept apart."""
        argv = self.ssh_argv(action, *words, key=key, opts=opts)
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)

    def events(self) -> list[dict[str, Any]]:
        """Every audit record so far, as dicts, in chain order."""
        records = []
        for path in sorted((self.state / "audit").glob("audit-*.jsonl")):
            whole = path.read_text().rpartition("\n")[0]  # a record being written has no newline yet
            records += [json.loads(line) for line in whole.splitlines() if line.strip()]
        return records

    def mark(self) -> int:
        """How many audit records exist now; pass to ``since``."""
        return len(self.events())

    def since(
        self,
        mark: int,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        wait: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Records written after *mark*; waits (bounded) until one matches *predicate*."""
        deadline = time.monotonic() + wait
        while True:
            new = self.events()[mark:]
            if predicate is None or any(predicate(e) for e in new) or time.monotonic() > deadline:
                return new
            time.sleep(0.05)


def start_gateway(
    state: Path,
    policies: Path,
    keydir: Path,
    keys: dict[str, Path],
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> Gateway:
    """Start `python -m gateway serve` on 127.0.0.1:0 and wait for its address."""
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", "127.0.0.1:0",
            "--policies", str(policies), "--keys", str(keydir), "--state", str(state), *extra]  # fmt: skip
    return launch_gateway(argv, state, policies, keydir, keys, env)


def launch_gateway(
    argv: list[str],
    state: Path,
    policies: Path,
    keydir: Path,
    keys: dict[str, Path],
    env: dict[str, str] | None = None,
) -> Gateway:
    """Run *argv* (a `serve` listening on 127.0.0.1:0) and wait for its address."""
    env = {**{k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}, **(env or {})}
    state.mkdir(parents=True, exist_ok=True)
    stderr = (state.parent / f"{state.name}.stderr").open("w")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env)
    stderr.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not match:
        proc.kill()
        proc.communicate()
        errors = (state.parent / f"{state.name}.stderr").read_text()
        raise AssertionError(f"gateway did not start: {line!r} {errors}")
    return Gateway(proc, int(match.group(1)), state, keys, policies, keydir)


UNIT = ROOT / "deploy" / "gateway.service"
SANDBOX = ROOT / "tests" / "unit_sandbox.py"


@dataclass
class ShippedUnit:
    """deploy/gateway.service's command lines, as shipped, with only their paths (and the address)
    substituted: the spawner it starts apart (``ExecStartPre=+``) and ``serve`` under the unit's sandbox
    (tests/unit_sandbox.py: its no_new_privs, bounding set and seccomp filters)."""

    spawner: list[str]
    serve: list[str]
    socket: Path
    #: the spawner's stderr (the journal's part)
    log: Path

    @classmethod
    def render(cls, paths: dict[str, str], rendered: Path) -> ShippedUnit:
        """*paths*: shipped prefix -> here; *rendered*: where the unit, so substituted, is written."""
        text = UNIT.read_text()
        for shipped, here in paths.items():
            text = text.replace(shipped, here)
        rendered.write_text(text)
        joined = text.replace("\\\n", " ").splitlines()
        pre = [x.removeprefix("ExecStartPre=+") for x in joined if x.startswith("ExecStartPre=+")]
        (spawner,) = [shlex.split(x) for x in pre if "zygote.py" in x]
        (start,) = [shlex.split(x.removeprefix("ExecStart=")) for x in joined if x.startswith("ExecStart=")]
        assert spawner[0].endswith("/.venv/bin/python") and start[0].endswith("/.venv/bin/gateway"), start
        assert start[1] == "serve", start
        serve = [sys.executable, "-m", "gateway", "serve"]
        serve += ["127.0.0.1:0" if word == "0.0.0.0:2222" else word for word in start[2:]]
        return cls(
            spawner=[sys.executable, *spawner[1:]],
            serve=["/usr/bin/python3", str(SANDBOX), str(rendered), "--", *serve],
            socket=Path(spawner[spawner.index("--listen") + 1]),
            log=rendered.with_suffix(".spawner.log"),
        )

    def start_spawner(self) -> None:
        """The ExecStartPre=+ line: it returns once the spawner listens."""
        with self.log.open("w") as log:  # not a pipe: the daemon keeps it, as systemd's journal stream
            started = subprocess.run(self.spawner, stdout=log, stderr=log, timeout=30, check=False)
        assert started.returncode == 0, self.log.read_text()
        assert self.socket.is_socket()

    def stop_spawner(self) -> None:
        """What the unit's stop does to it (SIGKILL to what is left in the cgroup)."""
        pid = daemon_pid(self.socket)
        if pid:
            os.kill(pid, signal.SIGKILL)


def metrics_port(gw: Gateway) -> int:
    """The port of a gateway started with ``--metrics HOST:0`` (from its "metrics" log line)."""
    assert gw.proc.stdout is not None
    for _ in range(6):
        line = gw.proc.stdout.readline()
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("event") == "metrics":
            return int(record["listen"].rsplit(":", 1)[1])
    raise AssertionError("no metrics line")


def stop_gateway(gw: Gateway) -> int:
    """SIGTERM, and the exit status."""
    gw.proc.send_signal(signal.SIGTERM)
    try:
        gw.proc.communicate(timeout=20)
    finally:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.communicate()
    return gw.proc.returncode


def stop_running(started: list[Gateway]) -> list[int]:
    """Stop each of *started* still running; the exit statuses of those stopped."""
    return [stop_gateway(gw) for gw in started if gw.proc.poll() is None]


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    keys: dict[str, Path],
    containers: Containers,
    web1: str,
) -> Iterator[Gateway]:
    """The gateway under test, with the test policy; SIGTERM must end it with status 0."""
    base = tmp_path_factory.mktemp("gateway")
    policies, keydir = base / "policies", base / "keys"
    policies.mkdir()
    keydir.mkdir()
    (policies / "test.yaml").write_text(POLICY.replace("{prefix}", containers.prefix))
    for who in ("betty", "dan", "eve", "charlotte"):
        shutil.copy(keys[who].with_suffix(".pub"), keydir / f"{who}.pub")
    # GATEWAY_TEST_SERVE_ARGS: the suite's gateway with other options (CI runs the client matrix
    # again with --no-lean-path)
    extra = tuple(os.environ.get("GATEWAY_TEST_SERVE_ARGS", "").split())
    gw = start_gateway(base / "state", policies, keydir, keys, extra=extra)
    yield gw
    assert stop_gateway(gw) == 0
    verified = gateway_cli("audit", "verify", "--state", str(gw.state))
    assert verified.returncode == 0, verified.stdout + verified.stderr  # intact after heavy use


def gateway_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `gateway` command line."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture
def own_gateway(gateway: Gateway, tmp_path: Path) -> Iterator[Any]:
    """Start a private gateway (own state, a copy of the policy) with extra options and env."""
    started: list[Gateway] = []

    def _launch(*extra: str, env: dict[str, str] | None = None, policy: str | None = None) -> Gateway:
        policies = tmp_path / f"policies{len(started)}"
        shutil.copytree(gateway.policies, policies)
        if policy is not None:
            (policies / "extra.yaml").write_text(policy)
        gw = start_gateway(
            tmp_path / f"state{len(started)}", policies, gateway.keydir, gateway.keys, env=env, extra=extra
        )
        started.append(gw)
        return gw

    yield _launch
    stop_running(started)
