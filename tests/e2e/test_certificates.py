"""OpenSSH user certificates (ssh-keygen -s): the certificate names the principal, not the login."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SSH_OPTS, Gateway, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def _sign(ca: Path, key: Path, principal: str, validity: str = "-5m:+1h", *options: str) -> None:
    argv = [
        "ssh-keygen",
        "-q",
        "-s",
        str(ca),
        "-I",
        f"test-{principal}",
        "-n",
        principal,
        "-V",
        validity,
        *options,
    ]
    subprocess.run([*argv, str(key.with_suffix(".pub"))], check=True, capture_output=True)


@pytest.fixture(scope="module")
def ca_gateway(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Path]]:
    """A gateway trusting one CA; returns it and the CA's directory."""
    base = tmp_path_factory.mktemp("ca")
    ca = _keygen(base / "ca")
    gw = start_gateway(
        base / "state",
        gateway.policies,
        gateway.keydir,
        gateway.keys,
        extra=("--trusted-user-ca-keys", str(ca.with_suffix(".pub"))),
    )
    yield gw, base
    assert stop_gateway(gw) == 0


def _ssh(gw: Gateway, key: Path, action: str, *words: str) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", *SSH_OPTS, "-p", str(gw.port), "-i", str(key), "-o", f"CertificateFile={key}-cert.pub"]
    return subprocess.run(
        [*argv, f"{action}@127.0.0.1", *words], capture_output=True, text=True, timeout=30, check=False
    )


def test_valid_certificate_authenticates_as_its_principal(ca_gateway: tuple[Gateway, Path]) -> None:
    gw, base = ca_gateway
    key = _keygen(base / "dan-cert-key")
    _sign(base / "ca", key, "dan")
    mark = gw.mark()
    result = _ssh(gw, key, "memory")
    assert result.returncode == 0, result.stderr
    accept = next(
        e for e in gw.since(mark, lambda e: e["event"] == "auth.accept") if e["event"] == "auth.accept"
    )
    assert accept["principal"] == "dan"


@pytest.mark.parametrize(
    ("name", "principal", "validity", "wrong_ca"),
    [
        ("expired", "dan", "-2h:-1h", False),
        ("wrong-ca", "dan", "-5m:+1h", True),
        ("unknown", "mallory", "-5m:+1h", False),
    ],
)
def test_bad_certificates_are_refused(
    ca_gateway: tuple[Gateway, Path], name: str, principal: str, validity: str, wrong_ca: bool
) -> None:
    gw, base = ca_gateway
    key = _keygen(base / f"{name}-key")
    ca = _keygen(base / f"{name}-other-ca") if wrong_ca else base / "ca"
    _sign(ca, key, principal, validity)
    mark = gw.mark()
    result = _ssh(gw, key, "memory")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr
    assert any(e["event"] == "auth.reject" for e in gw.since(mark, lambda e: e["event"] == "auth.reject"))


def test_force_command_and_source_address_are_honoured(ca_gateway: tuple[Gateway, Path], web1: str) -> None:
    gw, base = ca_gateway
    forced = _keygen(base / "forced-key")
    _sign(base / "ca", forced, "betty", "-5m:+1h", "-O", f"force-command={web1} hostname")
    result = _ssh(gw, forced, "debug", web1, "id")
    assert (result.returncode, result.stdout) == (0, "web1\n")
    elsewhere = _keygen(base / "elsewhere-key")
    _sign(base / "ca", elsewhere, "dan", "-5m:+1h", "-O", "source-address=10.9.9.9/32")
    assert _ssh(gw, elsewhere, "memory").returncode == 255
