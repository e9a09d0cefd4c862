"""What privilege separation costs, before and after in one run: the gateway as shipped (unprivileged
network workers, ``gateway.privsep``) against the same checkout with one privileged process reading the
network (``--net-user none``, as before), with stock sshd beside them doing the same work.

- connect: ``ssh memory@`` (``free -m``) from start to exit, against sshd forcing ``free -m``;
- first prompt: ``ssh -tt debug@ CONTAINER`` until the shell's prompt, against sshd forcing
  ``nsenter --target PID --mount --uts --ipc --net --pid -- /bin/sh``;
- typing: echo p50 / p99 and the server's CPU per echo at 200 open-loop typists (``bench.typing``'s
  rounds: the gateway, ``--net-user none`` and sshd take turns in every round).

Connect and first prompt alternate turn about (who goes first changes every round). ``python -m
bench.privsep`` writes bench/results/privsep.json and privsep.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import SSH_OPTS, alternate, figure, keygen, save, sshd
from bench.connect import first_byte_and_exit
from bench.door import _container, _first_prompt
from bench.gateway import running_gateway
from bench.typing import curve

ROOT = Path(__file__).resolve().parents[1]
ONE_PROCESS = ("--net-user", "none")
#: issue 33's limits: connect and the first prompt grow by at most 3 ms; echo p99 within 2x sshd's
TARGET_ADDED_MS = 3.0
TARGET_P99_RATIO = 2.0


def _latencies(runs: int, container: str, pid: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        key = keygen(base / "client")
        pub = key.with_suffix(".pub").read_text().strip()
        nsenter = f"nsenter --target {pid} --mount --uts --ipc --net --pid -- /bin/sh"
        env = 'environment="HOME=/nonexistent"'
        host_key, pty_key = keygen(base / "host"), keygen(base / "pty")
        lines = (
            f'restrict,{env},command="free -m" {host_key.with_suffix(".pub").read_text().strip()}\n'
            f'restrict,pty,{env},command="{nsenter}" {pty_key.with_suffix(".pub").read_text().strip()}\n'
        )
        del pub
        with (
            sshd(base / "sshd", lines) as sshd_port,
            running_gateway(base / "separated", key) as separated,
            running_gateway(base / "one", key, extra=ONE_PROCESS) as one,
            running_gateway(base / "unit", key, unit=True) as unit,
        ):

            def ssh(port: int, identity: Path, *words: str) -> list[str]:
                return ["ssh", *SSH_OPTS, "-p", str(port), "-i", str(identity), *words]

            connect = {
                "separated": ssh(separated.port, key, "memory@127.0.0.1"),
                "unit": ssh(unit.port, key, "memory@127.0.0.1"),
                "one_process": ssh(one.port, key, "memory@127.0.0.1"),
                "sshd": ssh(sshd_port, host_key, "root@127.0.0.1"),
            }
            prompt = {
                "separated": ssh(separated.port, key, "-tt", "debug@127.0.0.1", container),
                "unit": ssh(unit.port, key, "-tt", "debug@127.0.0.1", container),
                "one_process": ssh(one.port, key, "-tt", "debug@127.0.0.1", container),
                "sshd": ssh(sshd_port, pty_key, "-tt", "root@127.0.0.1"),
            }
            for argv in (*connect.values(), *prompt.values()):  # warm-up: genesis, page cache
                first_byte_and_exit(argv) if argv in connect.values() else _first_prompt(argv)
            exits = alternate(
                {name: (lambda a=argv: first_byte_and_exit(a)[1]) for name, argv in connect.items()},
                runs,
                turn_about=True,
            )
            prompts = alternate(
                {name: (lambda a=argv: _first_prompt(a)) for name, argv in prompt.items()},
                runs,
                turn_about=True,
            )
    out: dict[str, Any] = {}
    for name in connect:
        out[f"connect_{name}_ms"] = figure(exits[name], 1000)
        out[f"prompt_{name}_ms"] = figure(prompts[name], 1000)
    for figure_name in ("connect", "prompt"):
        for side, suffix in (("separated", ""), ("unit", "_unit")):
            added = out[f"{figure_name}_{side}_ms"]["median"] - out[f"{figure_name}_one_process_ms"]["median"]
            out[f"{figure_name}_added{suffix}_ms"] = round(added, 2)
    return out


def run(runs: int = 20, typists: int = 200, rounds: int = 3, seconds: float = 8.0) -> dict[str, Any]:
    """Every figure, from one run."""
    container, pid = _container()
    try:
        out = _latencies(runs, container, pid)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    clients = max(2, len(os.sched_getaffinity(0)))
    typing = curve([typists], rounds, seconds, clients, variants={"one_process": ONE_PROCESS})
    point = typing["points"][typists]
    out["typing"] = point
    out["runs"], out["typists"], out["rounds"] = runs, typists, rounds
    p99 = {
        side: (point[side].get("p99_ms") or {}).get("median") for side in ("gateway", "one_process", "sshd")
    }
    out["p99_ratio_separated"] = (
        round(p99["gateway"] / p99["sshd"], 2) if p99["gateway"] and p99["sshd"] else None
    )
    out["p99_ratio_one_process"] = (
        round(p99["one_process"] / p99["sshd"], 2) if p99["one_process"] and p99["sshd"] else None
    )
    return out


def _cell(value: dict[str, float] | None) -> str:
    if not value:
        return "-"
    return f"{value['median']} ({value['min']}-{value['max']})"


def markdown(out: dict[str, Any]) -> str:
    """The before-and-after table."""
    point = out["typing"]

    def typing_cell(side: str) -> str:
        row = point[side]
        return (
            f"{_cell(row.get('p50_ms'))} / {_cell(row.get('p99_ms'))} ms; CPU per echo"
            f" {_cell(row.get('server_cpu_per_echo_ms'))} ms"
        )

    added = out["connect_added_ms"], out["prompt_added_ms"]
    unit_added = out["connect_added_unit_ms"], out["prompt_added_unit_ms"]
    verdict = ["met" if a <= TARGET_ADDED_MS else "missed" for a in added]
    ratio = out["p99_ratio_separated"]
    p99_verdict = "met" if ratio is not None and ratio <= TARGET_P99_RATIO else "missed"
    return "\n".join(
        [
            f"Privilege separation, before and after, one run ({out['runs']} turn-about rounds; typing:"
            f" {out['typists']} typists, {out['rounds']} rounds); medians (min-max).",
            "",
            "| figure | one process (before, `--net-user none`) | separated | separated, under the unit's"
            " sandbox, spawner apart (as the unit runs it) | sshd | result |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| connect -> ssh exits, `free -m` | {_cell(out['connect_one_process_ms'])} ms"
            f" | {_cell(out['connect_separated_ms'])} ms | {_cell(out['connect_unit_ms'])} ms"
            f" | {_cell(out['connect_sshd_ms'])} ms"
            f" | +{added[0]} ms (at most +{TARGET_ADDED_MS:g}: {verdict[0]}); under the unit +{unit_added[0]} |",
            f"| first PTY prompt, `debug C` (sshd: nsenter /bin/sh) | {_cell(out['prompt_one_process_ms'])} ms"
            f" | {_cell(out['prompt_separated_ms'])} ms | {_cell(out['prompt_unit_ms'])} ms"
            f" | {_cell(out['prompt_sshd_ms'])} ms"
            f" | +{added[1]} ms (at most +{TARGET_ADDED_MS:g}: {verdict[1]}); under the unit +{unit_added[1]} |",
            f"| echo p50 / p99, {out['typists']} typists | {typing_cell('one_process')} | {typing_cell('gateway')}"
            f" | - | {typing_cell('sshd')} | p99 {ratio}x sshd's (at most {TARGET_P99_RATIO:g}x: {p99_verdict});"
            f" before: {out['p99_ratio_one_process']}x |",
            "",
        ]
    )


def main() -> None:
    """``python -m bench.privsep``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--typists", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    out = run(args.runs, args.typists, args.rounds, args.seconds)
    save(args.out, "privsep", out, markdown(out))


if __name__ == "__main__":
    main()
