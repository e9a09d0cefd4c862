"""`gateway audit ...`: verify the chain and bundles, status, grants, export K_0."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import emit_json, fail, main, read_k0, state_option


@main.group()
def audit() -> None:
    """Verify the audit chain; export its initial key."""


@audit.command()
@state_option
@click.option(
    "--key",
    type=click.Path(path_type=Path),
    help="K_0 (default: STATE/audit/initial.key; with --collected, "
    "one file for every host or a directory of HOST.key).",
)
@click.option(
    "--pubkey",
    type=click.Path(path_type=Path),
    help="Also check the signed checkpoints (with --collected: one file or a directory of HOST.pub).",
)
@click.option(
    "--collected", type=click.Path(path_type=Path), help="Verify every host's chain from a collector's files."
)
@click.option(
    "--against",
    type=click.Path(path_type=Path),
    help="Compare the host's chain with the collector's copy of it.",
)
@click.option(
    "--bundle",
    type=click.Path(path_type=Path),
    help="Verify an exported bundle (sessions export) offline: with --key K0, or the checkpoint public key.",
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
def verify(
    state: Path,
    key: Path | None,
    pubkey: Path | None,
    collected: Path | None,
    against: Path | None,
    bundle: Path | None,
    as_json: bool,
) -> None:
    """Check the chain: exit 0 when intact, 1 when tampered with (or cut), 3 when only the tail is torn."""
    from gateway.audit.checkpoint import load_public  # noqa: PLC0415
    from gateway.audit.verify import verify as run  # noqa: PLC0415

    if bundle is not None:
        _verify_bundle(bundle, key, pubkey, as_json)
        return
    if collected is not None:
        _verify_collected(collected, key, pubkey, as_json)
        return
    report = run(state / "audit", read_k0(state, key), load_public(pubkey) if pubkey else None)
    if as_json:
        comparison = _against(state, against) if against is not None and report.intact else None
        emit_json(
            {
                **report.as_dict(),
                "against": comparison and {"ok": comparison.ok, "message": comparison.message},
            }
        )
        sys.exit(report.exit_status or (0 if comparison is None or comparison.ok else 1))
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.intact:
        click.echo(f"checked: {report.summary()}")
        fail(f"audit: {report.where}: {report.kind}: {report.detail}", report.exit_status)
    click.echo(f"ok: chain intact: {report.summary()}")
    if key is None and (state / "audit" / "initial.key").exists():
        from gateway.audit.verify import K0_ON_HOST_WEAKENS  # noqa: PLC0415

        click.echo(f"note: {K0_ON_HOST_WEAKENS}")
    if against is not None:
        result = _against(state, against)
        if not result.ok:
            fail(f"audit: {result.message}", 1)
        click.echo(f"ok: {result.message}")


def _verify_bundle(bundle: Path, key: Path | None, pubkey: Path | None, as_json: bool) -> None:
    import dataclasses  # noqa: PLC0415

    from gateway.audit.bundle import verify_bundle  # noqa: PLC0415
    from gateway.audit.checkpoint import load_public  # noqa: PLC0415

    try:
        k0 = bytes.fromhex(key.read_text().strip()) if key is not None else None
        public = load_public(pubkey) if pubkey is not None else None
    except (OSError, ValueError) as exc:
        fail(f"gateway: cannot read the key: {exc}", 2)
        return
    report = verify_bundle(bundle, k0, public)
    if as_json:
        emit_json(dataclasses.asdict(report))
        sys.exit(report.status)
    if not report.ok:
        fail(report.summary(), report.status)
    click.echo(report.summary())


def _against(state: Path, collected_file: Path) -> Any:
    from gateway.audit.collected import against  # noqa: PLC0415

    return against(state / "audit", collected_file)


def _per_host(path: Path | None, host: str, suffix: str) -> Path | None:
    """A key for *host*: the file itself, or DIR/HOST.suffix."""
    if path is None or not path.is_dir():
        return path
    candidate = path / f"{host}{suffix}"
    return candidate if candidate.exists() else None


def _verify_collected(collected: Path, key: Path | None, pubkey: Path | None, as_json: bool = False) -> None:
    from gateway.audit.checkpoint import load_public  # noqa: PLC0415
    from gateway.audit.collected import hosts, verify_host  # noqa: PLC0415

    if not collected.is_dir():
        fail(f"gateway: {collected} is not a directory", 2)
    found = hosts(collected)
    if not found:
        fail(f"gateway: no host's audit.jsonl under {collected}", 1)
    failed = False
    for directory in found:
        host_key, host_pub = _per_host(key, directory.name, ".key"), _per_host(pubkey, directory.name, ".pub")
        k0 = bytes.fromhex(host_key.read_text().strip()) if host_key else None
        report = verify_host(directory, k0, load_public(host_pub) if host_pub else None)
        failed |= not report.intact or bool(report.gaps)
        if as_json:
            emit_json(dataclasses.asdict(report))
        else:
            click.echo(report.summary())
    if failed:
        fail("audit: the collected chains are not complete and intact (see above)", 1)


@audit.command()
@state_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per destination.")
def status(state: Path, as_json: bool) -> None:
    """What is not yet shipped to each syslog collector: the backlog and the age of its oldest record."""
    import json  # noqa: PLC0415

    from gateway.audit.ship import backlog, destinations  # noqa: PLC0415

    audit_dir = state / "audit"
    if not audit_dir.is_dir():
        fail(f"gateway: no audit log under {state}", 1)
    found = [backlog(audit_dir, d) for d in destinations(audit_dir)]
    if as_json:
        for item in found:
            click.echo(json.dumps(item.as_dict(), sort_keys=True))
        return
    if (audit_dir / "initial.key").exists():
        click.echo(
            "initial key still on this host: root here can recompute every MAC (gateway audit export-key)"
        )
    if not found:
        click.echo("no syslog destinations: nothing has been shipped from this state directory")
        return
    for item in found:
        age = "-" if item.oldest_unshipped_age is None else f"{item.oldest_unshipped_age:.1f}s"
        click.echo(
            f"{item.destination}: last shipped seq {item.last_shipped_seq}, backlog {item.backlog},"
            f" oldest unshipped {age}"
        )


@audit.command()
@state_option
@click.option("--principal", required=True, help="Whose grants.")
@click.option("--at", "at", help="A time (ISO, or 1d/2h ago); default: now.")
@click.option(
    "--collected", type=click.Path(path_type=Path), help="A collector's files: one answer per host."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per host.")
def grants(state: Path, principal: str, at: str | None, collected: Path | None, as_json: bool) -> None:
    """What PRINCIPAL was granted at a time, and since when, from the audit chain alone."""
    from gateway.audit.collected import hosts  # noqa: PLC0415
    from gateway.audit.grants import fold  # noqa: PLC0415
    from gateway.evidence import query  # noqa: PLC0415
    from gateway.evidence.fleet import host_records, local_records  # noqa: PLC0415

    try:
        moment = query.parse_time(at) if at else None
    except query.QueryError as exc:
        fail(f"gateway: {exc}", 2)
        return
    sources = (
        [(d.name, host_records(d)) for d in hosts(collected)] if collected else [("", local_records(state))]
    )
    for host, records in sources:
        found = fold(records, moment)
        rows = found.of(principal)
        if as_json:
            emit_json({"host": host or None, "principal": principal, "at": moment, "complete": found.complete,
                   "grants": [{"fact": f.as_list(), "since": t} for f, t in rows]})  # fmt: skip
            continue
        prefix = f"{host}: " if host else ""
        for fact, since in rows:
            click.echo(f"{prefix}{principal}: {fact.text()}  since {since}")
        if not rows:
            click.echo(f"{prefix}{principal}: nothing granted")
        if not found.complete:
            click.echo(f"{prefix}(incomplete: no start snapshot before then, or a reload too large to carry)")


@audit.command("export-key")
@state_option
@click.option(
    "--keep", is_flag=True, help="Leave K_0 on the host too (root there could then rewrite history)."
)
def export_key(state: Path, keep: bool) -> None:
    """Print K_0 for an off-host verifier and remove STATE/audit/initial.key (unless --keep)."""
    path = state / "audit" / "initial.key"
    click.echo(read_k0(state, None).hex())
    sys.stdout.flush()
    if keep:
        click.echo(f"gateway: K_0 stays in {path}: root on this host can recompute every MAC", err=True)
        return
    try:
        path.unlink()
    except OSError as exc:
        fail(f"gateway: printed K_0 but could not remove {path}: {exc.strerror}", 1)
    click.echo(f"gateway: K_0 removed from {path}; keep the printed key off this host", err=True)
