"""``gateway openssh-setup``: the accounts sshd needs so that ``ssh ACTION@HOST`` works through it.

sshd only authenticates accounts that exist. For every action in the policy
this makes one system account named after it, with the door account's uid
and group (so the shipped snippet's ``Match Group gw`` covers it and the door
socket admits it) and nothing else: no home, no password, ``/bin/sh`` only
because sshd runs the forced command through the login shell. Each is marked
``gateway action`` in its comment field; only accounts so marked are ever
changed or removed. A name that is already an account on the host (Debian
ships ``backup``, uid 34) is reported and left alone: that action stays
reachable as ``ssh gw@HOST ACTION``.
"""

from __future__ import annotations

import pwd
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MARK = "gateway action"
ACCOUNT_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
Run = Callable[[list[str]], None]


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Step:
    """One thing the setup did (or would do): a line for the operator."""

    account: str
    what: str

    def line(self) -> str:
        """``ACCOUNT: what``."""
        return f"{self.account}: {self.what}"


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _service_account(name: str, run: Run) -> list[Step]:
    """The door and keys accounts (step 2 of deploy/OPENSSH.md), when missing."""
    if _account(name) is not None:
        return []
    run(["useradd", "--system", "--shell", "/bin/sh", "--home-dir", "/", "--no-create-home", name])
    run(["usermod", "-p", "*", name])  # no password, but not locked: sshd without PAM refuses locked ones
    return [Step(name, "created")]


def plan(actions: Iterable[str], door: pwd.struct_passwd) -> tuple[list[str], list[Step], list[str]]:
    """(accounts to create, what is reported as is, our accounts to remove)."""
    wanted = sorted(set(actions))
    create, report = [], []
    for name in wanted:
        existing = _account(name)
        if not ACCOUNT_NAME.match(name):
            report.append(Step(name, "not a valid account name; reach it as ssh gw@HOST " + name))
        elif existing is None:
            create.append(name)
        elif existing.pw_gecos == MARK and existing.pw_uid == door.pw_uid:
            report.append(Step(name, "already set up"))
        else:
            report.append(
                Step(
                    name,
                    f"left alone: an account of this host (uid {existing.pw_uid}) already has this name;"
                    f" reach the action as: ssh {door.pw_name}@HOST {name} [TARGET]",
                )
            )
    stale = [
        p.pw_name
        for p in pwd.getpwall()
        if p.pw_gecos == MARK and p.pw_uid == door.pw_uid and p.pw_name not in wanted
    ]
    return create, report, sorted(stale)


def setup(
    actions: Iterable[str], door_user: str, keys_user: str, *, dry_run: bool = False, run: Run = _run
) -> list[Step]:
    """Make the accounts; what was done (or, with *dry_run*, what would be)."""
    if door_user == keys_user:
        raise ValueError("the keys account must not be the door account")
    steps: list[Step] = []
    if not dry_run:
        steps += _service_account(door_user, run) + _service_account(keys_user, run)
    door = _account(door_user)
    if door is None:
        return [*steps, Step(door_user, "missing: run without --dry-run to create it")]
    create, report, stale = plan(actions, door)
    for name in create:
        if not dry_run:
            ids = ["--non-unique", "--uid", str(door.pw_uid), "--gid", str(door.pw_gid)]
            bare = ["--shell", "/bin/sh", "--home-dir", "/", "--no-create-home", "--comment", MARK]
            run(["useradd", "--system", *ids, *bare, name])
            run(["usermod", "-p", "*", name])
        steps.append(
            Step(name, f"{'would create' if dry_run else 'created'} (uid {door.pw_uid}, the door's)")
        )
    steps += report
    for name in stale:
        if not dry_run:
            run(["userdel", name])
        steps.append(Step(name, f"{'would remove' if dry_run else 'removed'}: no longer an action"))
    return steps
