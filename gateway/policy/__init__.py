"""Policy as code: pure, no I/O past the loader.

::

    policies/*.yaml ─► marks.parse_yaml ─► (data, marks)
                             │
                             ▼
                      models.PolicyFile (pydantic, extra="forbid")
                             │  loader: merge files, cross-check keys,
                             ▼  compile globs, every problem at file:line:column
                      compiled.Policy (frozen)
                             │
    engine.Request ─────────►engine.decide() ─► Allow(grant) | Deny(code)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.policy.compiled import Policy, Target
    from gateway.policy.engine import Allow, Deny, DenyCode, Request, decide
    from gateway.policy.loader import load_policy

# Imported on first use: the forced-command door decides without loading
# pydantic or YAML (see gateway.policy.snapshot).
_EXPORTS = {
    "Policy": "compiled",
    "Target": "compiled",
    "Allow": "engine",
    "Deny": "engine",
    "DenyCode": "engine",
    "Request": "engine",
    "decide": "engine",
    "load_policy": "loader",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"gateway.policy.{_EXPORTS[name]}"), name)


__all__ = ["Allow", "Deny", "DenyCode", "Policy", "Request", "Target", "decide", "load_policy"]
