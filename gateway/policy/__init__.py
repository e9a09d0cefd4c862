"""Policy as code: pure, no I/O (``gateway.policy_files`` reads the files).

::

    policy texts ─► marks.parse_yaml ─► (data, marks)
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

# Imported on first use: commands that need no decision do not load pydantic or YAML.
_EXPORTS = {
    "Policy": "compiled",
    "Target": "compiled",
    "Allow": "engine",
    "Deny": "engine",
    "DenyCode": "engine",
    "Request": "engine",
    "decide": "engine",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"gateway.policy.{_EXPORTS[name]}"), name)


__all__ = ["Allow", "Deny", "DenyCode", "Policy", "Request", "Target", "decide"]
