"""Keeping a ``shell`` session inside its container, and nothing of it behind.

::

    pin.py      the container's main process, pinned by a pidfd and checked
                (cgroup names the container id, start time unchanged); its
                namespaces opened as descriptors for nsenter
    cgroups.py  the session's processes join the container's cgroups (its
                limits apply) and a cgroup of their own, which is emptied
                (frozen, killed) when the session ends: v1 and v2
    launch.py   the tiny launcher that joins those cgroups before it execs,
                so not one instruction of the child runs outside them
"""

from gateway.confine.cgroups import SessionCgroup
from gateway.confine.launch import launcher_argv
from gateway.confine.pin import ContainerChanged, Pinned, pin

__all__ = ["ContainerChanged", "Pinned", "SessionCgroup", "launcher_argv", "pin"]
