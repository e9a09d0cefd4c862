"""Policy and key files must be regular files: everything else is named and never followed or read."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from gateway.safefile import NotRegular, quoted, read_regular


def test_a_regular_file_is_read_up_to_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"x" * 100)
    assert read_regular(path, 10) == b"x" * 11  # one more than the bound: the caller sees it is too large


@pytest.mark.parametrize("kind", ["a symbolic link", "a FIFO", "a socket", "a directory"])
def test_everything_else_is_refused_by_name(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "zz.yaml"
    held = None
    if kind == "a symbolic link":
        path.symlink_to("/etc/shadow")
    elif kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "a socket":
        held = socket.socket(socket.AF_UNIX)
        held.bind(str(path))
    else:
        path.mkdir()
    try:
        with pytest.raises(NotRegular) as raised:
            read_regular(path, 1 << 20)
        assert str(raised.value) == f"not a regular file ({kind})"
    finally:
        if held is not None:
            held.close()


def test_quotes_are_short() -> None:
    assert quoted("x" * 100) == "x" * 40 + "..."
    assert quoted("short") == "short"
