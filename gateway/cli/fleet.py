"""`gateway fleet status` and `gateway fleet migrate`: the fleet's database, seen from any host.

The connection string comes from ``--fleet`` or ``GATEWAY_FLEET`` and is
never printed (an error names the server's message, not the string).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from gateway.cli.common import emit_json, fail, main

fleet_option = click.option(
    "--fleet",
    "dsn",
    envvar="GATEWAY_FLEET",
    required=True,
    help="The fleet's PostgreSQL (postgresql://...); default: $GATEWAY_FLEET.",
)


@main.group()
def fleet() -> None:
    """A fleet of gateways on one PostgreSQL."""


@fleet.command()
@fleet_option
def migrate(dsn: str) -> None:
    """Create or upgrade the fleet schema (versioned; a schema newer than this gateway is refused)."""
    import psycopg  # noqa: PLC0415 - only the fleet commands need it

    from gateway.fleet import schema  # noqa: PLC0415
    from gateway.fleet.down import why, with_timeout  # noqa: PLC0415

    try:
        with psycopg.connect(with_timeout(dsn), autocommit=True) as conn:
            before, after = schema.migrate(conn)
    except schema.SchemaError as exc:
        fail(f"gateway: {exc}", 1)
    except psycopg.Error as exc:
        fail(f"gateway: the fleet database: {why(exc)}", 1)
    click.echo(
        f"fleet schema: version {after}" + (f" (was {before})" if before != after else " (up to date)")
    )


@fleet.command()
@fleet_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per host.")
def status(dsn: str, as_json: bool) -> None:
    """The fleet's hosts: version, policy, commit, sessions, last seen; drift marked.

    Exit status 1 when a host runs another policy than the majority's or has not been seen for 30 s.
    """
    import asyncio  # noqa: PLC0415 - only this command needs a loop

    import psycopg  # noqa: PLC0415

    from gateway.fleet import heartbeat, schema  # noqa: PLC0415
    from gateway.fleet.down import why, with_timeout  # noqa: PLC0415

    async def read() -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(with_timeout(dsn), autocommit=True) as conn:
            await schema.check(conn)
            return await heartbeat.hosts(conn)

    try:
        rows = asyncio.run(read())
    except schema.SchemaError as exc:
        fail(f"gateway: {exc}", 1)
    except psycopg.Error as exc:
        fail(f"gateway: the fleet database: {why(exc)}", 1)
    if as_json:
        for row in rows:
            emit_json({k: (str(v) if k in ("started", "last_seen") else v) for k, v in row.items()})
    else:
        sys.stdout.write(heartbeat.table(rows) if rows else "no host has joined the fleet yet\n")
    sys.exit(1 if any(r["marks"] for r in rows) else 0)
