"""The lean path for channel data (gateway/sshfast.py), driven by a real asyncssh client.

What it must keep: every byte in order across rekeys, the windows, no
empty IGNORE before each packet (none for AES-GCM, CTR or chacha20) but
still the CBC countermeasure when a CBC cipher is configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest

from tests.e2e.conftest import Gateway

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
actions:
  cat: {type: host, command: [cat]}
  lines: {type: host, command: [sh, -c, "yes gateway | head -n 40000"]}
grants:
  - principals: [betty]
    actions: [cat, lines]
"""


async def _connect(gw: Gateway, action: str, **options: Any) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1",
        gw.port,
        username=action,
        client_keys=[asyncssh.read_private_key(str(gw.keys["betty"]))],
        known_hosts=None,
        agent_path=None,
        **options,
    )


@pytest.fixture(params=["lean", "no-lean-path"])
def lean(own_gateway: Any, request: pytest.FixtureRequest) -> Gateway:
    """The gateway as shipped (the lean path on), and with ``serve --no-lean-path``: both keep every byte."""
    off = ("--no-lean-path",) if request.param == "no-lean-path" else ()
    gw: Gateway = own_gateway("--ciphers", "+aes128-cbc", *off, policy=POLICY)
    gw.lean = not off  # type: ignore[attr-defined]
    return gw


class _Ignores(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Received MSG_IGNORE" in record.getMessage():
            self.count += 1


@pytest.fixture
def ignores() -> Iterator[_Ignores]:
    """IGNORE packets the client received (asyncssh's packet log, level 3)."""
    handler, logger = _Ignores(), logging.getLogger("asyncssh")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    asyncssh.set_debug_level(3)
    try:
        yield handler
    finally:
        asyncssh.set_debug_level(1)
        logger.setLevel(level)
        logger.removeHandler(handler)


def _type_and_read(gw: Gateway, keys: int, **options: Any) -> bytes:
    """Type *keys* distinct keystrokes into ``cat`` on a PTY, one at a time; what was echoed."""

    async def main() -> bytes:
        async with await _connect(gw, "cat", **options) as conn:
            proc = await conn.create_process(term_type="xterm", encoding=None)
            echoed = b""
            for i in range(keys):
                key = bytes([ord("a") + i % 26])
                proc.stdin.write(key)
                while len(echoed) <= i:
                    echoed += await asyncio.wait_for(proc.stdout.read(4096), 10)
            proc.stdin.write(b"\x04")  # the line is not ended: ^D hands it to cat, ^D again ends it
            proc.stdin.write(b"\x04")
            await asyncio.wait_for(proc.wait(), 10)
            return echoed

    return asyncio.run(main())


def test_every_keystroke_echoes_in_order_across_client_rekeys(lean: Gateway) -> None:
    echoed = _type_and_read(lean, 600, rekey_bytes=4096)  # a key exchange every ~60 keystrokes
    assert echoed[:600] == bytes(ord("a") + i % 26 for i in range(600))


def test_bulk_output_on_a_pty_arrives_whole(lean: Gateway) -> None:
    async def main() -> tuple[bytes, int | None]:
        async with await _connect(lean, "lines") as conn:
            result = await conn.run(term_type="xterm", encoding=None)
            return bytes(result.stdout or b""), result.exit_status

    out, status = asyncio.run(main())
    assert status == 0
    assert out == b"gateway\r\n" * 40000  # 360 kB: more than the client's window, in many packets


@pytest.mark.parametrize(
    ("cipher", "expect_ignores"),
    [("aes128-gcm@openssh.com", False), ("aes128-ctr", False), ("aes128-cbc", True)],
)
def test_ignore_before_each_packet_only_for_cbc(
    lean: Gateway, ignores: _Ignores, cipher: str, expect_ignores: bool
) -> None:
    echoed = _type_and_read(lean, 20, encryption_algs=[cipher])
    assert echoed[:20] == bytes(ord("a") + i for i in range(20))
    if not lean.lean:  # type: ignore[attr-defined]  # asyncssh's own path decides its IGNOREs itself
        return
    if expect_ignores:  # one before each of the 20 echoes at least
        assert ignores.count >= 20
    else:
        assert ignores.count == 0


def test_typed_ahead_keys_arrive_first_and_in_order(lean: Gateway) -> None:
    """Keys sent before the PTY's child runs are read the ordinary way, then the pump takes over."""

    async def main() -> bytes:
        async with await _connect(lean, "cat") as conn:
            proc = await conn.create_process(term_type="xterm", encoding=None)
            proc.stdin.write(b"typed-ahead ")  # at once: the session is still starting
            echoed = b""
            while b"typed-ahead " not in echoed:
                echoed += await asyncio.wait_for(proc.stdout.read(4096), 10)
            proc.stdin.write(b"then live\r")
            while b"then live\r\n" not in echoed:
                echoed += await asyncio.wait_for(proc.stdout.read(4096), 10)
            proc.stdin.write(b"\x04")  # at the start of a line: cat's end
            await asyncio.wait_for(proc.wait(), 10)
            return echoed

    echoed = asyncio.run(main())
    assert echoed.startswith(b"typed-ahead then live\r\n")
