"""Suite-wide hooks: the client interop matrix is printed at the end of the run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the interop matrix (tests/e2e/test_clients.py) when those tests ran."""
    module = sys.modules.get("tests.e2e.test_clients")
    text = module.matrix_text() if module is not None else ""
    if text:
        terminalreporter.section("SSH client interop matrix")
        terminalreporter.write(text)


@pytest.fixture(scope="session")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's example policies/ and keys/, taken once: tests never read the live ones,
    so a policy file added to the checkout (as the README invites) changes no test."""
    base = tmp_path_factory.mktemp("examples")
    for name in ("policies", "keys"):
        shutil.copytree(ROOT / name, base / name)
    return base
