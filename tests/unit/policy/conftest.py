"""Helpers for policy tests: write files, load, collect problems."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import LoadError
from gateway.keys import KeyRing
from gateway.policy import Policy
from gateway.policy_files import load_policy

Write = Callable[..., Path]


@pytest.fixture
def keyring() -> KeyRing:
    """A key ring with principals betty, dan and eve (no real keys needed to check grants)."""
    return KeyRing(by_fingerprint={}, principals=frozenset({"betty", "dan", "eve"}), files={})


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """An empty policies/ directory."""
    path = tmp_path / "policies"
    path.mkdir()
    return path


@pytest.fixture
def write(policy_dir: Path) -> Write:
    """Write a dedented YAML file into policies/."""

    def _write(name: str, text: str) -> Path:
        path = policy_dir / name
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def problems(policy_dir: Path, keyring: KeyRing) -> Callable[[], list[str]]:
    """Load and return every problem as ``file:line:column: message`` with the directory cut."""

    def _problems() -> list[str]:
        with pytest.raises(LoadError) as info:
            load_policy(policy_dir, keyring)
        return [str(p).replace(f"{policy_dir}/", "") for p in info.value.problems]

    return _problems


@pytest.fixture
def load(policy_dir: Path, keyring: KeyRing) -> Callable[[], Policy]:
    """Load the directory, which must be valid."""
    return lambda: load_policy(policy_dir, keyring)
