"""What ``docker exec`` would give a process in the container, read from its pinned main process.

- capabilities: the container's bounding set (``CapBnd``); a root shell gets
  it as its effective and permitted sets, a ``user:`` shell gets none (as
  ``docker exec -u`` does), inheritable and ambient are empty;
- ``NoNewPrivs`` as the container's process has it;
- its seccomp filters, copied exactly, so whatever profile Docker gave the
  container (the default, a custom one, or none) is the shell's too.

The spawner reads them (``zygote.py``, its P processes): that needs
CAP_SYS_ADMIN and a reader that is not under seccomp, and the gateway's own
unit has a filter. A filter is the same for the life of a process, so it is
read once per (container process, start time) and kept here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cached_property

from gateway.confine.pin import Pinned
from gateway.confine.spawn import SPAWNER, SpawnerError

#: P waits up to 3 s for another tracer and 1 s for the process to stop
READ_SECONDS = 6.0


class ProfileError(Exception):
    """The container's confinement could not be read: nothing may run unconfined in its place."""


@dataclass(frozen=True)
class Confinement:
    """What the child sets on itself before exec (and the ``session.start`` record shows)."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int
    no_new_privs: bool
    #: classic BPF programs, the oldest first (the order to load them in)
    seccomp: tuple[bytes, ...]

    @cached_property
    def for_user(self) -> Confinement:
        """What ``docker exec -u USER`` leaves a non-root user: the bounding set, nothing effective."""
        return Confinement(self.bounding, 0, 0, 0, self.no_new_privs, self.seccomp)

    @cached_property
    def wire(self) -> dict[str, object]:
        """The form the spawner's child reads: made once per container process, shared by its sessions
        (the filters in hex are about 16 kB; never changed once made)."""
        return {
            "bounding": self.bounding,
            "effective": self.effective,
            "permitted": self.permitted,
            "inheritable": self.inheritable,
            "nnp": self.no_new_privs,
            "seccomp": [program.hex() for program in self.seccomp],
        }


_cache: dict[tuple[int, int], Confinement] = {}


async def read(pinned: Pinned) -> Confinement:
    """The confinement of the pinned process; ProfileError if it cannot be known."""
    known = _cache.get((pinned.pid, pinned.started))
    if known is not None:
        return known
    try:
        answer = await asyncio.wait_for(SPAWNER.profile(pinned.pid, pinned.pidfd), READ_SECONDS)
        bounding = int(answer["bounding"])
        found = Confinement(
            bounding=bounding,
            effective=bounding,
            permitted=bounding,
            inheritable=0,
            no_new_privs=bool(answer["nnp"]),
            seccomp=tuple(bytes.fromhex(str(program)) for program in answer["seccomp"]),
        )
    except TimeoutError:
        raise ProfileError("the spawner did not read it in time") from None
    except SpawnerError as exc:
        raise ProfileError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"the spawner's answer: {exc!r}") from None
    if len(_cache) > 4096:
        _cache.clear()
    _cache[(pinned.pid, pinned.started)] = found
    return found
