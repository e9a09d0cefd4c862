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

from gateway.policy.compiled import Policy, Target
from gateway.policy.engine import Allow, Deny, DenyCode, Request, decide
from gateway.policy.loader import load_policy

__all__ = ["Allow", "Deny", "DenyCode", "Policy", "Request", "Target", "decide", "load_policy"]
