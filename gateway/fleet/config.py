"""``policies/fleet.yaml``: the fleet's hosts with their host keys, and the fleet-wide limits.

::

    version: 1
    fleet:
      hosts:
        - {name: host-a, key: "ssh-ed25519 AAAA..."}
      max_sessions: 500
      max_sessions_per_principal: 20

It lives in the policy repository (Betty's), not in the database: the host
keys are what an approval row's signature is checked against, so a row written
by hand, or by a host not listed here, never counts. It is read again whenever
it changes (by mtime and size), so a ``git pull`` takes effect as a policy
change does.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Literal

import asyncssh
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from gateway.errors import ConfigError, LoadError, Problem
from gateway.hostkey import load_or_create_host_key
from gateway.policy.loader import validated
from gateway.policy_files import FLEET_FILE
from gateway.safefile import NotRegular, read_regular
from gateway.settings import Settings

MAX_BYTES = 1 << 20
HostName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Host(_Model):
    """One gateway of the fleet and its SSH host public key."""

    name: HostName
    key: str

    @field_validator("key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        try:
            asyncssh.import_public_key(value)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise ValueError(f"not an OpenSSH public key: {exc}") from None
        return value

    def public_key(self) -> asyncssh.SSHKey:
        """The key, parsed."""
        return asyncssh.import_public_key(self.key)


class Fleet(_Model):
    """The ``fleet:`` mapping."""

    hosts: list[Host] = Field(min_length=1)
    max_sessions: int | None = Field(default=None, ge=1)
    max_sessions_per_principal: int | None = Field(default=None, ge=1)

    @field_validator("hosts")
    @classmethod
    def _unique(cls, hosts: list[Host]) -> list[Host]:
        names = [h.name for h in hosts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"host {twice[0]!r} is listed twice")
        return hosts


class FleetFile(_Model):
    """The whole file."""

    version: Literal[1]
    fleet: Fleet

    def host(self, name: str) -> Host | None:
        """The listed host of that name."""
        return next((h for h in self.fleet.hosts if h.name == name), None)


def load(path: Path) -> FleetFile:
    """Read and check *path*; LoadError (``file:line:column``) when it is wrong or missing."""
    try:
        raw = read_regular(path, MAX_BYTES)
    except FileNotFoundError:
        raise LoadError(
            [Problem(str(path), 0, 0, "not found: a fleet needs its hosts listed here")]
        ) from None
    except (NotRegular, OSError) as exc:
        raise LoadError([Problem(str(path), 0, 0, f"cannot read: {exc}")]) from None
    if len(raw) > MAX_BYTES:
        raise LoadError([Problem(str(path), 1, 1, "too large (at most 1 MiB)")])
    return validated(str(path), raw.decode("utf-8", "replace"), FleetFile)


class FleetConfig:
    """The file, read again when it changes; the last good version is kept if a change is bad."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self.current = load(path)
        self._remember()

    def _remember(self) -> None:
        with contextlib.suppress(OSError):
            stat = self.path.stat()
            self._seen = (stat.st_mtime_ns, stat.st_size)

    def get(self) -> FleetFile:
        """The file in force (re-read if it changed; a bad change keeps the previous one)."""
        with contextlib.suppress(OSError):
            stat = self.path.stat()
            if (stat.st_mtime_ns, stat.st_size) != self._seen:
                with contextlib.suppress(LoadError):
                    self.current = load(self.path)
                self._seen = (stat.st_mtime_ns, stat.st_size)
        return self.current


def check_self(config: FleetFile, host_name: str, host_key: asyncssh.SSHKey, path: Path) -> None:
    """This gateway must be listed, with its own host key; ConfigError otherwise."""
    listed = config.host(host_name)
    if listed is None:
        names = ", ".join(h.name for h in config.fleet.hosts)
        raise ConfigError(f"--host-name {host_name!r} is not among the hosts of {path} ({names})")
    if listed.public_key().public_data != host_key.public_data:
        raise ConfigError(f"{path} lists host {host_name!r} with another key than this gateway's host key")


def checked_config(settings: Settings, host_key: asyncssh.SSHKey | None = None) -> FleetConfig:
    """policies/fleet.yaml, listing this host (``--host-name``) with this gateway's host key; LoadError or
    ConfigError otherwise."""
    config = FleetConfig(settings.policies / FLEET_FILE)
    if host_key is None:
        try:
            settings.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create state directory {settings.state}: {exc}") from exc
    key = host_key if host_key is not None else load_or_create_host_key(settings.state)
    check_self(config.current, settings.host_name or "", key, config.path)
    return config
