"""The lean path's guard: it serves a connection only on the asyncssh it was written for, every name there."""

from __future__ import annotations

from types import SimpleNamespace

import asyncssh
import pytest

from gateway import sshfast


def _conn(missing: str = "") -> SimpleNamespace:
    return SimpleNamespace(**{name: None for name in sshfast.CONNECTION_NAMES if name != missing})


def test_every_name_on_the_pinned_version() -> None:
    assert asyncssh.__version__ == sshfast.LEAN_VERSION
    assert sshfast.available(_conn())


def test_a_missing_name_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_max_recv_pktlen` is what 2.24.0 lacked: asyncssh's own path then, never a broken connection."""
    monkeypatch.setattr(sshfast, "_warned", [])
    assert not sshfast.available(_conn(missing="_max_recv_pktlen"))
    assert sshfast._warned == [asyncssh.__version__]  # one warning per process
    assert not sshfast.available(_conn(missing="_max_recv_pktlen"))
    assert len(sshfast._warned) == 1


def test_another_version_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sshfast, "_warned", [])
    monkeypatch.setattr(asyncssh, "__version__", "2.24.0")
    assert not sshfast.available(_conn())
