"""Sizes and durations as people write them.

A size is bytes, or a number with ``K``, ``M``, ``G`` or ``T`` (powers of
1024); a duration is seconds, or a number with ``s``, ``m``, ``h`` or ``d``.
"""

from __future__ import annotations

import re

SIZE_PATTERN = r"^[0-9]+[KMGT]?$"
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


DURATION_PATTERN = r"^[0-9]+[smhd]?$"
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """``1h`` -> 3600 seconds; an int is taken as seconds; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("a duration is seconds, or a number with s, m, h or d")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text[:40]!r} (expected 30m, 1h, 2d or seconds)")
    number, unit = (text[:-1], text[-1]) if text[-1] in "smhd" else (text, "")
    return int(number) * _SECONDS[unit]


def parse_size(value: object) -> int:
    """``50M`` -> 52428800; an int is taken as it is; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes, or a number with K, M, G or T")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(SIZE_PATTERN, text):
        raise ValueError(
            f"not a size: {text[:40]!r} (expected bytes, or a number with K, M, G or T, as in 50M)"
        )
    number, unit = (text[:-1], text[-1]) if text[-1] in "KMGT" else (text, "")
    return int(number) << _UNITS[unit]
