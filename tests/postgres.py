"""A private PostgreSQL for tests: Debian's own server, in a temporary directory, on loopback.

``initdb`` and ``pg_ctl`` run as the ``postgres`` account (they refuse root)
on a directory it owns; the server listens on 127.0.0.1 at a free port and on
a unix socket in the same directory, and is stopped (fast) at the end.
"""

from __future__ import annotations

import contextlib
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg


def _bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no PostgreSQL {name}: scripts/setup installs postgresql")
    return str(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    """One running private server."""

    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        """A loopback connection string."""
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{dbname}?connect_timeout=3"

    def _ctl(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", _bin("pg_ctl"), "-D", str(self.data), *args],
                       check=True, capture_output=True, timeout=60)  # fmt: skip

    def start(self) -> None:
        """Start (or start again) and wait until it answers."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self) -> None:
        """Stop at once (clients are disconnected)."""
        self._ctl("-m", "fast", "-w", "stop")

    def sql(self, statement: str, *params: object, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement as the superuser; its rows, if any."""
        with psycopg.connect(self.dsn(dbname=dbname), autocommit=True) as conn:
            cur = conn.execute(statement.encode(), params or None)
            return list(cur.fetchall()) if cur.description else []

    def fresh_database(self, name: str) -> str:
        """A new empty database; its connection string."""
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.sql(f'CREATE DATABASE "{name}"')
        return self.dsn(dbname=name)


@contextlib.contextmanager
def private_postgres() -> Iterator[Postgres]:
    """initdb, start; stop and remove at the end."""
    directory = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
    owner = pwd.getpwnam("postgres")
    shutil.chown(directory, owner.pw_uid, owner.pw_gid)
    server = Postgres(directory, _free_port())
    subprocess.run(["runuser", "-u", "postgres", "--", _bin("initdb"), "-D", str(server.data), "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"], check=True, capture_output=True, timeout=120)  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
