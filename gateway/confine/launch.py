"""The launcher: join the session's cgroups, then exec the real child.

A child that joined its cgroup after it started could fork first and leave a
process outside. So the gateway starts this small program instead, which
writes its own pid to each ``cgroup.procs`` and only then execs (no fork), so
every instruction of the child runs confined. Python with ``-I -S`` starts in
a few milliseconds and reads nothing from the environment or the client.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runs as `python -I -S -c CODE PROCS... -- ARGV...`; a failure to join execs nothing.
CODE = """
import os, sys
args = sys.argv[1:]
split = args.index("--")
try:
    for procs in args[:split]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
except OSError as exc:
    sys.stderr.write("gateway: could not confine the session; nothing was run\\n")
    os._exit(126)
os.execvp(args[split + 1], args[split + 1:])
"""


def launcher_argv(join: list[Path], argv: list[str]) -> list[str]:
    """*argv*, started only once the process is in every cgroup of *join*."""
    return [sys.executable, "-I", "-S", "-c", CODE, *map(str, join), "--", *argv]
