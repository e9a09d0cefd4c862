"""`gateway serve`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import (
    duration_param,
    fail,
    keys_option,
    main,
    policies_option,
    size_param,
    state_option,
)
from gateway.errors import ConfigError, GatewayError, LoadError


def _net_user(given: str | None) -> str | None:
    """The network workers' account: as given, the default when root, None for 'none' or not root."""
    from gateway.settings import NET_USER  # noqa: PLC0415 - pydantic: only where needed

    if given == "none" or (given is None and os.geteuid() != 0):
        return None
    return given or NET_USER


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
@click.option(
    "--host-name",
    envvar="GATEWAY_HOST_NAME",
    help="This host's name in shipped records and in a fleet (default: the machine's; $GATEWAY_HOST_NAME).",
)
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
    callback=lambda _ctx, _param, value: duration_param(value),
    default="10m",
    show_default=True,
    help="How long a request waits for approval in its connection (30m, 1h, or seconds).",
)
@click.option(
    "--recordings-min-free",
    callback=lambda _ctx, _param, value: size_param(value),
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
    default=None,
    help="Processes sharing the port (SO_REUSEPORT); default: one per core. Limits hold across them.",
)
@click.option(
    "--no-lean-path",
    is_flag=True,
    help="asyncssh's own packet path only (the lean channel-data path off).",
)
@click.option(
    "--lean-parts",
    default="send,receive,channel",
    hidden=True,
    help="For measuring: the parts of the lean path to use (send, receive, channel).",
)
@click.option(
    "--fleet",
    envvar="GATEWAY_FLEET",
    help="Join a fleet: its PostgreSQL (postgresql://...; default $GATEWAY_FLEET), with --host-name and"
    " policies/fleet.yaml. Never logged.",
)
@click.option("--fleet-migrate", is_flag=True, help="Create or upgrade the fleet schema at start.")
@click.option(
    "--net-user",
    metavar="ACCOUNT",
    envvar="GATEWAY_NET_USER",
    help="Privilege separation: the processes that read the network run as ACCOUNT (no capability,"
    " no_new_privs, a seccomp filter, no host key, no Docker socket); the privileged monitor decides,"
    " audits and runs (docs/security.md). Default when started as root: gateway-net (made if missing);"
    " 'none': one privileged process reads the network too.",
)
@click.option(
    "--spawner",
    metavar="SOCKET",
    envvar="GATEWAY_SPAWNER",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The spawner's socket, when it was started apart (`python -I -S gateway/confine/zygote.py"
    " --listen SOCKET`: the shipped unit's ExecStartPre=+, outside the unit's sandbox, so that shells"
    " carry their container's confinement, not the unit's). Default: the gateway starts its own.",
)
@policies_option
@keys_option
@state_option
def serve(
    listen: str,
    metrics: str | None,
    no_strict_modes: bool,
    no_lean_path: bool,
    lean_parts: str,
    **options: Any,
) -> None:
    """Run the SSH gateway."""
    from gateway.settings import Listen, Settings  # noqa: PLC0415 - pydantic: only where needed
    from gateway.workers import run  # noqa: PLC0415 - keep `policy check` start-up light

    def ready(host: str, port: int) -> None:
        click.echo(f"gateway: listening on {host}:{port}", nl=True)
        click.echo(f"gateway: connect with: ssh -p {port} -t ACTION@{host} TARGET")
        sys.stdout.flush()

    if options.get("door_user") and not options.get("keys_user"):
        fail(
            "gateway: --door-user needs --keys-user (sshd's AuthorizedKeysCommandUser): without it"
            " sshd's key lookup cannot reach keys.sock and every door login is refused",
            2,
        )
    if options.get("fleet") and not options.get("host_name"):
        fail("gateway: --fleet needs --host-name: this host's name among the hosts of policies/fleet.yaml", 2)
    options["net_user"] = _net_user(options.get("net_user"))
    if options.get("workers") is None:  # every core, unless --workers says otherwise
        options["workers"] = min(len(os.sched_getaffinity(0)), 64)
    try:
        settings = Settings(
            listen=Listen.parse(listen),
            metrics=Listen.parse(metrics) if metrics else None,
            strict_modes=not no_strict_modes,
            lean_path=not no_lean_path,
            lean_parts=tuple(p for p in lean_parts.split(",") if p),
            **options,
        )
        run(settings, ready)
    except LoadError as exc:
        fail(str(exc), 1)
    except ConfigError as exc:
        fail(f"gateway: {exc}", 2)
    except GatewayError as exc:
        fail(f"gateway: {exc}", 1)
    except OSError as exc:
        fail(f"gateway: cannot listen on {listen}: {exc.strerror}", 1)
