"""The console script and ``python -m gateway``.

``dispatch`` tries the forced-command door's fast path first, before click and
the rest of the CLI are imported; everything else goes to ``cli.main``.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    """Run the gateway command line."""
    if sys.argv[1:2] == ["dispatch"]:
        from gateway.dispatch.fast import main as fast  # noqa: PLC0415

        status = fast(sys.argv[2:])
        if status is not None:
            sys.stdout.flush()
            if status > 128 and status - 128 in signal.valid_signals():
                signal.signal(status - 128, signal.SIG_DFL)
                os.kill(os.getpid(), status - 128)  # sshd reports the child's signal
            os._exit(status)
    if sys.flags.no_site:
        import site  # noqa: PLC0415 - started with -S by door.py: bring site-packages back

        site.main()
    from gateway.cli import main as cli  # noqa: PLC0415

    cli()
