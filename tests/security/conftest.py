"""Security tests: each attack against the real gateway, the real engine and real clients.

The end-to-end fixtures (containers, keys, the shared gateway) are reused as they are.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (  # noqa: F401 - fixtures, found by pytest by name
    Containers,
    Gateway,
    containers,
    docker_ready,
    gateway,
    gateway_cli,
    keys,
    start_gateway,
    stop_running,
    web1,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_gateway(gateway: Gateway, tmp_path: Path) -> Iterator[Any]:  # noqa: F811 - the shared fixture
    """Start a private gateway (own state, a copy of the policy) with extra options and env."""
    started: list[Gateway] = []

    def _launch(*extra: str, env: dict[str, str] | None = None, policy: str | None = None) -> Gateway:
        policies = tmp_path / f"policies{len(started)}"
        shutil.copytree(gateway.policies, policies)
        if policy is not None:
            (policies / "extra.yaml").write_text(policy)
        gw = start_gateway(
            tmp_path / f"state{len(started)}", policies, gateway.keydir, gateway.keys, env=env, extra=extra
        )
        started.append(gw)
        return gw

    yield _launch
    stop_running(started)
