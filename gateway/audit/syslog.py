"""RFC 5424 messages with RFC 6587 octet-counted framing, for shipping audit records.

Each record becomes one message: APP-NAME ``gateway``, the host name, MSGID
the event name (``checkpoint`` for a signed checkpoint), no structured data,
and the record's own canonical JSON line as the MSG, byte for byte, so that
the collector's copy verifies like the host's. Framing is ``LEN SP MSG``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from gateway.errors import ConfigError

#: facility authpriv (10), severity informational (6)
PRI = 10 * 8 + 6
APP_NAME = "gateway"
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class Destination:
    """A collector: ``tcp://HOST:PORT`` or ``tls://HOST:PORT``."""

    url: str
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Destination:
        """Parse and check *url*; ConfigError for anything else."""
        parts = urlsplit(url)
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or parts.port is None or parts.path:
            raise ConfigError(f"--audit-syslog: expected tcp://HOST:PORT or tls://HOST:PORT, got {url!r}")
        return cls(url, parts.scheme, parts.hostname, parts.port)

    @property
    def label(self) -> str:
        """A short name for metrics and status."""
        return f"{self.scheme}://{self.host}:{self.port}"


def header_field(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most *limit* long, "-" when empty."""
    cleaned = _PRINTUSASCII.sub("_", text)[:limit]
    return cleaned or "-"


def timestamp(value: object) -> str:
    """A record's ``ts`` (ISO text, or epoch seconds for a checkpoint) as an RFC 5424 TIMESTAMP."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    text = str(value or "")
    return text if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", text) else "-"


def frame(line: bytes, *, msgid: str, ts: object, hostname: str) -> bytes:
    """One octet-counted RFC 5424 message carrying *line* as its MSG."""
    head = f"<{PRI}>1 {timestamp(ts)} {header_field(hostname, 255)} {APP_NAME} - {header_field(msgid, 32)} - "
    message = head.encode() + line
    return str(len(message)).encode() + b" " + message
