"""`gateway sessions ...`: Charlotte's queries over the state directory."""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import fail, main, open_index, state_option
from gateway.errors import GatewayError


@main.group()
def sessions() -> None:
    """Compliance queries over the state directory."""


def _grammar(verb: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The verb's options from the one query grammar (``sessions.grammar``), as click options."""
    from gateway.evidence.grammar import VERBS  # noqa: PLC0415

    def apply(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(VERBS[verb]):
            command = click.option(option.flag, is_flag=option.is_flag, help=option.help)(command)
        return command

    return apply


@sessions.command("list")
@state_option
@_grammar("list")
@click.option(
    "--collected",
    type=click.Path(path_type=Path),
    help="The sessions of every host a syslog collector holds.",
)
def list_(state: Path, collected: Path | None, json: bool, **values: str | None) -> None:
    """Sessions: id, start, duration, principal, action, target, container, exit, bytes."""
    from gateway.evidence import query  # noqa: PLC0415
    from gateway.evidence.grammar import filters as parse  # noqa: PLC0415

    as_json = json
    try:
        filters = parse(values)
    except query.QueryError as exc:
        fail(f"gateway: {exc}")
        return
    if filters.host is not None and collected is None:
        fail(
            "gateway: --host lists one host of several: use it with --collected DIR (or over SSH in a fleet)"
        )
    if collected is not None:
        from gateway.evidence.fleet import fleet_table, list_fleet  # noqa: PLC0415

        if not collected.is_dir():
            fail(f"gateway: {collected} is not a directory", 2)
        hosts = list_fleet(collected, filters)
        click.echo(query.json_lines(hosts) if as_json else fleet_table(hosts), nl=False)
        return
    cells: list[tuple[str, ...]] = []
    rows: list[dict[str, Any]] = []
    if any((state / "moderation").glob("R-*")):  # sessions waiting for moderators (asyncio: only then)
        from gateway.evidence import waiting  # noqa: PLC0415
        from gateway.moderation import ModerationBoard  # noqa: PLC0415

        pending = waiting.waiting(ModerationBoard(state / "moderation"), filters)
        cells, rows = waiting.cells(pending), waiting.rows(pending)
    with open_index(state) as index:
        text = (
            query.json_lines([*query.list_sessions(index, filters), *rows])
            if as_json
            else query.list_table(index, filters, cells)
        )
    click.echo(text, nl=False)


@sessions.command()
@state_option
@click.argument("session")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
def show(state: Path, session: str, as_json: bool) -> None:
    """A session's records in time order, then its typed input (keys named: ^C, ESC, ^M)."""
    from gateway.evidence import query  # noqa: PLC0415
    from gateway.evidence.replay import show_text  # noqa: PLC0415

    with open_index(state) as index:
        try:
            events = query.show(index, session)
        except query.QueryError as exc:
            fail(f"gateway: {exc}", 1)
            return
    click.echo(query.json_lines(events) if as_json else show_text(state, events), nl=False)


@sessions.command()
@state_option
@click.argument("session")
@click.option("--speed", type=float, default=1.0, show_default=True)
def replay(state: Path, session: str, speed: float) -> None:
    """Play a session's recording in this terminal, in constant memory."""
    from gateway.evidence.query import QueryError  # noqa: PLC0415
    from gateway.evidence.replay import quiet_terminal, recording_path  # noqa: PLC0415
    from gateway.evidence.replay import replay as play  # noqa: PLC0415

    with open_index(state) as index:
        try:
            path = recording_path(index, state, session)
        except QueryError as exc:
            fail(f"gateway: {exc}", 1)
            return
    with quiet_terminal(sys.stdin.fileno()):
        play(path, sys.stdout.buffer, speed=max(speed, 0.01))


@sessions.command("grep")
@state_option
@click.argument("pattern")
@_grammar("grep")
def grep_(state: Path, pattern: str, input_only: bool, json: bool, **values: str | None) -> None:
    """Search typed input and output across recordings (a regular expression); exit 1 if nothing matched."""
    from gateway.evidence import query  # noqa: PLC0415
    from gateway.evidence.grammar import filters as parse  # noqa: PLC0415
    from gateway.evidence.grep import compile_pattern  # noqa: PLC0415
    from gateway.evidence.search import grep  # noqa: PLC0415

    as_json = json
    try:
        regex = compile_pattern(pattern)
        filters = parse(values)
    except query.QueryError as exc:
        fail(f"gateway: {exc}", 2)
        return
    found = 0
    with open_index(state) as index:
        try:
            for match in grep(index, state, regex, filters, input_only=input_only):
                click.echo(match.json() if as_json else match.text())
                found += 1
        except query.QueryError as exc:  # a search helper failed: the matches so far, then one line
            fail(f"gateway: {exc}", 2)
    if not found:
        sys.exit(1)


@sessions.command()
@state_option
@click.argument("session", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path), help="FILE.tar.gz: records, recordings, the chain.")
@click.option(
    "--html", "html_file", type=click.Path(path_type=Path), help="One self-contained HTML evidence file."
)
@click.option(
    "--checkpoint-key",
    type=click.Path(path_type=Path),
    help="The checkpoint signing key, if not STATE/audit/checkpoint.key (signs the export's record).",
)
def export(
    state: Path,
    session: tuple[str, ...],
    out: Path | None,
    html_file: Path | None,
    checkpoint_key: Path | None,
) -> None:
    """Sessions' records, recordings and the audit chain: a tar bundle (--out) or an HTML file (--html)."""
    from gateway.evidence.export import export as run  # noqa: PLC0415
    from gateway.evidence.html import chain_verdict, render  # noqa: PLC0415
    from gateway.evidence.query import QueryError  # noqa: PLC0415

    if (out is None) == (html_file is None):
        fail("gateway: sessions export needs exactly one of --out FILE.tar.gz or --html FILE", 2)
    target = out if out is not None else html_file
    assert target is not None
    with open_index(state) as index:
        try:
            announce, log = _export_announcer(state, checkpoint_key)
            try:
                if html_file is None:
                    with target.open("wb") as f:  # streamed: a day's chain and recordings can be large
                        run(index, state, list(session), f, announce)
                else:
                    buffer = io.BytesIO()
                    run(index, state, list(session), buffer, announce)
                    page = render(index, state, list(session), chain_verdict(state), buffer.getvalue())
                    html_file.write_text(page, encoding="utf-8")
            finally:
                log.close()
            click.echo(f"wrote {target}")
        except (QueryError, GatewayError) as exc:
            target.unlink(missing_ok=True)
            fail(f"gateway: {exc}; nothing was exported", 1)


def _export_announcer(state: Path, key: Path | None) -> tuple[Any, Any]:
    """The host's own export record (``by: host``), and a checkpoint after it when the signing key is here."""
    from gateway.audit import AuditLog, checkpoint  # noqa: PLC0415
    from gateway.evidence.export import announcer  # noqa: PLC0415

    directory = state / "audit"
    log = AuditLog(directory)
    signing = key or directory / checkpoint.PRIVATE

    def sign() -> None:
        if signing.is_file():
            checkpoint.write_checkpoint(directory, checkpoint.signing_key(directory, signing))

    return announcer(functools.partial(log.emit, by="host"), sign), log
