"""Action runners, one module per action type, each registered with ``base.runs``.

::

    policy.models.<Type>Action ──RUNNERS──► runner(ActionContext) -> Exit
        ShellAction    ─► shell.run_shell       (the container's namespaces, via bridge.run_local)
        HostAction     ─► host.run_host         (fixed argv, via bridge.run_local)
        SidekickAction ─► sidekick.run_sidekick (Engine API container with --volumes-from)
        SignalAction   ─► kill.run_signal       (docker kill -s)
        LogsAction     ─► logs.run_logs         (tail / follow, stdout and stderr apart)
        BackupAction   ─► backup.run_backup     (archive endpoint, streamed tar)
        AuditAction    ─► audit.run_audit       (read-only compliance queries)
        ApproveAction  ─► approve.run_approve   (approvers: list, approve, deny requests)
        HelpAction     ─► help.run_help         (the caller's own grants)

A new type is its model (``policy.models.ActionBase`` with a ``type``
literal: it registers itself) plus its module here (``@runs(Model)`` on the
runner, with ``validate=`` and ``prepare=`` for what it checks before the
allow record). Importing this package checks that every model has a runner.

``channel`` is the client side of every runner (send, input, hang-up) and
taps the recorder; ``bridge`` connects a local child to it, on a PTY or on pipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.actions import approve, audit, backup, help, host, kill, logs, shell, sidekick  # noqa: F401
from gateway.actions.base import RUNNERS, ActionContext, ActionType, Exit, Runner, Traffic, runs
from gateway.policy import models

if TYPE_CHECKING:
    from gateway.confine import Pinned
    from gateway.docker import ContainerInfo


def _type_of(spec: models.ActionBase) -> ActionType:
    found = RUNNERS.get(type(spec))
    if found is None:
        raise LookupError(f"action type {type(spec).__name__} has no runner (actions.base.runs)")
    return found


def runner_for(spec: models.ActionBase) -> Runner:
    """The runner for *spec*'s type."""
    return _type_of(spec).run


def validate(spec: models.ActionBase, args: tuple[str, ...]) -> None:
    """Raise Refusal if the type's own check rejects *args* (before anything runs)."""
    check = _type_of(spec).validate
    if check is not None:
        check(args)


def prepare(spec: models.ActionBase, container: ContainerInfo) -> Pinned | None:
    """The type's step before the allow record with the target resolved (the shell pins it); Refusal."""
    step = _type_of(spec).prepare
    return step(spec, container) if step is not None else None  # type: ignore[arg-type]


_missing = sorted(m.__name__ for m in models.action_models() if m not in RUNNERS)
if _missing:  # pragma: no cover - a type without its module is a build error
    raise ImportError(f"action types without a runner: {_missing}")


__all__ = [
    "ActionContext",
    "ActionType",
    "Exit",
    "Runner",
    "Traffic",
    "prepare",
    "runner_for",
    "runs",
    "validate",
]
