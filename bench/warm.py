"""What readying the cgroup lock at login buys (``gateway.confine.warm``): the first PTY prompt of
``ssh -tt debug@ CONTAINER``, this checkout against another (``--before DIR``, e.g. ``git worktree add
/tmp/before REV``), turn about, back to back and after an idle second (a person's login, not a loop's).

``python -m bench.warm --before /tmp/before`` writes bench/results/warm.json and warm.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, alternate, figure, keygen, save
from bench.door import _container, _first_prompt
from bench.gateway import running_gateway

ROOT = Path(__file__).resolve().parents[1]


def run(before: Path, runs: int = 12, idles: tuple[float, ...] = (0.0, 1.0)) -> dict[str, Any]:
    """Every figure, from one run."""
    container, _pid = _container()
    out: dict[str, Any] = {"runs": runs, "before": str(before)}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            key = keygen(base / "client")
            with (
                running_gateway(base / "after", key) as after,
                running_gateway(base / "before", key, root=before) as old,
            ):

                def prompt(port: int, idle: float) -> float:
                    time.sleep(idle)
                    return _first_prompt(
                        [
                            "ssh",
                            *SSH_OPTS,
                            "-p",
                            str(port),
                            "-i",
                            str(key),
                            "-tt",
                            "debug@127.0.0.1",
                            container,
                        ]
                    )

                for port in (after.port, old.port):
                    prompt(port, 0.0)  # warm-up
                for idle in idles:
                    seconds = alternate(
                        {
                            "after": lambda i=idle: prompt(after.port, i),
                            "before": lambda i=idle: prompt(old.port, i),
                        },
                        runs,
                        turn_about=True,
                    )
                    paired = [a - b for a, b in zip(seconds["after"], seconds["before"], strict=True)]
                    out[f"idle_{idle:g}"] = {
                        "after_ms": figure(seconds["after"], 1000),
                        "before_ms": figure(seconds["before"], 1000),
                        "paired_median_ms": round(statistics.median(paired) * 1000, 2),
                    }
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    return out


def markdown(out: dict[str, Any]) -> str:
    """The table."""

    def cell(value: dict[str, float]) -> str:
        return f"{value['median']} ({value['min']}-{value['max']}) ms"

    rows = [
        f"First PTY prompt, `debug C`, {out['runs']} turn-about rounds; medians (min-max).",
        "",
        "| between logins | before | after (the lock readied at login) | paired median difference |",
        "| --- | --- | --- | --- |",
    ]
    for key, value in out.items():
        if key.startswith("idle_"):
            rows.append(
                f"| {key.removeprefix('idle_')} s | {cell(value['before_ms'])} | {cell(value['after_ms'])}"
                f" | {value['paired_median_ms']} ms |"
            )
    return "\n".join([*rows, ""])


def main() -> None:
    """``python -m bench.warm --before DIR``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    out = run(args.before, args.runs)
    save(args.out, "warm", out, markdown(out))


if __name__ == "__main__":
    main()
