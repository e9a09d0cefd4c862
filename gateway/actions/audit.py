"""``type: audit``: Charlotte's read-only queries, run inside the gateway.

The command words are parsed strictly; the only reachable things are::

    sessions list [--since T] [--until T] [--principal P] [--action A] [--target T] [--json]
    sessions show ID
    sessions export ID...        (a tar.gz on stdout)
    sessions watch ID            (a live session's output, read-only)
    verify                       (the audit chain, with STATE/audit/initial.key)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

from gateway.actions.base import ActionContext, Exit, runs
from gateway.actions.channel import send, until_hangup
from gateway.actions.moderate import follow_output, moderate
from gateway.audit.checkpoint import load_public
from gateway.audit.verify import K0_ON_HOST_WEAKENS, Report, verify
from gateway.errors import Refusal
from gateway.events import RefusalKind
from gateway.evidence import query, waiting
from gateway.evidence.export import announcer, export
from gateway.evidence.grammar import VERBS, filters
from gateway.evidence.grep import Match, compile_pattern
from gateway.evidence.html import chain_verdict, render
from gateway.evidence.index import Index
from gateway.evidence.replay import recording_path, show_text
from gateway.evidence.search import grep_rows
from gateway.fleet.down import FleetDown
from gateway.policy.models import AuditAction
from gateway.tasks import Tasks

WATCH_POLL = 0.2
USAGE = "usage: sessions list|show ID|export [--html] ID...|grep PATTERN|watch ID, or verify"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise Refusal(
            f"gateway: audit: {message} ({USAGE})", reason=f"bad query: {message}", kind=RefusalKind.COMMAND
        )


def _parser() -> argparse.ArgumentParser:
    root = _Parser(prog="audit", add_help=False, exit_on_error=False)
    top = root.add_subparsers(dest="group", required=True, parser_class=_Parser)
    top.add_parser("verify", add_help=False)
    sessions = top.add_parser("sessions", add_help=False).add_subparsers(
        dest="verb", required=True, parser_class=_Parser
    )
    for verb, options in VERBS.items():  # the one query grammar, as on the host's command line
        parser = sessions.add_parser(verb, add_help=False)
        if verb == "grep":
            parser.add_argument("pattern")
        for option in options:
            parser.add_argument(option.flag, action="store_true" if option.is_flag else "store")
    for verb in ("show", "watch"):
        sessions.add_parser(verb, add_help=False).add_argument("id")
    exporting = sessions.add_parser("export", add_help=False)
    exporting.add_argument("--html", action="store_true")
    exporting.add_argument("ids", nargs="+")
    return root


def parse(words: tuple[str, ...]) -> argparse.Namespace:
    """Parse the query strictly; raise Refusal for anything else."""
    try:
        return _parser().parse_args(list(words))
    except argparse.ArgumentError as exc:
        raise Refusal(
            f"gateway: audit: {exc.message} ({USAGE})",
            reason=f"bad query: {exc.message}",
            kind=RefusalKind.COMMAND,
        ) from None


@runs(AuditAction, validate=parse)
async def run_audit(ctx: ActionContext) -> Exit:
    """Answer one query."""
    args = parse(ctx.args)
    if args.group == "verify":
        return await _verify(ctx)
    if args.verb == "list" and args.host and ctx.fleet is None:
        raise Refusal("gateway: audit: --host lists a fleet's sessions: this gateway is not in a fleet",
                      reason="--host without a fleet", kind=RefusalKind.COMMAND)  # fmt: skip
    if ctx.fleet is not None and args.verb in ("list", "show"):
        answer = await _fleet_answer(ctx, args)
        if answer is not None:
            await send(ctx, answer)
            return Exit(0)
    index = Index(ctx.state)
    try:
        index.catch_up()
        if args.verb == "watch":
            moderated = ctx.moderation.find(args.id) if ctx.moderation is not None else None
            if moderated is not None and moderated.eligible(ctx.principal):
                return await moderate(ctx, ctx.moderation, moderated)  # type: ignore[arg-type]
            return await _watch(ctx, index, args.id)
        if args.verb == "grep":
            return await _grep(ctx, index, args)
        body = _answer(index, ctx, args)
    except query.QueryError as exc:
        raise Refusal(f"gateway: audit: {exc}", reason=str(exc), kind=RefusalKind.COMMAND) from None
    finally:
        index.close()
    await send(ctx, body)
    return Exit(0)


async def _fleet_answer(ctx: ActionContext, args: argparse.Namespace) -> bytes | None:
    """``sessions list`` over the fleet's index, and ``sessions show`` of a session another host ran;
    None: this host answers (its own session, or the fleet database does not answer)."""
    assert ctx.fleet is not None
    try:
        if args.verb == "show":
            return await ctx.fleet.show_elsewhere(args.id)
        return await ctx.fleet.list_sessions(_filters(args), as_json=args.json)
    except FleetDown:
        await send(
            ctx, b"gateway: the fleet database does not answer: this host's sessions only\n", stderr=True
        )
        return None
    except query.QueryError as exc:
        raise Refusal(f"gateway: audit: {exc}", reason=str(exc), kind=RefusalKind.COMMAND) from None


def _filters(args: argparse.Namespace) -> query.Filters:
    return filters(vars(args))


GREP_BATCH = 200


def _take(matches: Iterator[Match], count: int) -> list[Match]:
    return list(itertools.islice(matches, count))


async def _grep(ctx: ActionContext, index: Index, args: argparse.Namespace) -> Exit:
    """Stream the matches; the recordings are read on a worker thread, a batch at a time."""
    pattern = compile_pattern(args.pattern)
    rows = query.list_sessions(index, _filters(args))
    stop = threading.Event()  # the client left, or the session is cancelled: the search ends
    matches = grep_rows(rows, ctx.state, pattern, input_only=args.input_only, stop=stop)
    found = 0
    watcher = asyncio.get_running_loop().create_task(_stop_on_close(ctx, stop))
    try:
        while batch := await asyncio.to_thread(_take, matches, GREP_BATCH):
            found += len(batch)
            text = "".join((m.json() if args.json else m.text()) + "\n" for m in batch)
            if not await send(ctx, text.encode()):
                break
    finally:
        stop.set()
        watcher.cancel()
    return Exit(0 if found else 1)


async def _stop_on_close(ctx: ActionContext, stop: threading.Event) -> None:
    await ctx.process.wait_closed()
    stop.set()


def _answer(index: Index, ctx: ActionContext, args: argparse.Namespace) -> bytes:
    state = ctx.state
    if args.verb == "list":
        filters = _filters(args)
        pending = waiting.waiting(ctx.moderation, filters)
        if args.json:
            return query.json_lines([*query.list_sessions(index, filters), *waiting.rows(pending)]).encode()
        return query.list_table(index, filters, waiting.cells(pending)).encode()
    if args.verb == "show":
        return show_text(state, query.show(index, args.id)).encode()
    if ctx.audit is None:
        raise query.QueryError("exports are recorded in the audit chain, and this session cannot write it")
    buffer = io.BytesIO()
    export(index, state, list(args.ids), buffer, announcer(ctx.audit, ctx.checkpoint))
    if args.html:
        return render(index, state, list(args.ids), chain_verdict(state), buffer.getvalue()).encode()
    return buffer.getvalue()


async def _verify(ctx: ActionContext) -> Exit:
    key_file = ctx.state / "audit" / "initial.key"
    if not key_file.is_file():
        raise Refusal(
            "gateway: audit: the initial key is not on this host",
            reason="no initial key",
            kind=RefusalKind.COMMAND,
        )
    report = await asyncio.to_thread(_run_verify, ctx.state, key_file, ctx.checkpoint_public)
    if report.intact:
        await send(ctx, f"ok: chain intact: {report.summary()}\nnote: {K0_ON_HOST_WEAKENS}\n".encode())
        return Exit(0)
    await send(ctx, f"checked: {report.summary()}\n".encode())
    await send(ctx, f"audit: {report.where}: {report.kind}: {report.detail}\n".encode())
    return Exit(report.exit_status)


def _run_verify(state: Path, key_file: Path, public: Path | None) -> Report:
    """Verify with K_0 and, when this gateway signs checkpoints, with their public key."""
    key = bytes.fromhex(key_file.read_text().strip())
    if public is None:
        return verify(state / "audit", key)
    try:
        loaded = load_public(public)
    except (OSError, ValueError):
        report = verify(state / "audit", key)
        report.kind, report.where = "missing-checkpoints", public.name
        report.detail = "the checkpoint public key is missing: the checkpoints cannot be checked"
        return report
    return verify(state / "audit", key, loaded)


async def _watch(ctx: ActionContext, index: Index, session: str) -> Exit:
    path = recording_path(index, ctx.state, session)
    async with Tasks(f"watch:{ctx.session_id}") as tasks:
        follow = tasks.spawn(_follow(ctx, index, session, path), "follow")
        await until_hangup(ctx, tasks, [follow])
    return Exit(0)


async def _follow(ctx: ActionContext, index: Index, session: str, path: Path) -> None:
    def ended() -> bool:
        index.catch_up()
        row = index.db.execute("SELECT state FROM sessions WHERE id = ?", (session,)).fetchone()
        return row is None or row[0] != "open"

    await follow_output(ctx, path, ended, WATCH_POLL)
