"""Sizes (50M) and durations (1h) as people write them."""

from __future__ import annotations

import pytest

from gateway.sizes import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "value"), [("50M", 50 << 20), ("1G", 1 << 30), ("512", 512), (7, 7), ("2K", 2048)]
)
def test_sizes(text: object, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "value"), [("30m", 1800), ("1h", 3600), ("2d", 172800), ("45", 45), ("10s", 10)]
)
def test_durations(text: object, value: int) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("bad", ["5X", "-1", "1.5G", "", True])
def test_bad_sizes_say_what_is_expected(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)
