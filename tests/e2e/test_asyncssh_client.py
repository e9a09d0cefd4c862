"""The gateway driven by an asyncssh client: signals, env requests, terminal sizes."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from tests.e2e.conftest import Gateway

pytestmark = pytest.mark.e2e


async def _connect(gateway: Gateway, action: str, key: str = "betty") -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1",
        gateway.port,
        username=action,
        client_keys=[asyncssh.read_private_key(str(gateway.keys[key]))],
        known_hosts=None,
        agent_path=None,
    )


def test_exec_and_exit_status(gateway: Gateway, web1: str) -> None:
    async def main() -> asyncssh.SSHCompletedProcess:
        async with await _connect(gateway, "debug") as conn:
            return await conn.run(f"{web1} sh -c 'cat; echo done >&2; exit 4'", input="piped\n")

    result = asyncio.run(main())
    assert (result.exit_status, result.stdout, result.stderr) == (4, "piped\n", "done\n")


def test_client_signal_reaches_the_child(gateway: Gateway, web1: str) -> None:
    async def main() -> asyncssh.SSHCompletedProcess:
        async with (
            await _connect(gateway, "debug") as conn,
            conn.create_process(f"{web1} sleep 30") as process,
        ):
            await asyncio.sleep(0.5)
            process.send_signal("TERM")
            return await asyncio.wait_for(process.wait(), 15)

    result = asyncio.run(main())
    assert result.exit_signal is not None
    assert result.exit_signal[0] == "TERM"


def test_env_is_refused_and_never_reaches_the_child(gateway: Gateway, web1: str) -> None:
    async def main() -> asyncssh.SSHCompletedProcess:
        async with await _connect(gateway, "debug") as conn:
            return await conn.run(f"{web1} env", env={"LD_PRELOAD": "/evil.so", "TERM": "x"})

    mark = gateway.mark()
    result = asyncio.run(main())
    assert result.exit_status == 0
    assert "LD_PRELOAD" not in str(result.stdout)
    names = {e.get("name") for e in gateway.since(mark) if e.get("kind") == "env"}
    assert "LD_PRELOAD" in names


@pytest.mark.parametrize("term", ["xterm-256color", "$(id)", "x" * 200])
def test_terminal_type_is_checked(gateway: Gateway, web1: str, term: str) -> None:
    async def main() -> asyncssh.SSHCompletedProcess:
        async with await _connect(gateway, "debug") as conn:
            return await conn.run(
                f"{web1} sh -c 'echo TERM=$TERM; stty size'", term_type=term, term_size=(100, 30)
            )

    result = asyncio.run(main())
    assert result.exit_status == 0
    out = str(result.stdout)
    expected = term if term == "xterm-256color" else "xterm"
    assert f"TERM={expected}\r\n" in out
    assert "30 100" in out


def test_refusal_on_a_pty_is_one_line(gateway: Gateway) -> None:
    async def main() -> asyncssh.SSHCompletedProcess:
        async with await _connect(gateway, "debug") as conn:
            return await conn.run("nosuch", term_type="xterm")

    result = asyncio.run(main())
    assert result.exit_status == 1
    assert (
        str(result.stdout) + str(result.stderr)
        == "gateway: debug nosuch: permission denied (ssh help@HOST lists what you may do)\r\n"
    )
