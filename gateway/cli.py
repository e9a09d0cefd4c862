"""The command line: the only place that prints or exits."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from gateway.errors import ConfigError, GatewayError, LoadError
from gateway.settings import Listen, Settings

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
    click.echo(message, err=True)
    sys.exit(status)


@click.group()
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
@_policies
@_keys
@_state
def serve(listen: str, policies: Path, keys: Path, state: Path) -> None:
    """Run the SSH gateway."""
    from gateway.server import serve as run  # noqa: PLC0415 - keep `policy check` start-up light

    def ready(host: str, port: int) -> None:
        click.echo(f"gateway: listening on {host}:{port}", nl=True)
        click.echo(f"gateway: connect with: ssh -p {port} -t ACTION@{host} TARGET")
        sys.stdout.flush()

    try:
        settings = Settings(listen=Listen.parse(listen), policies=policies, keys=keys, state=state)
        asyncio.run(run(settings, ready))
    except LoadError as exc:
        _fail(str(exc))
    except (ConfigError, GatewayError) as exc:
        _fail(f"gateway: {exc}")
    except OSError as exc:
        _fail(f"gateway: cannot listen on {listen}: {exc.strerror}")


@main.group()
def policy() -> None:
    """Validate and query the policy."""


@policy.command()
@_policies
@_keys
def check(policies: Path, keys: Path) -> None:
    """Validate policies and keys: exit 0, or one file:line:column line per problem."""
    from gateway.runtime import load_snapshot  # noqa: PLC0415

    try:
        _, loaded = load_snapshot(Settings(policies=policies, keys=keys))
    except LoadError as exc:
        _fail(str(exc), 1)
        return
    counts = f"{len(loaded.actions)} actions, {len(loaded.grants)} grants"
    click.echo(f"ok: {counts} (policy {loaded.digest[:12]})")


@policy.command()
@click.argument("principal")
@click.argument("action")
@click.argument("target", required=False)
@_policies
@_keys
def explain(principal: str, action: str, target: str | None, policies: Path, keys: Path) -> None:
    """Allow or deny PRINCIPAL doing ACTION [to TARGET], and the grant that decided."""
    from gateway.policy import Allow, Request, Target, decide  # noqa: PLC0415
    from gateway.runtime import load_snapshot  # noqa: PLC0415

    try:
        _, loaded = load_snapshot(Settings(policies=policies, keys=keys))
    except LoadError as exc:
        _fail(str(exc), 2)
        return
    decision = decide(loaded, Request(principal, action, Target(target) if target else None))
    if isinstance(decision, Allow):
        click.echo(f"allow: granted by {decision.grant}")
        return
    _fail(f"deny: {decision.reason}", 1)
