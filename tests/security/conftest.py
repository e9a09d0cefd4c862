"""Security tests: each attack against the real gateway, the real engine and real clients.

The end-to-end fixtures (containers, keys, the shared gateway) are reused as they are.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (  # noqa: F401 - fixtures, found by pytest by name
    Containers,
    Gateway,
    containers,
    docker_ready,
    gateway,
    gateway_cli,
    keys,
    own_gateway,
    start_gateway,
    stop_running,
    web1,
)

pytestmark = pytest.mark.e2e
