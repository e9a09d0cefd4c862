"""Every forwarding and tunnel request, refused and reported, whichever SSH server class holds the port."""

from __future__ import annotations

from typing import Any

import asyncssh

from gateway.command import printable
from gateway.events import RefusalKind

FORWARDING = "gateway: port forwarding is not available"


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
