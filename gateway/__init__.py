"""A restricted SSH gateway for Docker hosts.

The SSH login name is the *action*, the first word of the command is the
*target* container, and a declarative policy decides who may do what::

    keys/NAME.pub ──► keys.KeyRing (fingerprint -> principal)
    policies/*.yaml ──► policy.loader ──► policy.models.Policy (frozen)
                                           │
    ssh client ──► server ──► auth ──► session ──► policy.engine.decide()
                                           │            │
                                           ▼            ▼
                                      audit.AuditLog   actions.REGISTRY[type]
                                      recording.*      (shell, host, ...)
"""

__version__ = "0.1.0"
