"""The fleet's tables in PostgreSQL, created and upgraded by numbered migrations.

``gateway fleet migrate`` (or ``serve --fleet-migrate``) applies the ones not
yet applied, each in its own transaction, under an advisory lock so two hosts
migrating at once do not race. A gateway checks the version on every
connection and refuses a schema newer than it knows (an older gateway must not
write rows whose meaning changed).
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection, sql

from gateway.errors import ConfigError
from gateway.fleet.down import why, with_timeout

#: the lock two migrating hosts take turns on (any fixed number, this project's own)
MIGRATE_LOCK = 0x6761_7465
MIGRATIONS: tuple[str, ...] = (
    # 1: hosts, access requests and their signed decisions, the session index, waiting moderations
    """
    CREATE TABLE fleet_hosts (
      name text PRIMARY KEY, version text NOT NULL, policy text NOT NULL, commit text,
      workers integer NOT NULL, sessions_open integer NOT NULL,
      started timestamptz NOT NULL, last_seen timestamptz NOT NULL);
    CREATE TABLE fleet_requests (
      id text PRIMARY KEY, host text NOT NULL, requester text NOT NULL, action text NOT NULL,
      target text NOT NULL, reason text, rules jsonb NOT NULL, window_seconds integer NOT NULL,
      filed double precision NOT NULL, state text NOT NULL DEFAULT 'pending',
      decided double precision, denied_by text, why text);
    CREATE INDEX fleet_requests_pending ON fleet_requests (filed) WHERE state = 'pending';
    CREATE INDEX fleet_requests_who ON fleet_requests (host, requester, action, target);
    CREATE TABLE fleet_decisions (
      request text NOT NULL REFERENCES fleet_requests (id), principal text NOT NULL,
      verdict text NOT NULL, why text, host text NOT NULL, at double precision NOT NULL,
      signature text NOT NULL, PRIMARY KEY (request, principal, verdict));
    CREATE TABLE fleet_sessions (
      host text NOT NULL, id text NOT NULL, principal text, action text, target text, container text,
      start text NOT NULL, "end" text, duration double precision, exit_status integer, signal text,
      bytes_in bigint, bytes_out bigint, reason text, request text, approvers text,
      recording text, recording_sha256 text, state text NOT NULL, first_seq bigint, last_seq bigint,
      PRIMARY KEY (host, id));
    CREATE INDEX fleet_sessions_start ON fleet_sessions (start);
    CREATE INDEX fleet_sessions_host_start ON fleet_sessions (host, start);
    CREATE INDEX fleet_sessions_principal_start ON fleet_sessions (principal, start);
    CREATE FUNCTION fleet_safe(text) RETURNS text IMMUTABLE LANGUAGE sql AS $$
      SELECT regexp_replace($1, -- C0 but tab, DEL, C1, bidi overrides and isolates
      '[\\x01-\\x08\\x0a-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]',
      '?', 'g') $$;
    CREATE TABLE fleet_waiting (
      host text NOT NULL, key text NOT NULL, requester text NOT NULL, what text NOT NULL,
      needs text NOT NULL, moderators jsonb NOT NULL, since double precision NOT NULL,
      PRIMARY KEY (host, key));
    """,
)
LATEST = len(MIGRATIONS)


class SchemaError(Exception):
    """The fleet schema is missing or newer than this gateway knows."""


_VERSION = "SELECT coalesce(max(version), 0) FROM fleet_schema"
_HAS_TABLE = "SELECT to_regclass('fleet_schema') IS NOT NULL"


def migrate(conn: Connection[Any]) -> tuple[int, int]:
    """Apply every migration not yet applied; (version before, version after)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS fleet_schema (version integer PRIMARY KEY, at timestamptz)")
        row = conn.execute(_VERSION).fetchone()
        before = int(row[0]) if row else 0
        if before > LATEST:
            raise SchemaError(too_new(before))
        for number in range(before + 1, LATEST + 1):
            conn.execute(sql.SQL(MIGRATIONS[number - 1]))
            conn.execute("INSERT INTO fleet_schema VALUES (%s, now())", (number,))
    return before, LATEST


def too_new(version: int) -> str:
    """The refusal for a schema from a newer gateway."""
    return f"the fleet schema is version {version}, newer than this gateway knows ({LATEST}): upgrade it"


def judge(version: int) -> None:
    """SchemaError unless *version* is exactly the one this gateway knows."""
    if version > LATEST:
        raise SchemaError(too_new(version))
    if version < LATEST:
        raise SchemaError(
            f"the fleet schema is version {version}, this gateway needs {LATEST}:"
            " run `gateway fleet migrate` (or serve --fleet-migrate)"
        )


async def check(conn: AsyncConnection[Any]) -> None:
    """SchemaError unless the database's schema is the one this gateway knows."""
    row = await (await conn.execute(_HAS_TABLE)).fetchone()
    found = await (await conn.execute(_VERSION)).fetchone() if row and row[0] else (0,)
    judge(int(found[0]) if found else 0)


def at_start(dsn: str, *, migrations: bool) -> None:
    """Before serving: migrate when asked, and refuse a schema this gateway does not know (ConfigError).
    A database that does not answer yet is not fatal: the gateway starts with the fleet down."""
    try:
        with psycopg.connect(with_timeout(dsn), autocommit=True) as conn:
            if migrations:
                migrate(conn)
            row = conn.execute(_HAS_TABLE).fetchone()
            found = conn.execute(_VERSION).fetchone() if row and row[0] else (0,)
        judge(int(found[0]) if found else 0)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from None
    except psycopg.Error as exc:  # on stderr: stdout's first line is the listening address
        print(f"gateway: the fleet database does not answer yet ({why(exc)}); starting with the fleet down",
              file=sys.stderr)  # fmt: skip
