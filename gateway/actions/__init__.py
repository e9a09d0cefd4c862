"""Action runners, one module per action type, behind one protocol.

::

    policy.models.<Type>Action ──REGISTRY──► runner(ActionContext) -> Exit
        ShellAction  ─► shell.run_shell   (nsenter, via bridge.run_local)
        HostAction   ─► host.run_host     (fixed argv, via bridge.run_local)

``bridge`` connects a local child to the SSH channel, on a PTY or on three
pipes, and taps both directions into the recorder.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.actions.base import ActionContext, Exit, Runner, Traffic
from gateway.actions.host import run_host
from gateway.actions.shell import run_shell
from gateway.policy import models

REGISTRY: Mapping[type[models._ActionBase], Runner] = {
    models.ShellAction: run_shell,
    models.HostAction: run_host,
}


def runner_for(spec: models.Action) -> Runner | None:
    """The runner for *spec*'s type, or None where this build has none."""
    return REGISTRY.get(type(spec))


__all__ = ["REGISTRY", "ActionContext", "Exit", "Runner", "Traffic", "runner_for"]
