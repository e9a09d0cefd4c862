"""Operational logs (structlog, stdout, JSON or console; journald-friendly).

Lifecycle only: start, stop, reloads, drains, errors. Who did what is the
audit log's job, in its own files; the two are never mixed.
"""

from __future__ import annotations

import sys
from typing import Any

import structlog


def configure(fmt: str) -> None:
    """Render to stdout as JSON lines, or for a human at a console."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )


def log() -> Any:
    """The operational logger."""
    return structlog.get_logger("gateway")
