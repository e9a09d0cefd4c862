"""The exec string parser: no shell, control characters refused."""

from __future__ import annotations

import pytest

from gateway.command import Command, is_legacy_scp, parse_command
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
