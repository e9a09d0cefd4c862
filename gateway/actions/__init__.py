"""Action runners, one module per action type, behind one protocol.

::

    policy.models.<Type>Action ──REGISTRY──► runner(ActionContext) -> Exit
        ShellAction    ─► shell.run_shell       (nsenter, via bridge.run_local)
        HostAction     ─► host.run_host         (fixed argv, via bridge.run_local)
        SidekickAction ─► sidekick.run_sidekick (Engine API container with --volumes-from)
        SignalAction   ─► kill.run_signal       (docker kill -s)
        LogsAction     ─► logs.run_logs         (tail / follow, stdout and stderr apart)
        BackupAction   ─► backup.run_backup     (archive endpoint, streamed tar)
        AuditAction    ─► audit.run_audit       (read-only compliance queries)
        ApproveAction  ─► approve.run_approve   (approvers: list, approve, deny requests)
        HelpAction     ─► help.run_help         (the caller's own grants)

``channel`` is the SSH side of every runner (send, input, hang-up) and taps
the recorder; ``bridge`` connects a local child to it, on a PTY or on pipes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.actions.approve import run_approve
from gateway.actions.audit import parse as parse_audit_query
from gateway.actions.audit import run_audit
from gateway.actions.backup import run_backup
from gateway.actions.base import ActionContext, Exit, Runner, Traffic
from gateway.actions.help import run_help
from gateway.actions.host import run_host
from gateway.actions.kill import run_signal
from gateway.actions.logs import run_logs
from gateway.actions.shell import run_shell
from gateway.actions.sidekick import run_sidekick
from gateway.policy import models

REGISTRY: Mapping[type[models._ActionBase], Runner] = {
    models.ShellAction: run_shell,
    models.HostAction: run_host,
    models.SidekickAction: run_sidekick,
    models.SignalAction: run_signal,
    models.LogsAction: run_logs,
    models.BackupAction: run_backup,
    models.AuditAction: run_audit,
    models.ApproveAction: run_approve,
    models.HelpAction: run_help,
}


# Checks of the client's words that can refuse before the allow record is written.
VALIDATORS: Mapping[type[models._ActionBase], Callable[[tuple[str, ...]], object]] = {
    models.AuditAction: parse_audit_query,
}


def validate(spec: models.Action, args: tuple[str, ...]) -> None:
    """Raise Refusal if the action's own parser rejects *args* (before anything runs)."""
    check = VALIDATORS.get(type(spec))
    if check is not None:
        check(args)


def runner_for(spec: models.Action) -> Runner:
    """The runner for *spec*'s type; every model type has one (checked at import)."""
    return REGISTRY[type(spec)]


_missing = {t.__name__ for t in models.ACTION_MODELS} - {t.__name__ for t in REGISTRY}
if _missing:  # pragma: no cover - a new action type without a runner is a build error
    raise ImportError(f"action types without a runner: {sorted(_missing)}")


__all__ = ["REGISTRY", "ActionContext", "Exit", "Runner", "Traffic", "runner_for", "validate"]
