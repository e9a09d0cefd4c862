"""Coverage-guided fuzzing (atheris) of the two parsers that take untrusted text.

    python -m fuzz.targets policy -runs=100000     # the policy loader (YAML -> models)
    python -m fuzz.targets command -runs=100000    # the exec-string parser

The property: the loader returns a Policy or raises LoadError, nothing else;
the parser returns a Command without control characters or raises Refusal.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from gateway.command import has_control, parse_command
    from gateway.errors import LoadError, Refusal
    from gateway.keys import KeyRing
    from gateway.policy_files import load_policy

KEYS = KeyRing(by_fingerprint={}, principals=frozenset({"betty", "dan"}), files={})
SCRATCH = Path(tempfile.mkdtemp(prefix="gateway-fuzz-"))


def policy(data: bytes) -> None:
    """One policy file of fuzzed text."""
    (SCRATCH / "p.yaml").write_bytes(data)
    with contextlib.suppress(LoadError):
        load_policy(SCRATCH, KEYS)


def command(data: bytes) -> None:
    """One exec string."""
    text = data.decode("utf-8", "replace")
    try:
        parsed = parse_command(text)
    except Refusal:
        return
    assert not any(has_control(word) for word in parsed.words)


def main() -> None:
    """``python -m fuzz.targets policy|command [libFuzzer flags]``."""
    target = {"policy": policy, "command": command}[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
