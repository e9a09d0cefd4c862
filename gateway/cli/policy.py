"""`gateway policy ...`: validate, explain, test, diff, show the policy."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway.cli.common import (
    emit_json,
    fail,
    keys_option,
    load_policy,
    main,
    policies_option,
    problem_json,
    settings_of,
)
from gateway.errors import LoadError, Problem


@main.group()
def policy() -> None:
    """Validate and query the policy."""


@policy.command()
@policies_option
@keys_option
@click.option("--json", "as_json", is_flag=True, help="The verdict, problems and warnings as JSON.")
def check(policies: Path, keys: Path, as_json: bool) -> None:
    """Validate policies and keys (and fleet.yaml, when there is one): exit 0, or one file:line:column
    line per problem (exit 1)."""
    from gateway.policy_files import FLEET_FILE  # noqa: PLC0415
    from gateway.runtime import load_snapshot  # noqa: PLC0415

    try:
        loaded = load_snapshot(settings_of(policies=policies, keys=keys))[1]
        if (policies / FLEET_FILE).exists():
            from gateway.fleet.config import load as load_fleet  # noqa: PLC0415

            load_fleet(policies / FLEET_FILE)
    except LoadError as exc:
        if as_json:
            emit_json({"ok": False, "problems": [problem_json(p) for p in exc.problems]})
            sys.exit(1)
        fail(str(exc), 1)
        return
    if as_json:
        emit_json(
            {
                "ok": True, "actions": len(loaded.actions), "grants": len(loaded.grants),
                "policy": loaded.digest, "warnings": [problem_json(w) for w in loaded.warnings],
            }
        )  # fmt: skip
        return
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    counts = f"{len(loaded.actions)} actions, {len(loaded.grants)} grants"
    click.echo(f"ok: {counts} (policy {loaded.digest[:12]})")


@policy.command("diff")
@keys_option
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
        fail(str(exc), 2)
        return
    found = diff(old_policy, new_policy, old_keys.by_fingerprint, new_keys.by_fingerprint)
    if as_json:
        emit_json(found.as_json())
    else:
        for line in found.lines() or ["no change: both grant the same"]:
            click.echo(line)
    sys.exit(0 if found.same else 1)


@policy.command("test")
@policies_option
@keys_option
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
        fail(str(exc), 2)
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
@policies_option
@keys_option
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

    loaded = load_policy(policies, keys)
    pairs = dict(label.partition("=")[::2] for label in labels)
    request = Request(principal, action, Target(target, pairs) if target else None, source=source)
    decision = decide(loaded, request)
    if isinstance(decision, Allow):
        spec = loaded.actions[action]
        if as_json:
            emit_json(
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
        emit_json({"decision": "deny", "code": decision.code.name.lower(), "reason": decision.reason})
    else:
        click.echo(f"deny: {decision.reason}{hint}")
    sys.exit(1)


@policy.command("show")
@click.option("--principal", help="Only this principal.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per (principal, action, grant).")
@policies_option
@keys_option
def show_policy(principal: str | None, as_json: bool, policies: Path, keys: Path) -> None:
    """What each principal may do, as a table."""
    from gateway.policy.report import grants_rows, grants_table  # noqa: PLC0415

    loaded = load_policy(policies, keys)
    if as_json:
        for row in grants_rows(loaded, principal):
            emit_json(row)
        return
    click.echo(grants_table(loaded, principal), nl=False)


@policy.command()
def schema() -> None:
    """A JSON Schema of a policy file, for editors (yaml-language-server)."""
    import json  # noqa: PLC0415

    from gateway.policy.schema import policy_schema  # noqa: PLC0415

    click.echo(json.dumps(policy_schema(), indent=2, sort_keys=True))
