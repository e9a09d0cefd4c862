"""What ``docker exec`` would give a process in the container, read from its pinned main process.

- capabilities: the container's bounding set (``CapBnd``); a root shell gets
  it as its effective and permitted sets, a ``user:`` shell gets none (as
  ``docker exec -u`` does), inheritable and ambient are empty;
- ``NoNewPrivs`` as the container's process has it;
- its seccomp filters, copied exactly (``PTRACE_SECCOMP_GET_FILTER`` during a
  brief ``PTRACE_SEIZE``), so whatever profile Docker gave the container (the
  default, a custom one, or none) is the shell's too.

Reading the filters needs CAP_SYS_ADMIN and a gateway that is not itself
under seccomp. A filter is the same for the life of a process, so it is read
once per (container process, start time) and kept; the read runs on a worker
thread (a ptrace tracer is one thread), bounded in time.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000
STOP_SECONDS = 1.0
#: one classic BPF instruction (struct sock_filter)
INSTRUCTION = 8
MAX_FILTERS = 64

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


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

    def for_user(self) -> Confinement:
        """What ``docker exec -u USER`` leaves a non-root user: the bounding set, nothing effective."""
        return Confinement(self.bounding, 0, 0, 0, self.no_new_privs, self.seccomp)

    def wire(self) -> dict[str, object]:
        """The form the spawner's child reads."""
        return {
            "bounding": self.bounding,
            "effective": self.effective,
            "permitted": self.permitted,
            "inheritable": self.inheritable,
            "nnp": self.no_new_privs,
            "seccomp": [program.hex() for program in self.seccomp],
        }


def status_fields(pid: int, proc: Path = PROC) -> dict[str, str]:
    """``/proc/PID/status`` as a dict."""
    out: dict[str, str] = {}
    for line in (proc / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


_cache: dict[tuple[int, int], Confinement] = {}
_lock = threading.Lock()
_tracing = threading.Lock()
#: how long to wait for another tracer of the same process to let go, and how often to look
SEIZE_SECONDS = 3.0
SEIZE_RETRY = 0.002


def cached(pid: int, started: int) -> Confinement | None:
    """What was read for this process already, if anything (no I/O: fine on the event loop)."""
    with _lock:
        return _cache.get((pid, started))


def read(pid: int, started: int, pidfd: int) -> Confinement:
    """The confinement of the pinned process *pid* (start time *started*); ProfileError if unknown.

    Blocking (ptrace): call it from a worker thread.
    """
    with _lock:
        known = _cache.get((pid, started))
    if known is not None:
        return known
    try:
        status = status_fields(pid)
        bounding = int(status["CapBnd"], 16)
        found = Confinement(
            bounding=bounding,
            effective=bounding,
            permitted=bounding,
            inheritable=0,
            no_new_privs=status.get("NoNewPrivs", "0") == "1",
            seccomp=_filters(pid, int(status.get("Seccomp", "0")), int(status.get("Seccomp_filters", "0"))),
        )
        signal.pidfd_send_signal(pidfd, 0)  # still the pinned process: what was read was its
    except (OSError, KeyError, ValueError) as exc:
        raise ProfileError(str(exc)) from None
    with _lock:
        if len(_cache) > 4096:
            _cache.clear()
        _cache[(pid, started)] = found
    return found


def _filters(pid: int, mode: int, count: int) -> tuple[bytes, ...]:
    if mode == 0:
        return ()
    if mode != 2:
        raise ProfileError(f"seccomp mode {mode} cannot be copied")
    if not 0 < count <= MAX_FILTERS:
        raise ProfileError(f"{count} seccomp filters")
    with _tracing:  # one tracer per process at a time: this process's threads take turns
        _seize(pid)
        try:
            return _read_filters(pid, count)
        finally:
            _libc.ptrace(PTRACE_DETACH, pid, None, None)


def _seize(pid: int) -> None:
    """Become the process's tracer; while another holds it (a worker or another gateway reading the same
    container at this moment), EPERM: wait for its brief read to end, bounded."""
    deadline = time.monotonic() + SEIZE_SECONDS
    while _libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
        code = ctypes.get_errno()
        if code != errno.EPERM or time.monotonic() >= deadline:
            raise ProfileError(f"cannot trace the container's process: {os.strerror(code)}")
        time.sleep(SEIZE_RETRY)


def _read_filters(pid: int, count: int) -> tuple[bytes, ...]:
    _stop(pid)
    programs = [_filter(pid, index) for index in range(count)]
    return tuple(reversed(programs))  # index 0 is the newest; they are loaded oldest first


def _stop(pid: int) -> None:
    if _libc.ptrace(PTRACE_INTERRUPT, pid, None, None) != 0:
        raise ProfileError(f"cannot stop the container's process: {os.strerror(ctypes.get_errno())}")
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        waited, _ = os.waitpid(pid, os.WNOHANG | WALL)
        if waited == pid:
            return
        time.sleep(0.001)
    raise ProfileError("the container's process did not stop (is it paused?)")


def _filter(pid: int, index: int) -> bytes:
    size = _libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(index), None)
    if size <= 0:
        code = ctypes.get_errno()
        hint = " (is the gateway itself under seccomp?)" if code == errno.EACCES else ""
        raise ProfileError(f"cannot read seccomp filter {index}: {os.strerror(code)}{hint}")
    buffer = ctypes.create_string_buffer(size * INSTRUCTION)
    if _libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(index), buffer) != size:
        raise ProfileError(f"seccomp filter {index} changed while it was read")
    return buffer.raw
