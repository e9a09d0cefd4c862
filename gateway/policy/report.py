"""``policy show``: what each principal may do, as a plain table."""

from __future__ import annotations

from gateway.policy.compiled import Policy

COLUMNS = ("principal", "action", "type", "targets", "expires", "from", "conditions", "grant")


def _rows(policy: Policy, only: str | None) -> list[tuple[str, ...]]:
    rows = []
    for grant in policy.grants:
        for principal in sorted(grant.principals):
            if only is not None and principal != only:
                continue
            for action in sorted(grant.actions):
                rows.append(
                    (
                        principal,
                        action,
                        policy.actions[action].kind,
                        ", ".join(m.pattern for m in grant.targets) or "-",
                        grant.expires.isoformat() if grant.expires else "-",
                        ", ".join(str(n) for n in grant.sources) if grant.sources else "-",
                        grant.conditions.describe() if grant.conditions else "-",
                        grant.where,
                    )
                )
    return sorted(rows)


def grants_rows(policy: Policy, only: str | None = None) -> list[dict[str, str]]:
    """The same rows as dicts (``policy show --json``)."""
    return [dict(zip(COLUMNS, row, strict=True)) for row in _rows(policy, only)]


def grants_table(policy: Policy, only: str | None = None) -> str:
    """One row per (principal, action, grant)."""
    rows = [COLUMNS, *_rows(policy, only)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return (
        "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows) + "\n"
    )
