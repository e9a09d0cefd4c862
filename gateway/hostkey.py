"""The server's ed25519 host key: generated on first start (0600), reused after."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from gateway.errors import ConfigError

HOST_KEY_NAME = "ssh_host_ed25519_key"


def load_or_create_host_key(state: Path) -> asyncssh.SSHKey:
    """Read ``STATE/ssh_host_ed25519_key``, creating it (mode 0600) when absent."""
    path = state / HOST_KEY_NAME
    try:
        return asyncssh.read_private_key(path)
    except FileNotFoundError:
        pass
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"cannot read host key {path}: {exc}") from exc
    key = asyncssh.generate_private_key("ssh-ed25519")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
    except FileExistsError:  # another process won the race: use its key
        return asyncssh.read_private_key(path)
    except OSError as exc:
        raise ConfigError(f"cannot write host key {path}: {exc}") from exc
    return key
