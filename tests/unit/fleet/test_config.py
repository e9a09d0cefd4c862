"""policies/fleet.yaml: checked like a policy file, with file:line:column problems."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.errors import ConfigError, LoadError
from gateway.fleet.config import FleetConfig, check_self, load

KEY = asyncssh.generate_private_key("ssh-ed25519")
PUBLIC = KEY.export_public_key().decode().strip()


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def test_a_good_file_names_its_hosts_and_limits(tmp_path: Path) -> None:
    path = _file(
        tmp_path, f'version: 1\nfleet:\n  hosts:\n    - {{name: a, key: "{PUBLIC}"}}\n  max_sessions: 9\n'
    )
    loaded = load(path)
    assert loaded.host("a") is not None and loaded.fleet.max_sessions == 9
    check_self(loaded, "a", KEY, path)
    with pytest.raises(ConfigError, match="not among the hosts"):
        check_self(loaded, "b", KEY, path)
    with pytest.raises(ConfigError, match="another key"):
        check_self(loaded, "a", asyncssh.generate_private_key("ssh-ed25519"), path)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (
            'version: 1\nfleet:\n  hosts:\n    - {name: a, key: "ssh-ed25519 nope"}\n',
            ":4:",
            "not an OpenSSH public key",
        ),
        ("version: 1\nfleet:\n  hosts: []\n", ":3:", "fleet.hosts"),
        ("version: 1\nfleet:\n  hosts:\n    - {name: a, key: K}\n  max_session: 3\n", ":5:", "unknown key"),
        ("version: 2\nfleet: {hosts: []}\n", ":1:", "version"),
    ],
)
def test_a_wrong_file_is_refused_at_its_line_and_column(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    path = _file(tmp_path, text.replace("K", f'"{PUBLIC}"'))
    with pytest.raises(LoadError) as caught:
        load(path)
    message = str(caught.value)
    assert f"{path}{where}" in message and what in message, message


def test_a_host_listed_twice_is_refused(tmp_path: Path) -> None:
    host = f'    - {{name: a, key: "{PUBLIC}"}}\n'
    with pytest.raises(LoadError, match="listed twice"):
        load(_file(tmp_path, "version: 1\nfleet:\n  hosts:\n" + host + host))


def test_a_bad_change_keeps_the_file_in_force(tmp_path: Path) -> None:
    path = _file(tmp_path, f'version: 1\nfleet:\n  hosts:\n    - {{name: a, key: "{PUBLIC}"}}\n')
    config = FleetConfig(path)
    path.write_text("version: 1\nfleet: [oops\n")
    assert config.get().host("a") is not None
    path.write_text(f'version: 1\nfleet:\n  hosts:\n    - {{name: b, key: "{PUBLIC}"}}\n')
    assert config.get().host("b") is not None and config.get().host("a") is None


def test_policy_check_checks_fleet_yaml_too(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "keys").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(
        "version: 1\nactions:\n  m: {type: host, command: [free]}\n"
    )
    (tmp_path / "policies" / "fleet.yaml").write_text("version: 1\nfleet:\n  hosts:\n    - {name: a}\n")
    args = ["policy", "check", "--policies", str(tmp_path / "policies"), "--keys", str(tmp_path / "keys")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "fleet.yaml:4:" in result.output and "'key'" in result.output
    (tmp_path / "policies" / "fleet.yaml").write_text(
        f'version: 1\nfleet:\n  hosts: [{{name: a, key: "{PUBLIC}"}}]\n'
    )
    assert CliRunner().invoke(main, args).exit_code == 0
