"""One session channel, whichever door it came through.

::

    decide.py    parse, resolve the target, ask the policy, pin the container -> Plan
    core.py      Session: admit, the allow record (fsynced), run, deliver the exit
    run.py       the recorder, the runner, the limits watchdog, the session-end record
    messages.py  the one-line refusals and failures the client sees
    registry.py  the live sessions, for the drain and /healthz
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.session.core import Session


def __getattr__(name: str) -> Any:
    if name == "Session":  # imported on first use: the registry alone stays light
        from gateway.session.core import Session  # noqa: PLC0415

        return Session
    raise AttributeError(name)


__all__ = ["Session"]
