"""Audit shipping throughput against a private rsyslog, and `sessions grep` over 1 GB of recordings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import alternate, figure
from bench.connect import rsyslog
from gateway.audit import AuditLog
from gateway.audit.ship import Shipper
from gateway.audit.syslog import Destination
from gateway.events import Event
from gateway.evidence.grep import compile_pattern, grep_recording
from gateway.evidence.search import grep_rows


async def _ship_once(audit: Path, port: int) -> float:
    for stale in audit.glob("ship-*.json"):  # noqa: ASYNC240 - a benchmark's setup, before timing
        stale.unlink()
    shipper = Shipper(audit, Destination.parse(f"tcp://127.0.0.1:{port}"), "bench")
    start = time.perf_counter()
    task = asyncio.get_running_loop().create_task(shipper.run())
    while not shipper.caught_up():  # noqa: ASYNC110 - polling the shipper's position is the measurement
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return elapsed


def shipping(records: int = 20_000, runs: int = 15) -> dict[str, Any]:
    """Records per second shipped to rsyslog, sustained (a fresh position each run)."""
    with tempfile.TemporaryDirectory() as tmp:
        audit = Path(tmp) / "audit"
        log = AuditLog(audit)
        for i in range(records):
            log.emit(Event.SESSION_START, session_id=f"{i:016x}", principal="bench", action="memory")
        log.close()
        with rsyslog(Path(tmp) / "rsyslog") as port:
            seconds = [asyncio.run(_ship_once(audit, port)) for _ in range(runs)]
    return {
        "records": records,
        "runs": runs,
        "records_per_s": figure([records / s for s in seconds], digits=0),
    }


LINE = "drwxr-xr-x    2 root     root          4096 Nov 27 10:00 some-directory-name-{n}\r\n"


def _write_recordings(directory: Path, megabytes: int) -> list[Path]:
    directory.mkdir(parents=True)
    paths, per_file = [], 64 << 20
    written, n = 0, 0
    while written < megabytes << 20:
        path = directory / f"{len(paths):04d}.cast"
        with path.open("w") as f:
            f.write(json.dumps({"version": 2, "width": 80, "height": 24}) + "\n")
            size = 0
            while size < per_file:
                event = json.dumps([n * 0.01, "o", LINE.format(n=n)]) + "\n"
                f.write(event)
                size += len(event)
                n += 1
            written += size
        paths.append(path)
    return paths


def grep_speed(megabytes: int = 1024, runs: int = 3) -> dict[str, Any]:
    """MB/s of the grep over *megabytes* of recordings (one match in the lot)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_recordings(Path(tmp) / "rec", megabytes)
        total = sum(p.stat().st_size for p in paths) / 1e6
        pattern = compile_pattern(r"some-directory-name-4242\b")  # RE2, as users get it
        names = [str(p) for p in paths]

        rows = [{"id": str(k), "recording": p.name} for k, p in enumerate(paths)]

        def ours() -> float:  # as users get it: the recordings shared out between helpers, one per core
            start = time.perf_counter()
            found = sum(1 for _ in grep_rows(rows, paths[0].parent, pattern))
            assert found == 1
            return time.perf_counter() - start

        def one_process() -> float:  # the same search in the calling thread alone
            start = time.perf_counter()
            found = sum(1 for p in paths for _ in grep_recording(p, pattern, input_only=False))
            assert found == 1
            return time.perf_counter() - start

        def tool(argv: list[str]) -> Callable[[], float]:
            def measure() -> float:  # the limit: the same files, the same pattern, counting lines
                start = time.perf_counter()
                subprocess.run(
                    [*argv, r"some-directory-name-4242\b", *names], capture_output=True, check=False
                )
                return time.perf_counter() - start

            return measure

        sides = {"gateway": ours, "one_process": one_process, "grep": tool(["grep", "-c", "-E"])}
        if shutil.which("rg"):
            sides["rg"] = tool(["rg", "-c"])
        for measure in sides.values():
            measure()  # warm: the page cache holds the files for every side
        seconds = alternate(sides, runs)
    out: dict[str, Any] = {"megabytes": round(total), "runs": runs, "target_MBps": 300}
    out["MBps"] = figure([total / s for s in seconds["gateway"]], digits=1)
    for name in sides:
        if name != "gateway":
            out[f"{name}_MBps"] = figure([total / s for s in seconds[name]], digits=1)
    return out
