"""``session.door``'s own decisions, on the repository's example policy and keys."""

from __future__ import annotations

from pathlib import Path

from gateway.keys import load_keys
from gateway.policy_files import load_policy
from gateway.session.door import may_enter, split_login

ROOT = Path(__file__).resolve().parents[3]


def test_which_logins_ready_the_cgroup_lock() -> None:
    """Only a login that may start a container shell (``via: nsenter``) readies it (confine.warm)."""
    policy = load_policy(ROOT / "policies", load_keys(ROOT / "keys"))
    assert may_enter(policy, "betty", "debug")
    assert not may_enter(policy, "betty", "memory")  # a host action
    assert not may_enter(policy, "betty", "nosuch")
    assert may_enter(policy, "dan")  # sshd's key lookup: no action named yet, debug granted
    assert not may_enter(policy, "charlotte")  # audit only
    assert not may_enter(policy, "nobody")
    assert split_login("debug+web1") == ("debug", "web1")
