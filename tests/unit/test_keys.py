"""keys/NAME.pub -> principal NAME."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.errors import LoadError
from gateway.keys import load_keys


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def test_several_keys_comments_and_blanks(tmp_path: Path) -> None:
    one, two = _keygen(tmp_path / "k1"), _keygen(tmp_path / "k2")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "betty.pub").write_text(f"# betty's laptop\n{one}\n\n  # and her desktop\n{two}\n")
    ring = load_keys(keys)
    assert ring.principals == {"betty"}
    assert set(ring.by_fingerprint.values()) == {"betty"}
    assert len(ring.by_fingerprint) == 2


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    good = _keygen(tmp_path / "k1")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "dan.pub").write_text(f"{good}\n# comment\nssh-ed25519 not-base64!\n")
    with pytest.raises(LoadError) as info:
        load_keys(keys)
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == (str(keys / "dan.pub"), 3)


def test_same_key_for_two_principals_is_an_error(tmp_path: Path) -> None:
    good = _keygen(tmp_path / "k1")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "a.pub").write_text(good + "\n")
    (keys / "b.pub").write_text(good + "\n")
    with pytest.raises(LoadError, match="already belongs to 'a'"):
        load_keys(keys)


@pytest.mark.parametrize("name", ["Bad", "a b", "x;id", "-dash", "$(id)"])
def test_unsafe_principal_names(tmp_path: Path, name: str) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / f"{name}.pub").write_text("")
    with pytest.raises(LoadError, match="principal name"):
        load_keys(keys)
