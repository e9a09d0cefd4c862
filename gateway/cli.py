"""The command line: the only place that prints or exits."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.errors import ConfigError, GatewayError, LoadError, Problem
from gateway.events import Event

if TYPE_CHECKING:
    from gateway.policy import Policy
    from gateway.sessions.index import Index
    from gateway.settings import Settings

_policies = click.option(
    "--policies",
    type=click.Path(path_type=Path),
    default=Path("policies"),
    show_default=True,
    help="Policy directory.",
)
_keys = click.option(
    "--keys",
    type=click.Path(path_type=Path),
    default=Path("keys"),
    show_default=True,
    help="Key directory (NAME.pub).",
)
_state = click.option(
    "--state",
    type=click.Path(path_type=Path),
    default=Path("state"),
    show_default=True,
    help="State directory.",
)


def _fail(message: str, status: int = 2) -> None:
    """Exit statuses everywhere: 0 success or allow, 1 deny or a failed check, 2 usage errors."""
    click.echo(message, err=True)
    sys.exit(status)


def _emit(value: Any) -> None:
    """One JSON document on stdout (every query's --json)."""
    import json  # noqa: PLC0415

    click.echo(json.dumps(value, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gateway")
def main() -> None:
    """A restricted SSH gateway for Docker hosts."""


@main.command()
@click.option(
    "--listen",
    default="127.0.0.1:2222",
    show_default=True,
    help="HOST:PORT to listen on (port 0: any free port).",
)
@click.option(
    "--checkpoint-interval",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds between signed checkpoints (0: off).",
)
@click.option(
    "--audit-syslog",
    multiple=True,
    help="Ship every audit record to a syslog collector: tcp://HOST:PORT or tls://HOST:PORT (repeatable).",
)
@click.option(
    "--audit-syslog-ca", type=click.Path(path_type=Path), help="CA certificates for tls:// collectors."
)
@click.option(
    "--audit-syslog-cert", type=click.Path(path_type=Path), help="A client certificate, if asked for."
)
@click.option("--audit-syslog-key", type=click.Path(path_type=Path), help="The client certificate's key.")
@click.option("--host-name", help="This host's name in shipped records (default: the machine's).")
@click.option("--ciphers", help="Ciphers as sshd's Ciphers: LIST, +LIST, -LIST or ^LIST.")
@click.option("--macs", help="MACs as sshd's MACs: LIST, +LIST, -LIST or ^LIST.")
@click.option("--kex-algs", help="Key exchange as sshd's KexAlgorithms: LIST, +LIST, -LIST or ^LIST.")
@click.option(
    "--door-socket",
    type=click.Path(path_type=Path),
    help="The local socket `gateway dispatch` hands sessions to (default STATE/door.sock).",
)
@click.option("--door-user", help="A user (name or uid) besides root that may use the door socket.")
@click.option(
    "--keys-socket",
    type=click.Path(path_type=Path),
    help="Where sshd's AuthorizedKeysCommand asks for key lines (default: keys.sock beside the door socket).",
)
@click.option(
    "--keys-user",
    help="sshd's AuthorizedKeysCommandUser (name or uid), besides root; never the door user.",
)
@click.option(
    "--door-program",
    help="How sshd runs the gateway, in the lines served to AuthorizedKeysCommand"
    " (default: this Python -S gateway/door.py).",
)
@click.option(
    "--checkpoint-key",
    type=click.Path(path_type=Path),
    help="The Ed25519 checkpoint signing key (default STATE/audit/checkpoint.key; created if missing).",
)
@click.option(
    "--no-strict-modes", is_flag=True, help="Serve even if policy, key or state files are writable by others."
)
@click.option(
    "--trusted-user-ca-keys",
    type=click.Path(path_type=Path),
    help="OpenSSH CA public keys for user certificates.",
)
@click.option(
    "--max-sessions", type=int, default=2000, show_default=True, help="Concurrent sessions in total."
)
@click.option("--max-sessions-per-principal", type=int, default=200, show_default=True)
@click.option(
    "--approval-wait",
    callback=lambda _ctx, _param, value: _duration(value),
    default="10m",
    show_default=True,
    help="How long a request waits for approval in its connection (30m, 1h, or seconds).",
)
@click.option(
    "--recordings-min-free",
    callback=lambda _ctx, _param, value: _size(value),
    help="Refuse recorded sessions below this much free space, e.g. 2G (default: 1G or 5%, the larger).",
)
@click.option(
    "--max-unauthenticated",
    type=int,
    default=200,
    show_default=True,
    help="Connections still authenticating.",
)
@click.option(
    "--max-unauthenticated-per-source",
    type=int,
    default=50,
    show_default=True,
    help="Connections still authenticating from one address (its share of the above).",
)
@click.option(
    "--auth-failure-limit",
    type=int,
    default=20,
    show_default=True,
    help="Failures per source per minute before it is throttled.",
)
@click.option("--login-timeout", type=float, default=20.0, show_default=True, help="Seconds to authenticate.")
@click.option(
    "--drain-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="On SIGTERM, how long open sessions may finish.",
)
@click.option(
    "--metrics", "metrics", default=None, help="HOST:PORT for /metrics and /healthz (off unless given)."
)
@click.option("--log-format", type=click.Choice(["json", "console"]), default="json", show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes sharing the port (SO_REUSEPORT).",
)
@_policies
@_keys
@_state
def serve(listen: str, metrics: str | None, no_strict_modes: bool, **options: Any) -> None:
    """Run the SSH gateway."""
    from gateway.settings import Listen, Settings  # noqa: PLC0415 - pydantic: only where needed
    from gateway.workers import run  # noqa: PLC0415 - keep `policy check` start-up light

    def ready(host: str, port: int) -> None:
        click.echo(f"gateway: listening on {host}:{port}", nl=True)
        click.echo(f"gateway: connect with: ssh -p {port} -t ACTION@{host} TARGET")
        sys.stdout.flush()

    try:
        settings = Settings(
            listen=Listen.parse(listen),
            metrics=Listen.parse(metrics) if metrics else None,
            strict_modes=not no_strict_modes,
            **options,
        )
        run(settings, ready)
    except LoadError as exc:
        _fail(str(exc), 1)
    except ConfigError as exc:
        _fail(f"gateway: {exc}", 2)
    except GatewayError as exc:
        _fail(f"gateway: {exc}", 1)
    except OSError as exc:
        _fail(f"gateway: cannot listen on {listen}: {exc.strerror}", 1)


@main.group()
def policy() -> None:
    """Validate and query the policy."""


def _duration(value: str) -> int:
    from gateway.sizes import parse_duration  # noqa: PLC0415

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _size(value: str | None) -> int | None:
    from gateway.sizes import parse_size  # noqa: PLC0415

    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _settings(**values: Any) -> Settings:
    from gateway.settings import Settings  # noqa: PLC0415 - pydantic: only where needed

    return Settings(**values)


def _load(policies: Path, keys: Path) -> Policy:
    from gateway.runtime import load_snapshot  # noqa: PLC0415

    try:
        return load_snapshot(_settings(policies=policies, keys=keys))[1]
    except LoadError as exc:
        _fail(str(exc), 1)
        raise


def _problem_json(problem: Any) -> dict[str, Any]:
    return {"file": problem.file, "line": problem.line, "column": problem.column, "message": problem.message}


@policy.command()
@_policies
@_keys
@click.option("--json", "as_json", is_flag=True, help="The verdict, problems and warnings as JSON.")
def check(policies: Path, keys: Path, as_json: bool) -> None:
    """Validate policies and keys: exit 0, or one file:line:column line per problem (exit 1)."""
    from gateway.runtime import load_snapshot  # noqa: PLC0415

    try:
        loaded = load_snapshot(_settings(policies=policies, keys=keys))[1]
    except LoadError as exc:
        if as_json:
            _emit({"ok": False, "problems": [_problem_json(p) for p in exc.problems]})
            sys.exit(1)
        _fail(str(exc), 1)
        return
    if as_json:
        _emit(
            {
                "ok": True, "actions": len(loaded.actions), "grants": len(loaded.grants),
                "policy": loaded.digest, "warnings": [_problem_json(w) for w in loaded.warnings],
            }
        )  # fmt: skip
        return
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    counts = f"{len(loaded.actions)} actions, {len(loaded.grants)} grants"
    click.echo(f"ok: {counts} (policy {loaded.digest[:12]})")


@policy.command("diff")
@_keys
@click.option("--json", "as_json", is_flag=True, help="The diff as one JSON object.")
@click.argument("old")
@click.argument("new")
def diff_(keys: Path, as_json: bool, old: str, new: str) -> None:
    """Who gains and loses what from OLD to NEW (directories or git:REV[:PATH]); exit 0 same, 1 differ."""
    from gateway.policy.diff import diff  # noqa: PLC0415
    from gateway.policy_source import load_side  # noqa: PLC0415

    try:
        old_keys, old_policy = load_side(old, keys)
        new_keys, new_policy = load_side(new, keys)
    except LoadError as exc:
        _fail(str(exc), 2)
        return
    found = diff(old_policy, new_policy, old_keys.by_fingerprint, new_keys.by_fingerprint)
    if as_json:
        _emit(found.as_json())
    else:
        for line in found.lines() or ["no change: both grant the same"]:
            click.echo(line)
    sys.exit(0 if found.same else 1)


@policy.command("test")
@_policies
@_keys
@click.option("--junit", "junit_file", type=click.Path(path_type=Path), help="Also write JUnit XML here.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def test_(policies: Path, keys: Path, junit_file: Path | None, paths: tuple[Path, ...]) -> None:
    """Run YAML policy test cases (files, or directories of *.yaml): exit 0 all pass, 1 some fail, 2 error."""
    from gateway.keys import KeyRing  # noqa: PLC0415
    from gateway.policy.cases import junit, load_cases, run  # noqa: PLC0415
    from gateway.policy_files import load_policy  # noqa: PLC0415
    from gateway.safefile import NotRegular, read_regular  # noqa: PLC0415

    try:  # the principals are the key files' names: `policy check` checks the keys themselves
        ring = KeyRing({}, frozenset(p.name.removesuffix(".pub") for p in keys.glob("*.pub")), {})
        loaded = load_policy(policies, ring)
        files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
        cases = []
        for path in files:
            try:
                text = read_regular(path, 1 << 24).decode("utf-8")
            except (NotRegular, OSError, UnicodeDecodeError) as exc:
                raise LoadError([Problem(str(path), 0, 0, f"cannot read: {exc}")]) from None
            cases += load_cases(str(path), text, loaded, ring.principals)
    except LoadError as exc:
        _fail(str(exc), 2)
        return
    outcomes = run(loaded, cases)
    failed = [o for o in outcomes if not o.passed]
    for outcome in failed:
        click.echo(outcome.line())
    click.echo(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    if junit_file is not None:
        junit_file.write_bytes(junit(outcomes))
    sys.exit(1 if failed else 0)


@policy.command()
@click.argument("principal")
@click.argument("action")
@click.argument("target", required=False)
@click.option("--from", "source", help="The client address, for grants with `from`.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE labels of the target, for label grants.")
@click.option("--json", "as_json", is_flag=True, help="The decision as JSON.")
@_policies
@_keys
def explain(
    principal: str,
    action: str,
    target: str | None,
    source: str | None,
    labels: tuple[str, ...],
    as_json: bool,
    policies: Path,
    keys: Path,
) -> None:
    """Allow (exit 0) or deny (exit 1) PRINCIPAL doing ACTION [to TARGET], and what decided, on stdout."""
    from gateway.policy import Allow, DenyCode, Request, Target, decide  # noqa: PLC0415

    loaded = _load(policies, keys)
    pairs = dict(label.partition("=")[::2] for label in labels)
    request = Request(principal, action, Target(target, pairs) if target else None, source=source)
    decision = decide(loaded, request)
    if isinstance(decision, Allow):
        spec = loaded.actions[action]
        if as_json:
            _emit(
                {
                    "decision": "allow",
                    "grant": decision.grant,
                    "mode": spec.kind,
                    "consequence": spec.consequence,
                    "conditions": decision.conditions.describe() if decision.conditions else None,
                }
            )
            return
        click.echo(f"allow: granted by {decision.grant}")
        if spec.consequence:
            click.echo(f"mode: {spec.kind}: {spec.consequence}")
        if decision.conditions is not None:
            click.echo(f"conditions: {decision.conditions.describe()}")
        return
    hint = " (pass --from ADDR)" if decision.code is DenyCode.SOURCE and source is None else ""
    if as_json:
        _emit({"decision": "deny", "code": decision.code.name.lower(), "reason": decision.reason})
    else:
        click.echo(f"deny: {decision.reason}{hint}")
    sys.exit(1)


@policy.command("show")
@click.option("--principal", help="Only this principal.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per (principal, action, grant).")
@_policies
@_keys
def show_policy(principal: str | None, as_json: bool, policies: Path, keys: Path) -> None:
    """What each principal may do, as a table."""
    from gateway.policy.report import grants_rows, grants_table  # noqa: PLC0415

    loaded = _load(policies, keys)
    if as_json:
        for row in grants_rows(loaded, principal):
            _emit(row)
        return
    click.echo(grants_table(loaded, principal), nl=False)


@policy.command()
def schema() -> None:
    """A JSON Schema of a policy file, for editors (yaml-language-server)."""
    import json  # noqa: PLC0415

    from gateway.policy.schema import policy_schema  # noqa: PLC0415

    click.echo(json.dumps(policy_schema(), indent=2, sort_keys=True))


# ---------------------------------------------------------------- the OpenSSH door


@main.command("authorized-keys")
@_policies
@_keys
@_state
@click.option(
    "--program", default=None, help="How sshd runs the gateway (default: this Python -S gateway/door.py)."
)
@click.option("--fingerprint", help="Only the line for this key (sshd's AuthorizedKeysCommand ... %f).")
@click.option(
    "--user",
    "login",
    help="The account sshd authenticates (%u): an action's own account names the action (the daemon's).",
)
@click.option(
    "--door-socket", type=click.Path(path_type=Path), help="The daemon's door socket, if not STATE/door.sock."
)
@click.option(
    "--keys-socket",
    type=click.Path(path_type=Path),
    help="The daemon's keys socket, if not beside the door's.",
)
def authorized_keys(
    policies: Path,
    keys: Path,
    state: Path,
    program: str | None,
    fingerprint: str | None,
    login: str | None,
    door_socket: Path | None,
    keys_socket: Path | None,
) -> None:
    """Print authorized_keys lines that force `gateway dispatch`: every key, or one (--fingerprint)."""
    del login  # only the daemon binds a login to a ticket; a line printed here has no ticket
    from gateway.authorized_keys import Door, key_line, render  # noqa: PLC0415
    from gateway.dispatch.door_server import default_program  # noqa: PLC0415
    from gateway.runtime import load_snapshot  # noqa: PLC0415

    try:
        ring, loaded = load_snapshot(_settings(policies=policies, keys=keys))
        door = Door(program or default_program(), policies, keys, state, door_socket)
        if fingerprint is None:
            click.echo(render(loaded, ring, door), nl=False)
            return
        line = key_line(loaded, ring, fingerprint, door)
    except LoadError as exc:
        _fail(str(exc), 1)
        return
    except ConfigError as exc:
        _fail(f"gateway: {exc}", 1)
        return
    if line is None:
        _audit_unknown_key(state, fingerprint)
        return
    click.echo(line)


@main.command("openssh-setup")
@_policies
@_keys
@click.option("--door-user", default="gw", show_default=True, help="The door account (sshd's login).")
@click.option("--keys-user", default="gwkeys", show_default=True, help="The account of sshd's key lookup.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
def openssh_setup(policies: Path, keys: Path, door_user: str, keys_user: str, dry_run: bool) -> None:
    """The accounts sshd needs: the door's, the key lookup's, and one per action (`ssh ACTION@HOST`)."""
    from gateway.openssh_setup import setup  # noqa: PLC0415

    loaded = _load(policies, keys)
    try:
        steps = setup(loaded.actions, door_user, keys_user, dry_run=dry_run)
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        _fail(f"gateway: openssh-setup: {str(detail).strip()}", 1)
        return
    for step in steps:
        click.echo(step.line())


def _audit_unknown_key(state: Path, fingerprint: str) -> None:
    """No daemon answered: record the unknown key in the chain ourselves, if we may write it."""
    from gateway.audit import AuditLog  # noqa: PLC0415

    with contextlib.suppress(GatewayError, OSError):
        log = AuditLog(state / "audit")
        log.emit(Event.AUTH_REJECT, fingerprint=fingerprint[:128], reason="unknown key", door="openssh")
        log.close()


@main.command()
@click.option("--principal", required=True, help="Whose key sshd accepted.")
@_policies
@_keys
@_state
@click.option(
    "--door-socket", type=click.Path(path_type=Path), help="The daemon's door socket, if not STATE/door.sock."
)
@click.option("--ticket", help="The daemon's single-use ticket from the key line (used only by the daemon).")
def dispatch(
    principal: str, policies: Path, keys: Path, state: Path, door_socket: Path | None, ticket: str | None
) -> None:
    """The command= entry point: hands SSH_ORIGINAL_COMMAND to `serve`, or runs it in-process."""
    from gateway import loop  # noqa: PLC0415
    from gateway.dispatch.main import dispatch as run  # noqa: PLC0415
    from gateway.entry import exit_with  # noqa: PLC0415

    try:
        status = loop.run(run(_settings(policies=policies, keys=keys, state=state), principal))
    except LoadError:
        _fail("gateway: the policy cannot be loaded; nothing was run", 1)
        return
    except GatewayError as exc:
        _fail(f"gateway: {exc}", 1)
        return
    exit_with(status)


# ---------------------------------------------------------------- audit


def _k0(state: Path, key: Path | None) -> bytes:
    path = key or state / "audit" / "initial.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        _fail(f"gateway: cannot read the initial key {path} (pass --key FILE)")
        raise


@main.group()
def audit() -> None:
    """Verify the audit chain; export its initial key."""


@audit.command()
@_state
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
    report = run(state / "audit", _k0(state, key), load_public(pubkey) if pubkey else None)
    if as_json:
        comparison = _against(state, against) if against is not None and report.intact else None
        _emit(
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
        _fail(f"audit: {report.where}: {report.kind}: {report.detail}", report.exit_status)
    click.echo(f"ok: chain intact: {report.summary()}")
    if key is None and (state / "audit" / "initial.key").exists():
        from gateway.audit.verify import K0_ON_HOST_WEAKENS  # noqa: PLC0415

        click.echo(f"note: {K0_ON_HOST_WEAKENS}")
    if against is not None:
        result = _against(state, against)
        if not result.ok:
            _fail(f"audit: {result.message}", 1)
        click.echo(f"ok: {result.message}")


def _verify_bundle(bundle: Path, key: Path | None, pubkey: Path | None, as_json: bool) -> None:
    import dataclasses  # noqa: PLC0415

    from gateway.audit.bundle import verify_bundle  # noqa: PLC0415
    from gateway.audit.checkpoint import load_public  # noqa: PLC0415

    try:
        k0 = bytes.fromhex(key.read_text().strip()) if key is not None else None
        public = load_public(pubkey) if pubkey is not None else None
    except (OSError, ValueError) as exc:
        _fail(f"gateway: cannot read the key: {exc}", 2)
        return
    report = verify_bundle(bundle, k0, public)
    if as_json:
        _emit(dataclasses.asdict(report))
        sys.exit(report.status)
    if not report.ok:
        _fail(report.summary(), report.status)
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
        _fail(f"gateway: {collected} is not a directory", 2)
    found = hosts(collected)
    if not found:
        _fail(f"gateway: no host's audit.jsonl under {collected}", 1)
    failed = False
    for directory in found:
        host_key, host_pub = _per_host(key, directory.name, ".key"), _per_host(pubkey, directory.name, ".pub")
        k0 = bytes.fromhex(host_key.read_text().strip()) if host_key else None
        report = verify_host(directory, k0, load_public(host_pub) if host_pub else None)
        failed |= not report.intact or bool(report.gaps)
        if as_json:
            _emit(dataclasses.asdict(report))
        else:
            click.echo(report.summary())
    if failed:
        _fail("audit: the collected chains are not complete and intact (see above)", 1)


@audit.command()
@_state
@click.option("--json", "as_json", is_flag=True, help="One JSON object per destination.")
def status(state: Path, as_json: bool) -> None:
    """What is not yet shipped to each syslog collector: the backlog and the age of its oldest record."""
    import json  # noqa: PLC0415

    from gateway.audit.ship import backlog, destinations  # noqa: PLC0415

    audit_dir = state / "audit"
    if not audit_dir.is_dir():
        _fail(f"gateway: no audit log under {state}", 1)
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
@_state
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
    from gateway.sessions import query  # noqa: PLC0415
    from gateway.sessions.fleet import host_records, local_records  # noqa: PLC0415

    try:
        moment = query.parse_time(at) if at else None
    except query.QueryError as exc:
        _fail(f"gateway: {exc}", 2)
        return
    sources = (
        [(d.name, host_records(d)) for d in hosts(collected)] if collected else [("", local_records(state))]
    )
    for host, records in sources:
        found = fold(records, moment)
        rows = found.of(principal)
        if as_json:
            _emit({"host": host or None, "principal": principal, "at": moment, "complete": found.complete,
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
@_state
@click.option(
    "--keep", is_flag=True, help="Leave K_0 on the host too (root there could then rewrite history)."
)
def export_key(state: Path, keep: bool) -> None:
    """Print K_0 for an off-host verifier and remove STATE/audit/initial.key (unless --keep)."""
    path = state / "audit" / "initial.key"
    click.echo(_k0(state, None).hex())
    sys.stdout.flush()
    if keep:
        click.echo(f"gateway: K_0 stays in {path}: root on this host can recompute every MAC", err=True)
        return
    try:
        path.unlink()
    except OSError as exc:
        _fail(f"gateway: printed K_0 but could not remove {path}: {exc.strerror}", 1)
    click.echo(f"gateway: K_0 removed from {path}; keep the printed key off this host", err=True)


# ---------------------------------------------------------------- sessions


@main.group()
def sessions() -> None:
    """Compliance queries over the state directory."""


@sessions.command("list")
@_state
@click.option("--since", help="1d, 2h, 30m, or an ISO time.")
@click.option("--until", help="1d, 2h, 30m, or an ISO time.")
@click.option("--principal")
@click.option("--action")
@click.option("--target")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per session.")
@click.option(
    "--collected",
    type=click.Path(path_type=Path),
    help="The sessions of every host a syslog collector holds.",
)
def list_(
    state: Path, since: str | None, until: str | None, principal: str | None, action: str | None,
    target: str | None, as_json: bool, collected: Path | None,
) -> None:  # fmt: skip
    """Sessions: id, start, duration, principal, action, target, container, exit, bytes."""
    from gateway.sessions import query  # noqa: PLC0415

    try:
        filters = query.Filters(
            since=query.parse_time(since) if since else None,
            until=query.parse_time(until) if until else None,
            principal=principal, action=action, target=target,
        )  # fmt: skip
    except query.QueryError as exc:
        _fail(f"gateway: {exc}")
        return
    if collected is not None:
        from gateway.sessions.fleet import fleet_table, list_fleet  # noqa: PLC0415

        if not collected.is_dir():
            _fail(f"gateway: {collected} is not a directory", 2)
        rows = list_fleet(collected, filters)
        click.echo(query.json_lines(rows) if as_json else fleet_table(rows), nl=False)
        return
    with _index(state) as index:
        text = (
            query.json_lines(query.list_sessions(index, filters))
            if as_json
            else query.list_table(index, filters)
        )
    click.echo(text, nl=False)


@sessions.command()
@_state
@click.argument("session")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
def show(state: Path, session: str, as_json: bool) -> None:
    """A session's records in time order, then its typed input (keys named: ^C, ESC, ^M)."""
    from gateway.sessions import query  # noqa: PLC0415
    from gateway.sessions.replay import show_text  # noqa: PLC0415

    with _index(state) as index:
        try:
            events = query.show(index, session)
        except query.QueryError as exc:
            _fail(f"gateway: {exc}", 1)
            return
    click.echo(query.json_lines(events) if as_json else show_text(state, events), nl=False)


@sessions.command()
@_state
@click.argument("session")
@click.option("--speed", type=float, default=1.0, show_default=True)
def replay(state: Path, session: str, speed: float) -> None:
    """Play a session's recording in this terminal, in constant memory."""
    from gateway.sessions.query import QueryError  # noqa: PLC0415
    from gateway.sessions.replay import quiet_terminal, recording_path  # noqa: PLC0415
    from gateway.sessions.replay import replay as play  # noqa: PLC0415

    with _index(state) as index:
        try:
            path = recording_path(index, state, session)
        except QueryError as exc:
            _fail(f"gateway: {exc}", 1)
            return
    with quiet_terminal(sys.stdin.fileno()):
        play(path, sys.stdout.buffer, speed=max(speed, 0.01))


@sessions.command("grep")
@_state
@click.argument("pattern")
@click.option("--since", help="1d, 2h, 30m, or an ISO time.")
@click.option("--until", help="1d, 2h, 30m, or an ISO time.")
@click.option("--principal")
@click.option("--action")
@click.option("--target")
@click.option("--input-only", is_flag=True, help="Only what was typed, not the output.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per match.")
def grep_(
    state: Path, pattern: str, since: str | None, until: str | None, principal: str | None,
    action: str | None, target: str | None, input_only: bool, as_json: bool,
) -> None:  # fmt: skip
    """Search typed input and output across recordings (a regular expression); exit 1 if nothing matched."""
    from gateway.sessions import query  # noqa: PLC0415
    from gateway.sessions.grep import compile_pattern, grep  # noqa: PLC0415

    try:
        regex = compile_pattern(pattern)
        filters = query.Filters(
            since=query.parse_time(since) if since else None,
            until=query.parse_time(until) if until else None,
            principal=principal, action=action, target=target,
        )  # fmt: skip
    except query.QueryError as exc:
        _fail(f"gateway: {exc}", 2)
        return
    found = 0
    with _index(state) as index:
        for match in grep(index, state, regex, filters, input_only=input_only):
            click.echo(match.json() if as_json else match.text())
            found += 1
    if not found:
        sys.exit(1)


@sessions.command()
@_state
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
    from gateway.sessions.export import export as run  # noqa: PLC0415
    from gateway.sessions.html import chain_verdict, render  # noqa: PLC0415
    from gateway.sessions.query import QueryError  # noqa: PLC0415

    if (out is None) == (html_file is None):
        _fail("gateway: sessions export needs exactly one of --out FILE.tar.gz or --html FILE", 2)
    target = out if out is not None else html_file
    assert target is not None
    with _index(state) as index:
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
            _fail(f"gateway: {exc}; nothing was exported", 1)


def _export_announcer(state: Path, key: Path | None) -> tuple[Any, Any]:
    """The host's own export record (``by: host``), and a checkpoint after it when the signing key is here."""
    from gateway.audit import AuditLog, checkpoint  # noqa: PLC0415
    from gateway.sessions.export import announcer  # noqa: PLC0415

    directory = state / "audit"
    log = AuditLog(directory)
    signing = key or directory / checkpoint.PRIVATE

    def sign() -> None:
        if signing.is_file():
            checkpoint.write_checkpoint(directory, checkpoint.signing_key(directory, signing))

    return announcer(functools.partial(log.emit, by="host"), sign), log


@contextlib.contextmanager
def _index(state: Path) -> Iterator[Index]:
    from gateway.sessions.index import Index  # noqa: PLC0415

    if not (state / "audit").is_dir():
        _fail(f"gateway: no audit log under {state}")
    index = Index(state)
    try:
        index.catch_up()
        yield index
    finally:
        index.close()
