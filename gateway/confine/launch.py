"""The launcher: join the session's cgroups, then exec the real child.

A child that joined its cgroup after it started could fork first and leave a
process outside. So the gateway starts this small fixed script instead,
which writes its own pid to each ``cgroup.procs`` and only then execs (no
fork), so every instruction of the child runs confined. A failure to join
execs nothing.

It is a constant ``/bin/sh -c`` script, because a shell starts in under a
millisecond where even ``python -I -S`` takes seven. The client's words are
*positional parameters* of that script, passed on by ``exec "$@"``: the shell
never parses, splits or expands them (quoted ``"$@"`` yields each argument
exactly as given), so no client text is ever shell syntax.
"""

from __future__ import annotations

from pathlib import Path

SCRIPT = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    '{ echo $$ >"$1"; } 2>/dev/null || { echo "gateway: could not confine the session; nothing was run" >&2; '
    "exit 126; }; shift; n=$((n - 1)); done; "
    'exec "$@"'
)


def launcher_argv(join: list[Path], argv: list[str]) -> list[str]:
    """*argv*, started only once the process is in every cgroup of *join*."""
    return ["/bin/sh", "-c", SCRIPT, "gateway-confine", str(len(join)), *map(str, join), *argv]
