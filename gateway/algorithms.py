"""SSH algorithms: ``--ciphers``, ``--macs`` and ``--kex-algs`` with sshd's names and meaning.

A list replaces the default; ``+LIST`` appends to it, ``-LIST`` removes from
it and ``^LIST`` puts the list at its head, as sshd_config(5) says. Every
name must be one this asyncssh supports.

Speed and reach together: the client's first cipher that the server offers
wins, and AES-GCM runs two to three times faster than chacha20-poly1305 or
AES-CTR with a MAC through asyncssh. So the server waits for the client's
key-exchange offer (see ``sshhooks.install_kex_hooks``) and then offers only
the fast ciphers when the client has one of them (OpenSSH, PuTTY, paramiko,
asyncssh), and the whole configured list otherwise (Dropbear 2022, which has
no AES-GCM). Every client connects; those that can get the fast path do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncssh

from gateway.errors import ConfigError

DEFAULT_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "chacha20-poly1305@openssh.com",
)
FAST_CIPHERS = frozenset({"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"})


def _names(found: Sequence[bytes]) -> tuple[str, ...]:
    return tuple(n.decode() for n in found)


def supported() -> dict[str, tuple[str, ...]]:
    """What this asyncssh can do, per option."""
    return {
        "ciphers": _names(asyncssh.encryption.get_encryption_algs()),
        "macs": _names(asyncssh.mac.get_mac_algs()),
        "kex-algs": tuple(n for n in _names(asyncssh.kex.get_kex_algs()) if not n.startswith("gss-")),
    }


def defaults() -> dict[str, tuple[str, ...]]:
    """The defaults, per option."""
    have = supported()
    return {
        "ciphers": tuple(c for c in DEFAULT_CIPHERS if c in have["ciphers"]),
        "macs": _names(asyncssh.mac.get_default_mac_algs()),
        "kex-algs": tuple(n for n in _names(asyncssh.kex.get_default_kex_algs()) if not n.startswith("gss-")),
    }


def resolve(option: str, spec: str | None) -> tuple[str, ...]:
    """*spec* (sshd's syntax) applied to the default list for *option*; ConfigError for a bad name."""
    default = defaults()[option]
    if spec is None:
        return default
    mode, body = (spec[0], spec[1:]) if spec[:1] in ("+", "-", "^") else ("", spec)
    names = tuple(n for n in body.split(",") if n)
    unknown = [n for n in names if n not in supported()[option]]
    if unknown or not names:
        known = ", ".join(supported()[option])
        what = ", ".join(unknown) or "empty list"
        raise ConfigError(f"--{option}: unsupported {what} (supported: {known})")
    if mode == "+":
        result = default + tuple(n for n in names if n not in default)
    elif mode == "-":
        result = tuple(n for n in default if n not in names)
    elif mode == "^":
        result = names + tuple(n for n in default if n not in names)
    else:
        result = names
    if not result:
        raise ConfigError(f"--{option}: nothing left to offer")
    return result


@dataclass(frozen=True)
class Algorithms:
    """The resolved lists, and the per-client cipher offer."""

    ciphers: tuple[str, ...]
    macs: tuple[str, ...]
    kex: tuple[str, ...]

    @classmethod
    def from_options(cls, ciphers: str | None, macs: str | None, kex: str | None) -> Algorithms:
        """Resolve the three options."""
        return cls(resolve("ciphers", ciphers), resolve("macs", macs), resolve("kex-algs", kex))

    def offer(self, client_ciphers: Sequence[bytes]) -> list[bytes]:
        """The ciphers to offer a client whose list is *client_ciphers*: the fast ones if it has any."""
        theirs = {c.decode("ascii", "replace") for c in client_ciphers}
        fast = [c for c in self.ciphers if c in FAST_CIPHERS and c in theirs]
        return [c.encode() for c in (fast or self.ciphers)]
