"""Prometheus metrics and a health check on an opt-in local port (``serve --metrics``).

Labels have bounded cardinality: the action label is an action the policy
defines (anything else is ``other``) and the outcome is one of a few words;
no principal or target names ever become labels.

With several workers (``serve --workers``), every process counts into
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by
``workers.run`` before this module is imported) and ``/metrics`` adds them
up, so the figures are the gateway's, not the primary process's.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app, multiprocess

from gateway.events import RefusalKind

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "gateway_requests", "Session requests by action and outcome.", ["action", "outcome"], registry=REGISTRY
)
SESSIONS = Gauge(
    "gateway_sessions_active", "Sessions running now.", registry=REGISTRY, multiprocess_mode="livesum"
)
STATE_FREE = Gauge(
    "gateway_state_free_bytes",
    "Free bytes on the state filesystem (recordings, audit).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
FLEET_MISMATCH = Gauge(
    "gateway_fleet_policy_mismatch",
    "Fleet hosts whose policy digest differs from the majority's (as of this host's last heartbeat).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
SESSION_SECONDS = Histogram("gateway_session_seconds", "Session durations.", ["action"], registry=REGISTRY)
CONNECTIONS = Counter("gateway_connections", "Connections accepted.", registry=REGISTRY)
WORKER_RESTARTS = Counter(
    "gateway_worker_restarts", "Worker processes that died and were replaced.", registry=REGISTRY
)
AUTH_FAILURES = Counter("gateway_auth_failures", "Rejected keys and certificates.", registry=REGISTRY)
TURNED_AWAY = Counter(
    "gateway_connections_turned_away",
    "Connections refused before authentication, by reason.",
    ["reason"],
    registry=REGISTRY,
)
SHIP_BACKLOG = Gauge(
    "gateway_audit_ship_backlog",
    "Audit records written but not yet shipped.",
    ["destination"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
SHIP_LAST_SEQ = Gauge(
    "gateway_audit_ship_last_seq",
    "The last audit seq shipped.",
    ["destination"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
SHIP_ERRORS = Counter(
    "gateway_audit_ship_errors",
    "Failed connects and sends to a collector.",
    ["destination"],
    registry=REGISTRY,
)
SHIPPED = Counter(
    "gateway_audit_shipped", "Audit lines shipped (resends included).", ["destination"], registry=REGISTRY
)
REFUSALS = Counter("gateway_refusals", "Refused protocol requests by kind.", ["kind"], registry=REGISTRY)

KINDS = frozenset(RefusalKind)


def turn_away_label(reason: str) -> str:
    """A turned-away connection's reason as a small, fixed label set."""
    for word, label in (
        ("penalised", "penalty"),
        ("failures", "throttled"),
        ("from", "per-source"),
        ("unauthenticated", "unauthenticated"),
        ("shutting", "draining"),
    ):
        if word in reason:
            return label
    return "other"


def kind_label(kind: str) -> str:
    """A refusal kind from the catalogue, or ``other``."""
    return str(kind) if kind in KINDS else "other"


def mark_dead(pid: int) -> None:
    """A worker is gone: its live gauges leave the sum (prometheus_client's multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposed() -> CollectorRegistry:
    """What ``/metrics`` shows: this process's registry, or every worker's files added up."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


class _Quiet(WSGIRequestHandler):
    def log_message(self, *_args: Any) -> None:
        """No access log on stderr."""


Probe = Callable[[], dict[str, Any]]


def _json(start_response: Callable[..., Any], ok: bool, body: dict[str, Any]) -> Iterable[bytes]:
    start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class MetricsServer:
    """On a thread of their own: ``/metrics`` (Prometheus), ``/healthz`` (liveness: the process
    answers) and ``/readyz`` (readiness: a session could run now; 503 when a check fails).
    Any other path is 404."""

    def __init__(self, host: str, port: int, health: Probe, ready: Probe) -> None:
        metrics = make_wsgi_app(exposed())

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO")
            if path == "/healthz":
                return _json(start_response, True, health())
            if path == "/readyz":
                state = ready()
                return _json(start_response, bool(state.get("ready")), state)
            if path == "/metrics":
                return metrics(environ, start_response)  # type: ignore[no-any-return]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: /metrics, /healthz or /readyz\n"]

        self._server: WSGIServer = make_server(host, port, app, handler_class=_Quiet)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
