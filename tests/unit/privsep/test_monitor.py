"""What the monitor reads from a worker: the signed userauth request, the environment, nothing else."""

from __future__ import annotations

import json

import pytest
from asyncssh.packet import Boolean, Byte, String

from gateway.privsep.monitor import _accepted, _userauth


def _request(user: bytes = b"debug+web1", service: bytes = b"ssh-connection", method: bytes = b"publickey",
             signed: bool = True, extra: bytes = b"") -> bytes:  # fmt: skip
    return (Byte(50) + String(user) + String(service) + String(method) + Boolean(signed)
            + String(b"ssh-ed25519") + String(b"KEY") + extra)  # fmt: skip


def test_the_login_and_key_come_from_the_signed_request() -> None:
    assert _userauth(_request()) == ("debug+web1", b"KEY")


@pytest.mark.parametrize(
    "bad",
    [
        _request(service=b"other"),
        _request(method=b"password"),
        _request(signed=False),
        _request(extra=b"trailing"),
        b"\x33" + _request()[1:],
        b"",
    ],
)
def test_anything_else_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        _userauth(bad)


def test_the_environment_is_checked_again() -> None:
    env = {"LANG": "C.UTF-8", "LC_ALL": "$(reboot)", "LD_PRELOAD": "/x.so", "GATEWAY_REASON": "INC-42 disk"}
    assert _accepted(json.dumps(env)) == {"LANG": "C.UTF-8", "GATEWAY_REASON": "INC-42 disk"}
    assert _accepted("[1, 2]") == {} == _accepted("not json") == _accepted("")
