"""Figure 1: connect, to the first output byte and until ssh exits, gateway against sshd;
and the same with audit shipping on, against a private rsyslog (within 5% of shipping off)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, alternate, figure, free_port, keygen, listening, sshd
from bench.gateway import running_gateway

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "deploy" / "rsyslog" / "gateway-collector.conf"


def first_byte_and_exit(argv: list[str]) -> tuple[float, float]:
    """Seconds from starting ssh to its first stdout byte, and to its exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(1)
    first = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return first, time.perf_counter() - start


@contextmanager
def rsyslog(base: Path) -> Iterator[int]:
    """A private rsyslogd with the shipped collector config; yields its TCP port."""
    port = free_port()
    base.mkdir(parents=True)
    (base / "work").mkdir()
    config = COLLECTOR.read_text().replace("/var/log/gateway", str(base / "out"))
    config = config.replace('port="6601"', f'port="{port}"')
    config = "\n".join(line for line in config.splitlines() if 'port="6602"' not in line)
    config = config.replace('StreamDriver.Name="gtls" ', "").replace("/etc/gateway-collector", str(base))
    (base / "rsyslog.conf").write_text(f'global(workDirectory="{base}/work")\n' + config)
    with listening(["rsyslogd", "-n", "-f", str(base / "rsyslog.conf"), "-i", str(base / "pid")], port):
        yield port


def run(runs: int = 30) -> dict[str, Any]:
    """Alternating runs of every side."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        key = keygen(base / "client")
        line = f'restrict,environment="HOME=/nonexistent",command="free -m" {key.with_suffix(".pub").read_text().strip()}\n'
        common = ["ssh", *SSH_OPTS, "-i", str(key)]
        with (
            sshd(base / "sshd", line) as sshd_port,
            running_gateway(base / "gw", key) as gw,
            rsyslog(base / "rsyslog") as syslog_port,
            running_gateway(
                base / "gw-ship", key, extra=("--audit-syslog", f"tcp://127.0.0.1:{syslog_port}")
            ) as ship,
        ):
            argvs = {
                "gateway": [*common, "-p", str(gw.port), "memory@127.0.0.1"],
                "sshd": [*common, "-p", str(sshd_port), "root@127.0.0.1"],
                "gateway_shipping": [*common, "-p", str(ship.port), "memory@127.0.0.1"],
            }
            for argv in argvs.values():
                first_byte_and_exit(argv)  # warm-up
            exits: dict[str, list[float]] = {name: [] for name in argvs}

            def side(name: str) -> Any:
                def measure() -> float:
                    first, done = first_byte_and_exit(argvs[name])
                    exits[name].append(done)
                    return first

                return measure

            firsts = alternate({name: side(name) for name in argvs}, runs)
    out: dict[str, Any] = {"runs": runs, "target_ratio": 0.15, "target_shipping_within": 0.05}
    for name in argvs:
        out[f"{name}_first_byte_ms"] = figure(firsts[name], 1000)
        out[f"{name}_exit_ms"] = figure(exits[name], 1000)
    ratio = out["gateway_first_byte_ms"]["median"] / out["sshd_first_byte_ms"]["median"]
    out["ratio_first_byte"] = round(ratio, 3)
    out["ratio_exit"] = round(out["gateway_exit_ms"]["median"] / out["sshd_exit_ms"]["median"], 3)
    shipping = out["gateway_shipping_first_byte_ms"]["median"] / out["gateway_first_byte_ms"]["median"] - 1
    out["shipping_overhead"] = round(shipping, 3)
    return out
