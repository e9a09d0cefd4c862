"""Keeping a ``shell`` session inside its container, and nothing of it behind.

::

    pin.py      the container's main process, pinned by a pidfd and checked
                (cgroup names the container id, start time unchanged); its
                namespaces opened as descriptors
    profile.py  what docker exec would give a process in it, read from that
                process: bounding set, no_new_privs, its seccomp filters
    cgroups.py  the session's processes join the container's cgroups (its
                limits apply) and a cgroup of their own, which is emptied
                (frozen, killed) when the session ends: v1 and v2
    spawn.py    the gateway's side of the spawner
    zygote.py   the spawner: forks, enters the namespaces, joins the cgroups,
                opens the PTY in the container, confines, execs
"""

from gateway.confine.cgroups import SessionCgroup
from gateway.confine.pin import ContainerChanged, Pinned, pin

__all__ = ["ContainerChanged", "Pinned", "SessionCgroup", "pin"]
