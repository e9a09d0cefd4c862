"""Issue 4's figures: `sessions list` over 100,000 sessions, and replaying a 200 MB recording.

The audit log is generated directly (sealed records, one chain) rather than
through 100,000 SSH sessions; the index is built once by the first query, as
it would be after an upgrade, then the second query is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import figure
from gateway.audit import chain, store
from gateway.audit.store import ChainState

ROOT = Path(__file__).resolve().parents[1]


def _write_log(state: Path, sessions: int, recording: str) -> None:
    directory = state / "audit"
    directory.mkdir(parents=True)
    key = os.urandom(32)
    store.write_new(directory / "initial.key", key.hex() + "\n")
    seq, prev = 0, chain.GENESIS
    path = directory / f"audit-{store.today()}-000.jsonl"
    with path.open("w") as f:
        for i in range(sessions):
            sid = f"{i:016x}"
            common = {
                "session_id": sid,
                "channel": 1,
                "principal": f"p{i % 50}",
                "action": "debug",
                "target": f"web{i % 20}",
            }
            for event, extra in (
                ("session.start", {"recording": recording if i == sessions - 1 else None, "pid": 1}),
                ("session.end", {"exit_status": 0, "duration": 1.5, "bytes_in": 10, "bytes_out": 100}),
            ):
                record = {
                    "event": event,
                    "ts": f"2026-11-{1 + i * 20 // sessions:02d}T12:00:00.000000Z",
                    **common,
                }
                record.update({k: v for k, v in extra.items() if v is not None})
                seq += 1
                line = chain.seal(record, seq=seq, prev=prev, key=key)
                f.write(line + "\n")
                prev, key = chain.digest(line), chain.evolve(key)
    store.write_state(directory, ChainState(seq, prev, key.hex(), path.name, path.stat().st_size))


def _write_recording(path: Path, megabytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = json.dumps("x" * 4000 + "\r\n")
    with path.open("w") as f:
        f.write(json.dumps({"version": 2, "width": 80, "height": 24, "timestamp": 0}) + "\n")
        written, t = 0, 0.0
        while written < megabytes * 1_000_000:
            line = f'[{t:.6f}, "o", {chunk}]\n'
            f.write(line)
            written += len(line)
            t += 0.001


def _gateway(*args: str) -> tuple[float, int, subprocess.CompletedProcess[bytes]]:
    """Wall seconds, this run's peak RSS (kB, from /usr/bin/time) and its result."""
    with tempfile.NamedTemporaryFile() as report:
        argv = ["/usr/bin/time", "-f", "%M", "-o", report.name, sys.executable, "-m", "gateway", *args]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=True, cwd=ROOT)
        elapsed = time.perf_counter() - start
        peak = int(Path(report.name).read_text().split()[-1])
    return elapsed, peak, done


def run(sessions: int = 100_000, megabytes: int = 200, runs: int = 15) -> dict[str, Any]:
    """Build the log, index it, time the list (*runs* times); replay the big recording, peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        recording = "recordings/2026-11-22/big.cast"
        _write_log(state, sessions, recording)
        _write_recording(state / recording, megabytes)
        first, _, _ = _gateway("sessions", "list", "--state", str(state))
        lists = [_gateway("sessions", "list", "--state", str(state)) for _ in range(runs)]
        timed, listed = [t for t, _, _ in lists], lists[-1][2]
        rows = listed.stdout.count(b"\n") - 1
        filtered, _, _ = _gateway(
            "sessions", "list", "--state", str(state), "--principal", "p7", "--since", "2026-11-10"
        )
        last = f"{sessions - 1:016x}"
        replays = [
            _gateway("sessions", "replay", last, "--state", str(state), "--speed", "1000000000")
            for _ in range(runs)
        ]
    return {
        "sessions": sessions,
        "index_build_s": round(first, 2),
        "runs": runs,
        "list_s": figure(timed, digits=3),
        "listed_rows": rows,
        "filtered_list_s": round(filtered, 3),
        "target_list_s": 1.0,
        "recording_mb": megabytes,
        "replay_s": figure([r[0] for r in replays]),
        "replay_peak_rss_mb": figure([r[1] / 1024 for r in replays], digits=1),
        "target_replay_rss_mb": 50,
    }


if __name__ == "__main__":
    print(
        json.dumps(
            run(int(os.environ.get("BENCH_SESSIONS", "100000")), int(os.environ.get("BENCH_MB", "200"))),
            indent=2,
        )
    )
