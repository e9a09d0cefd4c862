"""Run a command under a systemd unit's process sandbox, without systemd: ``python3 unit_sandbox.py UNIT -- ARGV``.

The tests have no service manager (PID 1 is not systemd), so the shipped unit's ExecStart runs under this
instead, built from the unit file itself and systemd's own tables:

- ``NoNewPrivileges=yes``: ``PR_SET_NO_NEW_PRIVS``;
- ``CapabilityBoundingSet=``: every other capability dropped from the bounding set (names from
  ``setpriv --list-caps``);
- ``SystemCallFilter=`` lines, in order (``~`` removes, the first line sets the allow-list), each
  ``@group`` expanded by ``systemd-analyze syscall-filter``, answered with ``SystemCallErrorNumber=``;
  ``SystemCallArchitectures=native``: libseccomp's native architecture only;
- ``RestrictNamespaces=yes``: ``setns`` refused, ``clone`` and ``unshare`` with any ``CLONE_NEW*`` flag
  refused, ``clone3`` answered ENOSYS (as systemd does, so that libc falls back to ``clone``);
- ``RestrictAddressFamilies=``: ``socket()`` of any other family answered EAFNOSUPPORT.

Filters are loaded as systemd loads them, one per setting, with libseccomp (Debian's python3-seccomp), so it
runs under /usr/bin/python3. Not reproduced: the mount namespace (ProtectSystem=, PrivateTmp=, ...),
LockPersonality=, RestrictRealtime=, RestrictSUIDSGID=, ProtectClock= and the other settings whose
syscalls the allow-list already refuses. ``+`` lines (ExecStartPre=+) run outside all of it, as in systemd.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import seccomp

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
CLONE_NEW = {
    "cgroup": 0x02000000,
    "ipc": 0x08000000,
    "mnt": 0x00020000,
    "net": 0x40000000,
    "pid": 0x20000000,
    "user": 0x10000000,
    "uts": 0x04000000,
}
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}
AF_MAX = 46


def settings(unit_text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, each key's values in order."""
    found: dict[str, list[str]] = {}
    for line in unit_text.replace("\\\n", " ").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@cache
def group(name: str) -> frozenset[str]:
    """A ``@group``'s system calls, nested groups expanded (systemd's own table)."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True
    )
    calls: set[str] = set()
    for line in out.stdout.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            calls |= group(word) if word.startswith("@") else {word}
    return frozenset(calls)


def allowed(lines: list[str]) -> set[str]:
    """The allow-list the ``SystemCallFilter=`` lines leave."""
    allow: set[str] = set()
    for line in lines:
        deny = line.startswith("~")
        calls: set[str] = set()
        for word in line.lstrip("~").split():
            calls |= group(word) if word.startswith("@") else {word}
        allow = allow - calls if deny else allow | calls
    return allow


def _resolvable(name: str) -> bool:
    try:
        seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    except (ValueError, RuntimeError):
        return False
    return True


def call_filter(unit: dict[str, list[str]]) -> seccomp.SyscallFilter | None:
    lines = unit.get("SystemCallFilter", [])
    if not lines:
        return None
    number = unit.get("SystemCallErrorNumber", ["EPERM"])[-1]
    refused = seccomp.ERRNO(getattr(errno, number)) if number != "kill" else seccomp.KILL_PROCESS
    made = seccomp.SyscallFilter(defaction=refused)
    for name in sorted(allowed(lines)):
        if _resolvable(name):
            with contextlib.suppress(
                RuntimeError
            ):  # another architecture's call (arm_fadvise64_64): skipped,
                made.add_rule(seccomp.ALLOW, name)  # as systemd skips it
    return made


def namespace_filter() -> seccomp.SyscallFilter:
    made = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    made.add_rule(seccomp.ERRNO(errno.EPERM), "setns")
    made.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NEW.values():
        made.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        made.add_rule(seccomp.ERRNO(errno.EPERM), "unshare", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    return made


def family_filter(names: list[str]) -> seccomp.SyscallFilter:
    keep = {FAMILIES[name] for name in names}
    made = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for family in range(AF_MAX):
        if family not in keep:
            made.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
    made.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.GE, AF_MAX))
    return made


def drop_bounding(keep: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    listed = subprocess.run(
        ["setpriv", "--list-caps"], capture_output=True, text=True, check=True
    ).stdout.split()
    wanted = {name.lower().removeprefix("cap_") for line in keep for name in line.split()}
    for number, name in enumerate(listed):
        if name not in wanted and libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"dropping {name}")


def main(argv: list[str]) -> None:
    unit_path, separator, *command = argv
    assert separator == "--" and command, "usage: unit_sandbox.py UNIT -- ARGV"
    unit = settings(Path(unit_path).read_text())
    if "CapabilityBoundingSet" in unit:
        drop_bounding(unit["CapabilityBoundingSet"])
    libc = ctypes.CDLL(None, use_errno=True)
    if unit.get("NoNewPrivileges", ["no"])[-1] == "yes" and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    filters = []
    if unit.get("RestrictNamespaces", ["no"])[-1] == "yes":
        filters.append(namespace_filter())
    if "RestrictAddressFamilies" in unit:
        filters.append(family_filter(unit["RestrictAddressFamilies"][-1].split()))
    filters.append(call_filter(unit))  # last: it refuses seccomp() itself
    for made in filters:
        if made is not None:
            made.load()
    os.execv(command[0], command)  # noqa: S606 - the unit's own command line


if __name__ == "__main__":
    main(sys.argv[1:])
