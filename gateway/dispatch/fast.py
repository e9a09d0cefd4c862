"""The forced-command door's fast path: an allowed ``host`` action without a PTY.

Every connection through sshd starts a process, so start-up is paid on every
request. This path imports no pydantic, YAML, asyncssh, aiodocker, structlog
or click: it reads the compiled policy snapshot, decides with the same
engine, writes the same sealed audit records and the same recording, and runs
the command. Anything else (a PTY, a container action, a refusal, a stale or
missing snapshot) returns None and takes the full path, which has the
complete messages and runners.
"""

from __future__ import annotations

import os
import selectors
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from gateway.audit import store
from gateway.audit.writer import ChainWriter, event
from gateway.command import MAX_COMMAND, has_control
from gateway.environment import clean_env
from gateway.policy.compiled import Target
from gateway.policy.engine import Allow, Request, decide
from gateway.policy.snapshot import load
from gateway.recording.asciicast import AsciicastRecorder

CHUNK = 65536


class Options(NamedTuple):
    """``dispatch`` options, parsed without click."""

    principal: str
    policies: Path = Path("policies")
    keys: Path = Path("keys")
    state: Path = Path("state")


def parse(argv: list[str]) -> Options | None:
    """``--principal NAME [--policies DIR] [--keys DIR] [--state DIR]``; None for anything else."""
    values: dict[str, Any] = {}
    names = {"--principal": "principal", "--policies": "policies", "--keys": "keys", "--state": "state"}
    pairs = iter(argv)
    for flag in pairs:
        value = next(pairs, None)
        if flag not in names or value is None:
            return None
        values[names[flag]] = value if flag == "--principal" else Path(value)
    return Options(**values) if "principal" in values else None


class _Request(NamedTuple):
    principal: str
    action: str
    words: tuple[str, ...]
    peer_host: str
    peer: str


def _request(options: Options) -> _Request | None:
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    if not original or len(original) > MAX_COMMAND or has_control(original) or os.isatty(0):
        return None
    action, _, rest = original.strip().partition(" ")
    try:
        words = tuple(shlex.split(rest))
    except ValueError:
        return None
    client = os.environ.get("SSH_CONNECTION", "").split()
    peer = f"{client[0]}:{client[1]}" if len(client) >= 2 else ""
    return _Request(options.principal, action, words, client[0] if client else "", peer)


def main(argv: list[str]) -> int | None:
    """Run the request if the fast path can; None means: take the full path."""
    options = parse(argv)
    request = _request(options) if options else None
    if options is None or request is None or store.read_state(options.state / "audit") is None:
        return None
    loaded = load(options.state, options.policies, options.keys)
    if loaded is None:
        return None
    policy, principals = loaded
    view = policy.actions.get(request.action)
    if request.principal not in principals or view is None or getattr(view, "type", "") != "host":
        return None
    target = Target(request.words[0]) if request.words else None
    decision = decide(
        policy,
        Request(request.principal, request.action, target, request.words[1:], source=request.peer_host),
    )
    if not isinstance(decision, Allow):
        return None
    command = tuple(getattr(decision.spec, "command", ()))
    return _Run(options, request, policy.digest, decision.grant, command).run()


class _Run:
    def __init__(
        self, options: Options, request: _Request, digest: str, grant: str, command: tuple[str, ...]
    ) -> None:
        self.options, self.request, self.command = options, request, command
        self.writer = ChainWriter(options.state / "audit")
        self.base = {
            "session_id": os.urandom(8).hex(),
            "peer": request.peer,
            "door": "openssh",
            "principal": request.principal,
            "action": request.action,
        }
        self.digest, self.grant = digest, grant

    def audit(self, name: str, *, durable: bool = False, **fields: Any) -> None:
        self.audit_many([(name, fields)], durable=durable)

    def audit_many(self, events: list[tuple[str, dict[str, Any]]], *, durable: bool = False) -> None:
        self.writer.write_many(
            [event(name, **self.base, **fields) for name, fields in events], durable=durable
        )

    def run(self) -> int:
        opened = time.monotonic()
        opening: list[tuple[str, dict[str, Any]]] = [("connection.open", {}), ("auth.accept", {})]
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        path = self.options.state / "recordings" / day / f"{self.base['session_id']}-1.cast"
        title, name = (
            f"{self.request.principal}: {self.request.action}",
            str(path.relative_to(self.options.state)),
        )
        recorder = AsciicastRecorder(
            path, width=80, height=24, term=None, record_input=False, title=title, name=name
        )
        opening += [
            ("request.allow", {"channel": 1, "grant": self.grant, "policy": self.digest}),
            ("session.start", {"channel": 1, "recording": recorder.name, "pty": False, "pid": os.getpid()}),
        ]
        self.audit_many(opening, durable=True)  # durable before anything runs
        status, traffic = _execute(list(self.command), recorder)
        signal_name = signal.Signals(-status).name[3:] if status < 0 else None
        duration = round(time.monotonic() - opened, 3)
        end = {"channel": 1, "exit_status": 128 - status if status < 0 else status, "signal": signal_name,
               "duration": duration, "bytes_in": 0, "bytes_out": traffic, **recorder.close()}  # fmt: skip
        self.audit_many([("session.end", end), ("connection.close", {"duration": duration})])
        self.writer.close()
        return 128 - status if status < 0 else status


def _execute(argv: list[str], recorder: AsciicastRecorder) -> tuple[int, int]:
    """Run *argv* with stdin passed through and stdout/stderr pumped and recorded."""
    child = subprocess.Popen(
        argv,
        stdin=0,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(None),
        start_new_session=True,
    )
    signal.signal(signal.SIGHUP, lambda *_: os.killpg(child.pid, signal.SIGHUP))
    assert child.stdout is not None
    assert child.stderr is not None
    targets = {child.stdout.fileno(): 1, child.stderr.fileno(): 2}
    traffic = 0
    with selectors.DefaultSelector() as selector:
        for fd in targets:
            selector.register(fd, selectors.EVENT_READ)
        while targets:
            for key, _ in selector.select():
                data = os.read(key.fd, CHUNK)
                if not data:
                    selector.unregister(key.fd)
                    del targets[key.fd]
                    continue
                recorder.output(data)
                traffic += len(data)
                _write_all(targets[key.fd], data)
    child.stdout.close()
    child.stderr.close()
    return child.wait(), traffic


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BrokenPipeError:
            return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]) or 0)
