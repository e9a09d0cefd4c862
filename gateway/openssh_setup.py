"""``gateway openssh-setup``: the accounts sshd needs so that ``ssh ACTION@HOST`` works through it.

sshd only authenticates accounts that exist. For every action in the policy
this makes one system account named after it, with the door account's uid
and group (so the shipped snippet's ``Match Group gw`` covers it and the door
socket admits it) and nothing else: no home, no password, ``/bin/sh`` only
because sshd runs the forced command through the login shell. Each is marked
``gateway action STATE-ID`` in its comment field, where STATE-ID names this
instance's state directory; only accounts with this instance's mark are ever
changed or removed, so two gateways on one host never touch each other's. A
name that is already an account on the host (Debian ships ``backup``, uid 34),
or one made by another instance, is reported and left alone: that action stays
reachable as ``ssh gw@HOST ACTION``. A leftover group of the door account's
name is reused.
"""

from __future__ import annotations

import grp
import hashlib
import pwd
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

MARK = "gateway action"
HELP = "help"  # every principal with a key may ask for help, so it always gets an account
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


def instance_mark(state: Path) -> str:
    """The comment that marks this instance's accounts: ``gateway action`` and its state directory's id."""
    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    return f"{MARK} {digest}"


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _service_account(name: str, run: Run) -> list[Step]:
    """The door and keys accounts (step 2 of deploy/OPENSSH.md), when missing."""
    if _account(name) is not None:
        return []
    # a leftover group of this name (useradd would fail with "group NAME exists") is reused
    group = ["--gid", name] if _group_exists(name) else []
    run(["useradd", "--system", *group, "--shell", "/bin/sh", "--home-dir", "/", "--no-create-home", name])
    run(["usermod", "-p", "*", name])  # no password, but not locked: sshd without PAM refuses locked ones
    return [Step(name, "created")]


def plan(
    actions: Iterable[str], door: pwd.struct_passwd, mark: str
) -> tuple[list[str], list[Step], list[str]]:
    """(accounts to create, what is reported as is, this instance's accounts to remove)."""
    wanted = sorted({*actions, HELP})
    create, report = [], []
    for name in wanted:
        existing = _account(name)
        if not ACCOUNT_NAME.match(name):
            report.append(Step(name, "not a valid account name; reach it as ssh gw@HOST " + name))
        elif existing is None:
            create.append(name)
        elif existing.pw_gecos == mark and existing.pw_uid == door.pw_uid:
            report.append(Step(name, "already set up"))
        elif existing.pw_gecos.startswith(MARK) and existing.pw_uid == door.pw_uid:
            report.append(Step(name, "left alone: made by another gateway instance on this host (same door)"))
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
        if p.pw_gecos == mark and p.pw_uid == door.pw_uid and p.pw_name not in wanted
    ]
    return create, report, sorted(stale)


def setup(
    actions: Iterable[str],
    door_user: str,
    keys_user: str,
    state: Path,
    *,
    dry_run: bool = False,
    run: Run = _run,
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
    mark = instance_mark(state)
    create, report, stale = plan(actions, door, mark)
    for name in create:
        if not dry_run:
            ids = ["--non-unique", "--uid", str(door.pw_uid), "--gid", str(door.pw_gid)]
            bare = ["--shell", "/bin/sh", "--home-dir", "/", "--no-create-home", "--comment", mark]
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
