"""The console script and ``python -m gateway``.

``dispatch`` and ``authorized-keys --fingerprint`` run on every connection
through sshd, so they first try the daemon's door socket (``dispatch.client``:
the standard library only), before click and the rest of the CLI are
imported; when no daemon answers, the full command line runs them in-process.
"""

from __future__ import annotations

import sys

from gateway.exits import exit_with


def main() -> None:
    """Run the gateway command line."""
    command, rest = sys.argv[1:2], sys.argv[2:]
    if command == ["dispatch"]:
        from gateway.dispatch.client import session  # noqa: PLC0415

        status = session(rest)
        if status is not None:
            exit_with(status)
    elif command == ["authorized-keys"] and "--fingerprint" in rest:
        from gateway.dispatch.client import key_line  # noqa: PLC0415

        line = key_line(rest)
        if line is not None:
            if line:
                sys.stdout.write(line + "\n")
            exit_with(0)
    if sys.flags.no_site:
        import site  # noqa: PLC0415 - started with -S by door.py: bring site-packages back

        site.main()
    try:
        from gateway.cli import main as cli  # noqa: PLC0415
    except ImportError:  # a Python without our dependencies (the door user's): the daemon was the way
        sys.stderr.write("gateway: the gateway is not answering on its door socket; nothing was run\n")
        exit_with(1)
        return
    cli()
