"""The exec string parser: no shell, control characters refused."""

from __future__ import annotations

import os
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.command import Command, has_control, is_legacy_scp, parse_command
from gateway.errors import Refusal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, Command(None)),
        ("", Command(None)),
        ("   ", Command(None)),
        ("web1", Command("web1")),
        ("web1 ps aux", Command("web1", ("ps", "aux"))),
        ("web1 sh -c 'echo $HOME; id'", Command("web1", ("sh", "-c", "echo $HOME; id"))),
        ("web1 echo $(id) `id`", Command("web1", ("echo", "$(id)", "`id`"))),
        ('web1 "a b" c', Command("web1", ("a b", "c"))),
    ],
)
def test_split(text: str | None, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    "text",
    ["web1\nid", "web1\rid", "web1\tid", "web1 \x1b[2J", "web1 \x00", "web1 \x7f", "web1 'open"],
)
def test_refused(text: str) -> None:
    with pytest.raises(Refusal) as info:
        parse_command(text)
    assert "\n" not in info.value.public


def test_too_long_and_too_many() -> None:
    with pytest.raises(Refusal):
        parse_command("web1 " + "a" * 5000)
    with pytest.raises(Refusal):
        parse_command("web1 " + " ".join(["a"] * 300))


@pytest.mark.parametrize(
    ("text", "legacy"),
    [
        ("scp -t /tmp/x", True),
        ("scp -f /etc/passwd", True),
        ("scp -v -t .", True),
        ("scp", False),
        ("web1 scp -t", False),
    ],
)
def test_legacy_scp(text: str, legacy: bool) -> None:
    assert is_legacy_scp(parse_command(text)) is legacy


@settings(max_examples=int(os.environ.get("GATEWAY_HYPOTHESIS_EXAMPLES", "2000")), deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_refused_or_split_without_a_shell(text: str) -> None:
    try:
        parsed = parse_command(text)
    except Refusal as refusal:
        assert "\n" not in refusal.public
        return
    assert not any(has_control(w) for w in parsed.words)
    assert list(parsed.words) == shlex.split(text)
