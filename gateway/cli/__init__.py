"""The command line: the only place that prints or exits.

One module per command group (``serve``, ``policy``, ``door``, ``audit``,
``sessions``, ``fleet``), each registering its commands on ``common.main``.
"""

from gateway.cli import audit, door, fleet, policy, serve, sessions
from gateway.cli.common import main

__all__ = ["audit", "door", "fleet", "main", "policy", "serve", "sessions"]
