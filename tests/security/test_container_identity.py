"""Attack 1: the container's PID is reused by a host process between inspect and nsenter.

The Engine API proxy answers inspect with the PID of a host process (as if the
container's main process had exited and the number had been taken). Before
the fix, nsenter entered the *host's* namespaces and read a host-only file.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway
from tests.security.engine_proxy import EngineProxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def host_process() -> Iterator[subprocess.Popen[bytes]]:
    """A host process whose PID the proxy hands out as the container's."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_reused_pid_never_gets_a_host_shell(
    own_gateway: Any, web1: str, host_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    marker = Path("/run") / f"gateway-host-only-{secrets.token_hex(4)}"
    marker.write_text("host secret\n")
    try:
        with EngineProxy(tmp_path / "engine.sock", lambda: host_process.pid) as proxy:
            gw: Gateway = own_gateway(env={"DOCKER_HOST": proxy.url})
            mark = gw.mark()
            result = gw.ssh("debug", web1, "cat", str(marker))
            assert proxy.rewrites >= 1
    finally:
        marker.unlink()
    assert "host secret" not in result.stdout
    assert (result.returncode, result.stderr) == (1, f"gateway: {web1} changed while connecting; try again\n")
    events = gw.since(mark, lambda e: e["event"] == "request.deny")
    denied = [e for e in events if e["event"] == "request.deny"]
    assert denied and denied[0]["reason"].startswith("container changed: ")
    assert not [e for e in events if e["event"] in ("request.allow", "session.start")]


def test_the_real_pid_still_enters(gateway: Gateway, web1: str) -> None:
    result = gateway.ssh("debug", web1, "hostname")
    assert (result.returncode, result.stdout.strip()) == (0, "web1")
