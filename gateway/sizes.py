"""Sizes as people write them: bytes, or a number with ``K``, ``M``, ``G`` or ``T`` (powers of 1024)."""

from __future__ import annotations

import re

SIZE_PATTERN = r"^[0-9]+[KMGT]?$"
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


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
