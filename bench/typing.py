"""Interactive capacity: open-loop typists against the gateway and sshd, with everyone's CPU.

Each typist is a PTY session running ``cat`` (the gateway's ``cat`` host
action; sshd forcing ``cat``) that sends one byte every ``INTERVAL`` seconds
on a fixed schedule, whether or not earlier echoes came back (open loop), and
times each echo from the byte's scheduled send. The typists are spread over
``clients`` processes (at least one per core), each reporting its own CPU
time: a process that used more than ``SATURATED`` of its wall time was
saturated, and its round is reported as such and not counted. The server's
CPU (every process of it: the gateway and its workers, or sshd's per-session
processes and their ``cat``) over the typing window, divided by the echoes,
is its CPU per echoed keystroke. Rounds alternate between the servers.

``python -m bench.typing`` runs the capacity curve (50, 100, 200, 400, 800, 1,200
typists; the largest load each server serves with echo p99 under 10 ms), writes
``bench/results/typing.json``, ``typing.md`` and
``typing.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import asyncssh

from bench.common import keygen, loadavg, sshd
from bench.gateway import running_gateway

INTERVAL = 0.05
WARMUP = 1.0
SATURATED = 0.85
ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of *pids* and every descendant alive now, plus their reaped children's."""
    total = 0.0
    for pid in _tree(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime
    return total


def _tree(roots: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, frontier = list(roots), list(roots)
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


async def _typists(
    port: int,
    key_path: str,
    user: str,
    count: int,
    seconds: float,
    start_at: float,
    out: Any,
    command: str = "",
) -> None:
    key = asyncssh.read_private_key(key_path)
    conns, procs = [], []
    for _ in range(count):
        conn = await asyncssh.connect(
            "127.0.0.1", port, username=user, client_keys=[key], known_hosts=None, agent_path=None,
            encryption_algs=["aes128-gcm@openssh.com"],
        )  # fmt: skip
        conns.append(conn)
        procs.append(await conn.create_process(command, term_type="xterm", encoding=None))
    samples: list[float] = []
    failed: list[int] = []
    sent = 0
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    began_wall, began_cpu = time.perf_counter(), time.process_time()
    measuring_from = began_wall + WARMUP

    async def typist(index: int, proc: asyncssh.SSHClientProcess[bytes]) -> None:
        nonlocal sent
        pending: deque[float] = deque()
        phase = (index / count) * INTERVAL  # spread the typists over the interval

        async def reader() -> None:
            while True:
                data = await proc.stdout.read(4096)
                if not data:
                    return
                now = time.perf_counter()
                for _ in range(data.count(b"a")):
                    if pending:
                        at = pending.popleft()
                        if at >= measuring_from:
                            samples.append(now - at)

        reading = loop.create_task(reader())
        k = 0
        while True:
            at = began_wall + phase + k * INTERVAL
            if at > began_wall + seconds:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(at)  # from the schedule: a late send counts against the server and us alike
            try:
                proc.stdin.write(b"a")
            except OSError:  # the server ended the session: the round does not count
                failed.append(index)
                break
            sent += 1
            k += 1
        await asyncio.sleep(1.0)  # the last echoes
        reading.cancel()

    await asyncio.gather(*(typist(i, p) for i, p in enumerate(procs)))
    wall, cpu = time.perf_counter() - began_wall, time.process_time() - began_cpu
    out.send(
        {"samples": samples, "sent": sent, "cpu": cpu, "wall": wall, "failed": len(failed)}
    )  # before closing: the server's CPU
    out.recv()  # is read while its session processes are still there
    for conn in conns:
        conn.close()
    await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)


def _client(args: tuple[int, str, str, int, float, float], out: Any, command: str = "") -> None:
    asyncio.run(_typists(*args, out, command))


def round_(
    port: int,
    key: Path,
    user: str,
    typists: int,
    clients: int,
    seconds: float,
    server: list[int],
    command: str = "",
) -> dict[str, Any]:
    """One round: *typists* over *clients* processes; latencies, everyone's CPU."""
    start_at = time.time() + 2.0 + typists * 0.01  # after every client has connected
    share = [typists // clients + (1 if i < typists % clients else 0) for i in range(clients)]
    pipes, procs = [], []
    for count in share:
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.Process(
            target=_client, args=((port, str(key), user, count, seconds, start_at), child, command)
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    time.sleep(max(0.0, start_at - time.time()) + WARMUP)
    server_before, t0 = _cpu_seconds(server), time.perf_counter()
    results = [p.recv() for p in pipes]
    server_cpu, window = _cpu_seconds(server) - server_before, time.perf_counter() - t0
    for pipe in pipes:
        pipe.send("close")
    for proc in procs:
        proc.join()
    samples = sorted(s for r in results for s in r["samples"])
    busiest = max(r["cpu"] / r["wall"] for r in results)
    echoes = len(samples)

    def q(x: float) -> float:
        return (
            round(samples[min(len(samples) - 1, int(len(samples) * x))] * 1000, 2)
            if samples
            else float("nan")
        )

    return {
        "typists": typists,
        "clients": clients,
        "echoes": echoes,
        "sent": sum(r["sent"] for r in results),
        "p50_ms": round(statistics.median(samples) * 1000, 2) if samples else float("nan"),
        "p99_ms": q(0.99),
        "client_cpu_max": round(busiest, 3),
        "saturated": busiest > SATURATED,
        "failed_sessions": sum(r["failed"] for r in results),
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_per_echo_ms": round(server_cpu / echoes * 1000, 4) if echoes else float("nan"),
        "window_s": round(window, 2),
    }


def curve(
    points: list[int],
    rounds: int,
    seconds: float,
    clients: int,
    extra: tuple[str, ...] = (),
    before: Path | None = None,
    variants: dict[str, tuple[str, ...]] | None = None,
    door: bool = False,
) -> dict[str, Any]:
    """Both servers at each point, alternating, *rounds* times.

    With *door*, typing through the OpenSSH door takes its turn too: sshd forcing ``gateway dispatch``
    (``python -S door.py``) into the same gateway's ``cat``, the server's CPU being sshd's processes and
    the gateway's together.

    With *before* (another checkout, e.g. ``git worktree add /tmp/before
    REV``), that checkout's gateway takes its turn in every round too, with
    the same options: the before-and-after of CPU per echo on the same load.
    Each of *variants* (name: more ``serve`` options, e.g. ``--no-lean-path``) is this checkout's
    gateway with those options, taking its turn in every round too.
    """
    out: dict[str, Any] = {
        "points": {},
        "loadavg_before": loadavg(),
        "interval_s": INTERVAL,
        "clients": clients,
    }
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        key = keygen(base / "client")
        pub = key.with_suffix(".pub").read_text().strip()
        forced = f'restrict,pty,environment="HOME=/nonexistent",command="cat" {pub}\n'
        limits = ("--max-sessions-per-principal", "100000")  # one principal types in every session
        with contextlib.ExitStack() as stack:
            gw = stack.enter_context(running_gateway(base / "gw", key, extra=(*limits, *extra)))
            old = (
                stack.enter_context(
                    running_gateway(base / "before", key, extra=(*limits, *extra), root=before)
                )
                if before is not None
                else None
            )
            others = {
                name: stack.enter_context(running_gateway(base / name, key, extra=(*limits, *extra, *more)))
                for name, more in (variants or {}).items()
            }
            sshd_port = stack.enter_context(sshd(base / "sshd", forced))
            sshd_pid = int((base / "sshd" / "sshd.pid").read_text())
            door_port, door_pid = 0, 0
            if door:
                dispatch = (f"{sys.executable} -S {ROOT}/gateway/door.py dispatch --principal bench --policies"
                            f" {base}/gw/policies --keys {base}/gw/keys --state {base}/gw/state")  # fmt: skip
                line = f'restrict,pty,environment="HOME=/nonexistent",command="{dispatch}" {pub}\n'
                door_port = stack.enter_context(sshd(base / "sshd-door", line))
                door_pid = int((base / "sshd-door" / "sshd.pid").read_text())
            for typists in points:
                rows: dict[str, list[dict[str, Any]]] = {"gateway": [], "sshd": []}
                if old is not None:
                    rows["before"] = []
                rows.update({name: [] for name in others})
                if door:
                    rows["door"] = []
                for _ in range(rounds):
                    if door:
                        rows["door"].append(round_(door_port, key, "root", typists, clients, seconds,
                                                   [door_pid, gw.pid], command="cat"))  # fmt: skip
                    for name, other in others.items():
                        rows[name].append(
                            round_(other.port, key, "cat", typists, clients, seconds, [other.pid])
                        )
                    if old is not None:
                        rows["before"].append(
                            round_(old.port, key, "cat", typists, clients, seconds, [old.pid])
                        )
                    rows["gateway"].append(round_(gw.port, key, "cat", typists, clients, seconds, [gw.pid]))
                    rows["sshd"].append(round_(sshd_port, key, "root", typists, clients, seconds, [sshd_pid]))
                out["points"][typists] = {side: _summary(r) for side, r in rows.items()}
                print(json.dumps({typists: out["points"][typists]}), file=sys.stderr)
    out["loadavg_after"] = loadavg()
    return out


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    counted = [r for r in rounds if not r["saturated"] and not r["failed_sessions"]]

    def med(key: str) -> dict[str, float] | None:
        values = [r[key] for r in counted]
        return (
            {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}
            if values
            else None
        )

    return {
        "rounds": rounds,
        "counted": len(counted),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "server_cpu_per_echo_ms": med("server_cpu_per_echo_ms"),
        "client_cpu_max": max(r["client_cpu_max"] for r in rounds),
    }


def cell(summary: dict[str, Any], key: str) -> str:
    """A median with its range, or "saturated" when no round counted."""
    v = summary[key]
    return "saturated" if v is None else f"{v['median']} ({v['min']}-{v['max']})"


#: the echo p99 under which a load counts as served
CAPACITY_P99_MS = 10.0


def largest(result: dict[str, Any], side: str) -> int | None:
    """The largest load *side* served with its median p99 under CAPACITY_P99_MS."""
    served = [int(t) for t, sides in result["points"].items()
              if sides[side]["p99_ms"] and sides[side]["p99_ms"]["median"] < CAPACITY_P99_MS]  # fmt: skip
    return max(served, default=None)


def capacity(result: dict[str, Any]) -> str:
    """The largest load each server served with its median p99 under CAPACITY_P99_MS."""
    gateway, sshd_side = largest(result, "gateway"), largest(result, "sshd")
    verdict = "met" if (gateway or 0) >= (sshd_side or 0) else "**missed**"
    return (
        f"Capacity (the largest load with echo p99 under {CAPACITY_P99_MS:g} ms): gateway {gateway or 'none'},"
        f" sshd {sshd_side or 'none'} typists; the gateway's at least sshd's: {verdict}."
    )


def markdown(result: dict[str, Any]) -> str:
    """The README's table."""
    lines = [
        "| typists | gateway p50 / p99 ms | sshd p50 / p99 ms | p99 ratio | gateway CPU per echo ms | sshd CPU per echo ms | busiest client CPU | rounds counted |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for typists, sides in result["points"].items():
        gw, sd = sides["gateway"], sides["sshd"]

        ratio = (
            f"{gw['p99_ms']['median'] / sd['p99_ms']['median']:.2f}x"
            if gw["p99_ms"] and sd["p99_ms"]
            else "-"
        )
        lines.append(
            f"| {typists} | {cell(gw, 'p50_ms')} / {cell(gw, 'p99_ms')} | {cell(sd, 'p50_ms')} / {cell(sd, 'p99_ms')}"
            f" | {ratio} | {cell(gw, 'server_cpu_per_echo_ms')} | {cell(sd, 'server_cpu_per_echo_ms')}"
            f" | {gw['client_cpu_max']:.2f} / {sd['client_cpu_max']:.2f} | {gw['counted']} / {sd['counted']} |"
        )
    lines += ["", capacity(result)]
    if any("before" in sides for sides in result["points"].values()):
        lines += [
            "",
            f"Before and after, the same rounds (before: {result.get('before')}):",
            "",
            "| typists | CPU per echo ms, before | after | after / before | p50 / p99 ms, before |",
            "| --- | --- | --- | --- | --- |",
        ]
        for typists, sides in result["points"].items():
            old, new = sides["before"], sides["gateway"]
            if not (old["server_cpu_per_echo_ms"] and new["server_cpu_per_echo_ms"]):
                continue
            ratio = new["server_cpu_per_echo_ms"]["median"] / old["server_cpu_per_echo_ms"]["median"]
            lines.append(
                f"| {typists} | {cell(old, 'server_cpu_per_echo_ms')} | {cell(new, 'server_cpu_per_echo_ms')}"
                f" | {ratio:.2f} | {cell(old, 'p50_ms')} / {cell(old, 'p99_ms')} |"
            )
    if any("door" in sides for sides in result["points"].values()):
        lines += [
            "",
            "Typing through the OpenSSH door (sshd forcing `gateway dispatch` into the same gateway; its CPU is"
            " sshd's processes and the gateway's), the same rounds:",
            "",
            "| typists | door p50 / p99 ms | sshd forcing `cat` p50 / p99 ms | door CPU per echo ms |",
            "| --- | --- | --- | --- |",
        ]
        for typists, sides in result["points"].items():
            door_side, plain = sides["door"], sides["sshd"]
            lines.append(
                f"| {typists} | {cell(door_side, 'p50_ms')} / {cell(door_side, 'p99_ms')}"
                f" | {cell(plain, 'p50_ms')} / {cell(plain, 'p99_ms')} | {cell(door_side, 'server_cpu_per_echo_ms')} |"
            )
    names = [
        n for n in next(iter(result["points"].values()), {}) if n not in ("gateway", "sshd", "before", "door")
    ]
    if names:
        lines += [
            "",
            "Variants, the same rounds (CPU per echo ms; ratio to the gateway as shipped, and to sshd):",
            "",
        ]
        lines += ["| typists | as shipped | " + " | ".join(names) + " | sshd |"]
        lines += ["| --- | --- | " + " | ".join("---" for _ in names) + " | --- |"]
        for typists, sides in result["points"].items():
            shipped = sides["gateway"]["server_cpu_per_echo_ms"]
            cells = []
            for name in names:
                v = sides[name]["server_cpu_per_echo_ms"]
                cells.append(
                    f"{cell(sides[name], 'server_cpu_per_echo_ms')}"
                    + (f" = {v['median'] / shipped['median']:.2f}x" if v and shipped else "")
                )
            lines.append(
                f"| {typists} | {cell(sides['gateway'], 'server_cpu_per_echo_ms')} | "
                + " | ".join(cells)
                + f" | {cell(sides['sshd'], 'server_cpu_per_echo_ms')} |"
            )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """p50 and p99 against typists, both servers (a PNG)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(8, 4.5))
    keys = sorted(result["points"], key=int)  # ints in a run, strings once read back from JSON
    points = [int(k) for k in keys]
    for side, colour in (("gateway", "tab:blue"), ("sshd", "tab:orange")):
        for q, style in (("p50_ms", "--"), ("p99_ms", "-")):
            ys = [(result["points"][k][side][q] or {}).get("median", float("nan")) for k in keys]
            ax.plot(points, ys, style, color=colour, marker="o", label=f"{side} {q[:3]}")
    ax.set_xlabel("typists (one byte every 50 ms each, open loop)")
    ax.set_ylabel("echo latency, ms (median of rounds)")
    ax.set_yscale("log")
    ax.set_xticks(points)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    workers = result.get("workers")
    ax.set_title(f"Interactive capacity: gateway ({workers} worker(s)) vs sshd, same machine, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _describe(checkout: Path) -> str:
    """The commit a checkout is at, for the record."""
    import subprocess  # noqa: PLC0415

    found = subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip()[:80] or str(checkout)


def main() -> None:
    """The capacity curve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", default="50,100,200,400,800,1200")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=max(2, len(os.sched_getaffinity(0))))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--serve-args", default="", help="Extra `gateway serve` options (e.g. --workers 1).")
    parser.add_argument(
        "--before", type=Path, help="Another checkout whose gateway takes a turn in every round."
    )
    parser.add_argument("--name", default="typing", help="Result file name (NAME.json, NAME.md, NAME.png).")
    parser.add_argument(
        "--door", action="store_true", help="Typing through the OpenSSH door, in every round."
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=SERVE-ARGS: this checkout's gateway with more options, in every round (repeatable).",
    )
    args = parser.parse_args()
    variants = {v.split("=", 1)[0]: tuple(v.split("=", 1)[1].split()) for v in args.variant}
    result = curve(
        [int(p) for p in args.points.split(",")],
        args.rounds,
        args.seconds,
        args.clients,
        tuple(args.serve_args.split()),
        args.before,
        variants,
        door=args.door,
    )
    result["serve_args"] = args.serve_args
    words = args.serve_args.split()
    result["workers"] = (
        int(words[words.index("--workers") + 1]) if "--workers" in words else len(os.sched_getaffinity(0))
    )
    if args.before is not None:
        result["before"] = _describe(args.before)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=str))
    (args.out / f"{args.name}.md").write_text(markdown(result))
    plot(result, args.out / f"{args.name}.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
