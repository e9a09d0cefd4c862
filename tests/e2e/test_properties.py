"""Hostile input, property-based: nothing runs outside the grants, every refusal is an audit event.

Hypothesis drives the real gateway over real connections with generated login
names, exec strings, arguments, env requests and terminal types and sizes.
GATEWAY_HYPOTHESIS_EXAMPLES sets the number of examples (long mode: 10000).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.keys import load_keys
from gateway.policy import Allow, Request, Target, decide
from gateway.policy_files import load_policy
from tests.e2e.conftest import Gateway

pytestmark = pytest.mark.e2e
EXAMPLES = int(os.environ.get("GATEWAY_HYPOTHESIS_EXAMPLES", "200"))

WORDS = [
    "echo",
    "true",
    "false",
    "id",
    "hostname",
    "$(id)",
    "`id`",
    ";",
    "|",
    "&&",
    "../",
    "-rf",
    "'",
    '"',
    "\\",
    "*",
    "~",
]
words = st.lists(st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=8)), max_size=4)
actions = st.one_of(
    st.sampled_from(["debug", "console", "memory", "hello", "audit", "restart", "nosuch"]),
    st.text(min_size=1, max_size=20),
)
keys = st.sampled_from(["betty", "dan", "eve", "charlotte"])
terms = st.one_of(st.none(), st.sampled_from(["xterm", "vt100"]), st.text(max_size=80))
sizes = st.tuples(st.integers(0, 5000), st.integers(0, 5000))
envs = st.dictionaries(
    st.sampled_from(["LD_PRELOAD", "PATH", "BASH_ENV", "LANG", "X"]), st.text(max_size=20), max_size=2
)


def _target_words(web1: str) -> Any:
    return st.one_of(
        st.sampled_from([web1, "nosuch", f"{web1};id", "$(id)", "../etc", ""]), st.text(max_size=12)
    )


_POLICY: dict[str, Any] = {}


def _policy(gateway: Gateway) -> Any:
    if "p" not in _POLICY:
        _POLICY["p"] = load_policy(gateway.policies, load_keys(gateway.keydir))
    return _POLICY["p"]


async def _attempt(
    gw: Gateway,
    key: str,
    action: str,
    command: str,
    term: str | None,
    size: tuple[int, int],
    env: dict[str, str],
) -> asyncssh.SSHCompletedProcess | bool | None:
    private = asyncssh.read_private_key(str(gw.keys[key]))
    try:
        async with asyncssh.connect(
            "127.0.0.1", gw.port, username=action, client_keys=[private], known_hosts=None, agent_path=None
        ) as conn:
            extra: dict[str, Any] = {"term_type": term, "term_size": size} if term else {}
            return await asyncio.wait_for(conn.run(command or None, input="", env=env, **extra), 20)
    except (asyncssh.Error, OSError, UnicodeError):
        return None  # refused at the protocol level
    except ValueError:
        return False  # the client itself will not send this login name: nothing reached the gateway


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_nothing_runs_outside_the_grants(gateway: Gateway, web1: str, data: st.DataObject) -> None:
    key, action = data.draw(keys), data.draw(actions)
    target, args = data.draw(_target_words(web1)), data.draw(words)
    command = " ".join(w for w in [target, *args] if w)
    term, size, env = data.draw(terms), data.draw(sizes), data.draw(envs)
    mark = gateway.mark()
    result = asyncio.run(_attempt(gateway, key, action, command, term, size, env))
    if result is False:
        return
    events = gateway.since(mark, lambda e: e["event"] == "connection.close", wait=3)
    allowed = [e for e in events if e["event"] == "request.allow"]
    started = [e for e in events if e["event"] == "session.start"]
    assert len(started) <= len(allowed)
    policy = _policy(gateway)
    for allow in allowed:
        request = Request(
            allow["principal"],
            allow["action"],
            Target(allow["target"]) if allow.get("target") else None,
            tuple(allow.get("args", ())),
            source="127.0.0.1",
        )
        assert isinstance(decide(policy, request), Allow), allow
        assert allow["principal"] == key
    if (
        isinstance(result, asyncssh.SSHCompletedProcess)
        and result.exit_status == 1
        and str(result.stderr).startswith("gateway:")
    ):
        assert any(e["event"] == "request.deny" for e in events), (action, command, result.stderr)
    assert not any(e.get("kind") == "env" and e.get("name") not in env for e in events)
