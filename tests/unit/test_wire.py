"""The door socket's wire format: any text crosses unchanged; garbage is refused, not crashed on."""

from __future__ import annotations

import pytest

from gateway.dispatch import wire

TEXTS = ["", "debug web1 sh -c 'echo \"a b\"'", "line\nbreak", "ünïcödé", "\udcff", "12:x,", ":" * 20]


def test_round_trip() -> None:
    message = wire.encode(*TEXTS)
    assert wire.decode(message + b"rest") == (TEXTS, b"rest")


def test_partial_messages_wait_for_more() -> None:
    message = wire.encode("session", "betty")
    for cut in range(len(message)):
        assert wire.decode(message[:cut]) is None


@pytest.mark.parametrize("garbage", [b"x:abc,\n", b"3:abcd\n", b"99999999999:", b"-1:,\n", b"1" * 20])
def test_garbage_raises_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        wire.decode(garbage)
