"""Sizes and durations as people write them.

A size is bytes, or a number with ``K``, ``M``, ``G`` or ``T`` (powers of
1024); a duration is seconds, or a number with ``s``, ``m``, ``h`` or ``d``.
"""

from __future__ import annotations

import re

SIZE_PATTERN = r"^[0-9]+[KMGT]?$"
DURATION_PATTERN = r"^[0-9]+[smhd]?$"
_BYTES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse(value: object, pattern: str, units: dict[str, int], what: str, expected: str) -> int:
    """A whole number, or one with a unit of *units*; ValueError naming *what* was *expected*."""
    if isinstance(value, bool):
        raise ValueError(f"not a {what} (expected {expected})")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(pattern, text):
        raise ValueError(f"not a {what}: {text[:40]!r} (expected {expected})")
    number, unit = (text[:-1], text[-1]) if text[-1] in units else (text, "")
    return int(number) * units[unit]


def parse_duration(value: object) -> int:
    """``1h`` -> 3600 seconds; an int is taken as seconds; ValueError for anything else."""
    return _parse(value, DURATION_PATTERN, _SECONDS, "duration", "30m, 1h, 2d or seconds")


def parse_size(value: object) -> int:
    """``50M`` -> 52428800; an int is taken as it is; ValueError for anything else."""
    return _parse(value, SIZE_PATTERN, _BYTES, "size", "bytes, or a number with K, M, G or T, as in 50M")
