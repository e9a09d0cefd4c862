"""Runtime settings: a frozen model built once by the CLI."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import ConfigError

#: the network workers' account by default (privilege separation, ``gateway.privsep``)
NET_USER = "gateway-net"


class Listen(BaseModel):
    """A ``HOST:PORT`` pair to listen on."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(ge=0, le=65535)

    @classmethod
    def parse(cls, text: str) -> Listen:
        """Parse ``HOST:PORT`` (``[::1]:22`` for IPv6)."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"--listen expects HOST:PORT, got {text!r}")
        return cls(host=host.strip("[]") or "127.0.0.1", port=int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Settings(BaseModel):
    """Everything `gateway serve` needs; defaults suit a first run from the repo."""

    model_config = ConfigDict(frozen=True)

    listen: Listen = Listen(host="127.0.0.1", port=2222)
    policies: Path = Path("policies")
    keys: Path = Path("keys")
    state: Path = Path("state")
    login_timeout: float = 20.0
    max_sessions_per_connection: int = 10
    drain_seconds: float = 30.0
    checkpoint_interval: float = 60.0
    checkpoint_key: Path | None = None
    #: syslog collectors the audit chain is shipped to, and how to reach them
    audit_syslog: tuple[str, ...] = ()
    audit_syslog_ca: Path | None = None
    audit_syslog_cert: Path | None = None
    audit_syslog_key: Path | None = None
    host_name: str | None = None
    #: sshd-style algorithm lists (None: the defaults in gateway.algorithms)
    ciphers: str | None = None
    macs: str | None = None
    kex_algs: str | None = None
    #: the door socket for `dispatch` (None: STATE/door.sock), and who besides root may use it
    door_socket: Path | None = None
    door_user: str | None = None
    #: the keys socket for sshd's AuthorizedKeysCommand (None: beside the door socket), and its account
    keys_socket: Path | None = None
    keys_user: str | None = None
    #: how sshd runs the gateway in the lines `authorized-keys --fingerprint` serves (None: this Python)
    door_program: str | None = None
    strict_modes: bool = True
    max_sessions: int = 2000
    max_sessions_per_principal: int = 200
    #: free bytes below which recorded sessions are refused (None: 1 GiB or 5%, whichever is larger)
    recordings_min_free: int | None = None
    #: seconds a requester waits for approval in the connection
    approval_wait: float = 600.0
    max_unauthenticated: int = 200
    max_unauthenticated_per_source: int = 50
    auth_failure_limit: int = 20
    metrics: Listen | None = None
    log_format: str = "json"
    #: worker processes (more than one: a supervisor and its workers, on one socket);
    #: this one's index (0: the supervisor, or the only process)
    workers: int = 1
    worker: int = 0
    #: the lean channel-data path (gateway.sshfast); False: asyncssh's own packet path only
    lean_path: bool = True
    #: which parts of it (all, as shipped; fewer only to measure what each buys)
    lean_parts: tuple[str, ...] = ("send", "receive", "channel")
    trusted_user_ca_keys: Path | None = None
    #: privilege separation: the account the network workers run as (None: one privileged process)
    net_user: str | None = None
    #: the spawner daemon's socket (started apart, outside the unit's sandbox); None: the gateway's own
    spawner: Path | None = None
    #: the fleet's PostgreSQL (None: everything stays on this host); never logged
    fleet: str | None = Field(default=None, repr=False)
    #: apply the fleet schema's migrations at start
    fleet_migrate: bool = False
