"""The project's one error tree.

::

    GatewayError
    ├── ConfigError            settings, state directory, host key
    ├── LoadError              policies/ or keys/ could not be loaded (carries Problems)
    ├── AuditUnavailable       the audit log cannot be written: fail closed
    ├── DockerError            the Engine API boundary
    │   ├── DockerUnavailable  no engine answers
    │   ├── ContainerNotFound  no container by that name
    │   └── ImageNotFound      a sidekick's image is not on the host (never pulled)
    └── Refusal                a request is refused; `public` is the one line the client sees

Third-party errors (asyncssh, aiodocker, YAML, pydantic) are caught where they
enter and re-raised as one of these, with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.events import RefusalKind


class GatewayError(Exception):
    """The root of every error this package raises on purpose."""


class ConfigError(GatewayError):
    """Settings, the state directory or the host key are unusable."""


class Problem(NamedTuple):
    """One problem in a policy or key file, located at ``file:line:column``."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:  # about a whole directory: there is no position to give
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class LoadError(GatewayError):
    """Policies or keys failed to load; every problem found is listed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class AuditUnavailable(GatewayError):
    """The audit record could not be written durably; nothing may run."""


class DockerError(GatewayError):
    """An Engine API call failed."""


class DockerUnavailable(DockerError):
    """The Docker engine does not answer."""


class ContainerNotFound(DockerError):
    """No container has that name."""


class ImageNotFound(DockerError):
    """The image is not on this host; the gateway never pulls."""


class Refusal(GatewayError):
    """A refused request.

    ``public`` is the single line the SSH client sees on stderr; ``reason`` is
    the detail for the audit log; ``kind`` names what was refused.
    """

    def __init__(self, public: str, *, reason: str, kind: RefusalKind) -> None:
        super().__init__(reason)
        self.public = public
        self.reason = reason
        self.kind = kind
