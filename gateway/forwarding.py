"""What every SSH server of ours offers and refuses, whichever process holds the port: the listener's
options (keys only, no forwarding) and each forwarding or tunnel request, refused and reported."""

from __future__ import annotations

from typing import Any

import asyncssh

from gateway.algorithms import Algorithms
from gateway.command import printable
from gateway.events import RefusalKind

FORWARDING = "gateway: port forwarding is not available"


def server_options(algorithms: Algorithms, login_timeout: float) -> dict[str, Any]:
    """asyncssh's listener options: public keys only, every forwarding and other auth method off.

    The cipher offer is narrowed per client to the fast ciphers it has (``sshhooks.install_kex_hooks``).
    """
    return {
        "server_version": "gateway",
        "encoding": None,
        "line_editor": False,
        "agent_forwarding": False,
        "x11_forwarding": False,
        "allow_scp": False,
        "password_auth": False,
        "kbdint_auth": False,
        "host_based_auth": False,
        "gss_host": None,
        "login_timeout": login_timeout,
        "encryption_algs": list(algorithms.ciphers),
        "mac_algs": list(algorithms.macs),
        "kex_algs": list(algorithms.kex),
    }


def prohibited(text: str) -> asyncssh.ChannelOpenError:
    """A refused channel open that clients show as "administratively prohibited: TEXT"."""
    return asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, text)


class RefusesForwarding:
    """asyncssh's forwarding callbacks, each refusing; ``refused`` records (the server's own)."""

    def refused(self, kind: RefusalKind, **fields: Any) -> None:
        """Record a refused protocol request; never raises."""
        raise NotImplementedError

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        """``ssh -L`` / ``-D``: refused, administratively prohibited."""
        self.refused(RefusalKind.DIRECT_TCPIP, destination=f"{printable(dest_host)}:{dest_port}")
        raise prohibited(FORWARDING)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        """``ssh -R``: refused (a global request carries no reason)."""
        self.refused(RefusalKind.TCPIP_FORWARD, listen=f"{printable(listen_host)}:{listen_port}")
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        """Unix socket forwarding: refused, administratively prohibited."""
        self.refused(RefusalKind.DIRECT_STREAMLOCAL, destination=printable(dest_path))
        raise prohibited(FORWARDING)

    def unix_server_requested(self, listen_path: str) -> bool:
        """Remote unix socket forwarding: refused."""
        self.refused(RefusalKind.STREAMLOCAL_FORWARD, listen=printable(listen_path))
        return False

    def tun_requested(self, unit: int | None) -> bool:
        """Layer 3 tunnels: refused, administratively prohibited."""
        self.refused(RefusalKind.TUN, unit=unit)
        raise prohibited("gateway: tunnels are not available")

    def tap_requested(self, unit: int | None) -> bool:
        """Layer 2 tunnels: refused, administratively prohibited."""
        self.refused(RefusalKind.TAP, unit=unit)
        raise prohibited("gateway: tunnels are not available")
