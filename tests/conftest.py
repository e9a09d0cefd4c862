"""Suite-wide hooks: the client interop matrix is printed at the end of the run."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the interop matrix (tests/e2e/test_clients.py) when those tests ran."""
    module = sys.modules.get("tests.e2e.test_clients")
    text = module.matrix_text() if module is not None else ""
    if text:
        terminalreporter.section("SSH client interop matrix")
        terminalreporter.write(text)
