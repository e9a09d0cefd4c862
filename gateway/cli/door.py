"""The OpenSSH door's commands: `authorized-keys`, `openssh-setup`, `dispatch`."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import click

from gateway.cli.common import (
    fail,
    keys_option,
    load_policy,
    main,
    policies_option,
    settings_of,
    state_option,
)
from gateway.errors import ConfigError, GatewayError, LoadError

door_socket_option = click.option(
    "--door-socket", type=click.Path(path_type=Path), help="The daemon's door socket, if not STATE/door.sock."
)


@main.command("authorized-keys")
@policies_option
@keys_option
@state_option
@click.option(
    "--program", default=None, help="How sshd runs the gateway (default: this Python -S gateway/door.py)."
)
@click.option("--fingerprint", help="Only the line for this key (sshd's AuthorizedKeysCommand ... %f).")
@click.option(
    "--user",
    "login",
    help="The account sshd authenticates (%u): an action's own account names the action (the daemon's).",
)
@door_socket_option
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
        ring, loaded = load_snapshot(settings_of(policies=policies, keys=keys))
        door = Door(program or default_program(), policies, keys, state, door_socket)
        if fingerprint is None:
            click.echo(render(loaded, ring, door), nl=False)
            return
        line = key_line(loaded, ring, fingerprint, door)
    except LoadError as exc:
        fail(str(exc), 1)
        return
    except ConfigError as exc:
        fail(f"gateway: {exc}", 1)
        return
    if line is None:
        _audit_unknown_key(state, fingerprint)
        return
    click.echo(line)


@main.command("openssh-setup")
@policies_option
@keys_option
@state_option
@click.option("--door-user", default="gw", show_default=True, help="The door account (sshd's login).")
@click.option("--keys-user", default="gwkeys", show_default=True, help="The account of sshd's key lookup.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
def openssh_setup(
    policies: Path, keys: Path, state: Path, door_user: str, keys_user: str, dry_run: bool
) -> None:
    """The accounts sshd needs: the door's, the key lookup's, and one per action (`ssh ACTION@HOST`).

    Accounts are marked with this instance's state directory (--state); only those are changed.
    """
    from gateway.openssh_setup import setup  # noqa: PLC0415

    loaded = load_policy(policies, keys)
    try:
        steps = setup(loaded.actions, door_user, keys_user, state, dry_run=dry_run)
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        fail(f"gateway: openssh-setup: {str(detail).strip()}", 1)
        return
    for step in steps:
        click.echo(step.line())


def _audit_unknown_key(state: Path, fingerprint: str) -> None:
    """No daemon answered: record the unknown key in the chain ourselves, if we may write it."""
    from gateway.audit import AuditLog  # noqa: PLC0415
    from gateway.session import door  # noqa: PLC0415

    with contextlib.suppress(GatewayError, OSError):
        log = AuditLog(state / "audit")
        door.unknown_key(log.emit, fingerprint, door="openssh")
        log.close()


@main.command()
@click.option("--principal", required=True, help="Whose key sshd accepted.")
@policies_option
@keys_option
@state_option
@door_socket_option
@click.option("--ticket", help="The daemon's single-use ticket from the key line (used only by the daemon).")
def dispatch(
    principal: str, policies: Path, keys: Path, state: Path, door_socket: Path | None, ticket: str | None
) -> None:
    """The command= entry point: hands SSH_ORIGINAL_COMMAND to `serve`, or runs it in-process."""
    from gateway import loop  # noqa: PLC0415
    from gateway.dispatch.main import dispatch as run  # noqa: PLC0415
    from gateway.exits import exit_with  # noqa: PLC0415

    try:
        status = loop.run(run(settings_of(policies=policies, keys=keys, state=state), principal))
    except LoadError:
        fail("gateway: the policy cannot be loaded; nothing was run", 1)
        return
    except GatewayError as exc:
        fail(f"gateway: {exc}", 1)
        return
    exit_with(status)
