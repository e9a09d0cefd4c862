"""A new action type is its model plus its module: nothing else in gateway/ is edited.

The model and the runner are defined here, in the test (inside a fixture, so
that the type exists only while this test runs); the loader, the policy,
the session, the audit records and the key lines all take it as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from gateway.actions.base import RUNNERS, ActionContext, Exit, runs
from gateway.actions.channel import send
from gateway.authorized_keys import options
from gateway.errors import LoadError
from gateway.events import Event
from gateway.policy import models
from gateway.runtime import Runtime
from gateway.session import Session
from gateway.settings import Settings
from tests.unit.session.test_core import FakeChannel, FakeConnection, FakeEngine, _records


@pytest.fixture
def echo_type() -> Iterator[type[models.ActionBase]]:
    class EchoAction(models.ActionBase):
        """``type: echo``: says its word back (a test-only type)."""

        needs_target: ClassVar[bool] = False
        recorded: ClassVar[bool] = False
        takes_query: ClassVar[bool] = True  # every word is an argument
        type: Literal["echo"]
        word: str = "hello"
        allow_args: bool = True

        @property
        def wants_pty(self) -> bool:
            return True

    @runs(EchoAction)
    async def run_echo(ctx: ActionContext) -> Exit:
        await send(ctx, f"{ctx.spec.word} {' '.join(ctx.args)}\n".encode())  # type: ignore[attr-defined]
        return Exit(0)

    yield EchoAction
    del models.ACTION_REGISTRY["echo"], RUNNERS[EchoAction]
    models._rebuild_policy_file()


def _runtime(tmp_path: Path, policy: str) -> Runtime:
    for name in ("policies", "keys"):
        (tmp_path / name).mkdir(exist_ok=True)
    (tmp_path / "policies" / "p.yaml").write_text(policy)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpu5dLFaLI5GjOYd4oZ9D5e3Z/0m4v0fNvV6t5cHnGs betty"
    (tmp_path / "keys" / "betty.pub").write_text(key + "\n")
    settings = Settings(policies=tmp_path / "policies", keys=tmp_path / "keys", state=tmp_path / "state")
    runtime = Runtime.start(settings)
    runtime.engine = FakeEngine()  # type: ignore[assignment]
    return runtime


POLICY = """\
version: 1
actions:
  say: {type: echo, word: bonjour}
grants:
  - principals: [betty]
    actions: [say]
"""


def test_a_test_only_type_runs_end_to_end(echo_type: Any, tmp_path: Path) -> None:
    rt = _runtime(tmp_path, POLICY)
    assert isinstance(rt.policy.actions["say"], echo_type)
    channel = FakeChannel("le monde")
    asyncio.run(Session(FakeConnection(rt, "betty", "say"), channel, 1).run())
    assert (channel.status, bytes(channel.stdout.data)) == (0, b"bonjour le monde\n"), channel.stderr.data
    events = [r["event"] for r in _records(rt)]
    assert events[-3:] == [Event.REQUEST_ALLOW, Event.SESSION_START, Event.SESSION_END]
    assert "pty" in options(rt.policy, "betty", "x").split(",")  # what the type says about itself
    rt.audit.close()


def test_its_model_checks_the_policy_with_file_line_column(echo_type: Any, tmp_path: Path) -> None:
    with pytest.raises(LoadError) as caught:
        _runtime(tmp_path, POLICY.replace("word: bonjour", "wrod: bonjour"))
    assert "p.yaml:3:" in str(caught.value) and "wrod" in str(caught.value)


def test_without_the_type_the_policy_names_the_types_there_are(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as caught:
        _runtime(tmp_path, POLICY)
    assert "echo" in str(caught.value) and "shell" in str(caught.value)
