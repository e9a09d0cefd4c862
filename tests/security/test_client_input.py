"""Attack 6: numbers and names a client sends (session ids in exports, window sizes).

Before the fix `sessions export ID./../../x` put a member named `sessions/ID./../../x.jsonl`
into the bundle, and a window-change over 65535 raised in the session's input
task, so keystrokes could stop being forwarded.
"""

from __future__ import annotations

import asyncio
import tarfile
from pathlib import Path

import asyncssh
import pytest

from tests.e2e.conftest import Gateway, gateway_cli

pytestmark = pytest.mark.e2e


def _a_session_id(gateway: Gateway) -> str:
    mark = gateway.mark()
    assert gateway.ssh("memory", key="dan").returncode == 0
    start = next(e for e in gateway.since(mark, lambda e: e["event"] == "session.start") if "session_id" in e)
    return str(start["session_id"])


def _audit_ssh(gateway: Gateway, *words: str) -> tuple[int, bytes, bytes]:
    import subprocess  # noqa: PLC0415

    result = subprocess.run(
        gateway.ssh_argv("audit", *words, key="charlotte"), capture_output=True, timeout=60, check=False
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("suffix", ["./../../x", "/../../../etc/passwd", ".1/../x", "\n", ".0"])
def test_export_refuses_ids_that_are_not_exact(gateway: Gateway, tmp_path: Path, suffix: str) -> None:
    sid = _a_session_id(gateway)
    out = tmp_path / "bundle.tar.gz"
    exported = gateway_cli(
        "sessions", "export", sid + suffix, "--out", str(out), "--state", str(gateway.state)
    )
    assert exported.returncode == 1
    assert "not a session id" in exported.stderr
    assert not out.exists()
    if "\n" not in suffix:
        status, stdout, stderr = _audit_ssh(gateway, "sessions", "export", f"'{sid}{suffix}'")
        assert (status, stdout) == (1, b"")
        assert b"not a session id" in stderr


def test_export_members_stay_in_their_folder(gateway: Gateway, tmp_path: Path) -> None:
    sid = _a_session_id(gateway)
    out = tmp_path / "bundle.tar.gz"
    assert (
        gateway_cli(
            "sessions", "export", f"{sid}.1", "--out", str(out), "--state", str(gateway.state)
        ).returncode
        == 0
    )
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert names and all(not n.startswith("/") and ".." not in n.split("/") for n in names)


async def _typing_after_huge_sizes(gateway: Gateway, web1: str) -> str:
    key = asyncssh.read_private_key(str(gateway.keys["betty"]))
    async with (
        asyncssh.connect(
            "127.0.0.1", gateway.port, username="debug", client_keys=[key], known_hosts=None, agent_path=None
        ) as conn,
    ):
        process = await conn.create_process(web1, term_type="xterm", term_size=(100_000, 4_000_000_000))
        process.change_terminal_size(70_000, 70_000, 4_000_000_000, 99_999)
        process.change_terminal_size(80, 24)
        await asyncio.sleep(0.3)
        process.stdin.write("echo still-typing-$((40+2)); stty size; exit 0\n")
        output = await asyncio.wait_for(process.stdout.read(), 15)
        await process.wait()
        return str(output)


def test_out_of_range_window_sizes_are_clamped(gateway: Gateway, web1: str) -> None:
    mark = gateway.mark()
    output = asyncio.run(_typing_after_huge_sizes(gateway, web1))
    assert "still-typing-42" in output
    assert "24 80" in output
    end = next(
        e for e in gateway.since(mark, lambda e: e["event"] == "session.end") if e["event"] == "session.end"
    )
    assert end["exit_status"] == 0 and "error" not in end
