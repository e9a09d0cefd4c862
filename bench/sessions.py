"""Figures 2, 5 and 6: memory per open session, echo latency under load, connections per second.

All driven by one asyncssh client process against both servers, the same way.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import asyncssh


def _rss_kb(pid: int, field: str = "Rss") -> int:
    """Rss or Pss of *pid* in kB (smaps_rollup)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def sshd_session_pids(listener: int) -> list[int]:
    """Every sshd process below the listening one: the per-session processes."""
    found, frontier = [], [listener]
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if comm == "sshd":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


async def _connect(port: int, key: asyncssh.SSHKey, user: str) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", port, username=user, client_keys=[key], known_hosts=None,
                                  agent_path=None, encryption_algs=["aes128-gcm@openssh.com"])  # fmt: skip


async def hold_sessions(
    port: int, key: asyncssh.SSHKey, user: str, command: str, count: int, measure: Any
) -> dict[str, Any]:
    """Open *count* sessions running *command*, call *measure()* while all are open, close them."""
    conns: list[asyncssh.SSHClientConnection] = []
    procs = []
    semaphore = asyncio.Semaphore(20)

    async def one() -> None:
        async with semaphore:
            conn = await _connect(port, key, user)
            conns.append(conn)
            procs.append(await conn.create_process(command))

    await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.sleep(1.0)
    result: dict[str, Any] = measure()
    for proc in procs:
        proc.stdin.write_eof()
    for conn in conns:
        conn.close()
    await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)
    return result


async def echo_latency(
    port: int, key: asyncssh.SSHKey, user: str, command: str, sessions: int, keystrokes: int
) -> dict[str, float]:
    """*sessions* PTY sessions typing at once; seconds from a byte sent to its echo."""
    samples: list[float] = []
    conns = [await _connect(port, key, user) for _ in range(sessions)]

    async def typist(conn: asyncssh.SSHClientConnection) -> None:
        proc = await conn.create_process(command, term_type="xterm", encoding=None)
        await asyncio.sleep(0.5)
        for i in range(keystrokes):
            byte = bytes([97 + i % 26])
            start = time.perf_counter()
            proc.stdin.write(byte)
            while byte not in await proc.stdout.read(64):
                pass
            samples.append(time.perf_counter() - start)
            await asyncio.sleep(0.05)
        proc.stdin.write(b"\x04")
        proc.close()

    await asyncio.gather(*(typist(c) for c in conns))
    for conn in conns:
        conn.close()
    samples.sort()

    def quantile(q: float) -> float:
        return round(samples[min(len(samples) - 1, int(len(samples) * q))] * 1000, 2)

    return {
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": quantile(0.99),
        "p999_ms": quantile(0.999),
    }


async def connection_rate(
    port: int, key: asyncssh.SSHKey, user: str, command: str, seconds: float, parallel: int = 8
) -> float:
    """New connections (each running *command*) completed per second, sustained for *seconds*."""
    deadline = time.monotonic() + seconds
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with await _connect(port, key, user) as conn:
                await conn.run(command)
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(parallel)))
    return round(done / (time.monotonic() - start), 1)
