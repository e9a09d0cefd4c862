"""Leaving as sshd expects, for the door's entry points (the standard library's C modules only)."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found,unused-ignore]  # not `signal`: its enums cost ms
import os
import sys


def exit_with(status: int) -> None:
    """Exit as sshd expects: a signal death is re-raised, not reported as 128+N."""
    sys.stdout.flush()
    if status > 128 and status - 128 in _signal.valid_signals():
        _signal.signal(status - 128, _signal.SIG_DFL)
        os.kill(os.getpid(), status - 128)
    os._exit(status)
