"""The spawner: a small single-threaded process that starts every ``shell`` child, confined.

Started once per gateway process (``spawn.Spawner``) as
``python -I -S .../zygote.py FD``, or once for the whole gateway, apart, as
``zygote.py --listen SOCKET`` (the shipped unit's ``ExecStartPre=+``: outside
the unit's sandbox; it serves each root process that connects, SO_PEERCRED
checked, as one gateway). It imports only the standard library, so
a fork of it is cheap and safe (the gateway itself has threads, so it never
runs Python in a forked child). Per request (one SOCK_SEQPACKET message with
descriptors) it forks **A**, which:

1. enters the container's namespaces by the pinned descriptors (user, ipc,
   uts, net, pid, mnt; the mount namespace last), and forks **B**, which is
   then inside the container's PID namespace;
2. reports B's host pid (to the gateway, and to the spawner on a pipe) and
   exits. A itself never joins the container or the session's cgroup.

The spawner is a child subreaper (``PR_SET_CHILD_SUBREAPER``): B, orphaned
when A exits, becomes the spawner's child, and the spawner reaps it and
reports its wait status on the request's control socket, which it keeps
until then. So an open session costs one process, its own, plus a socket
and a dictionary entry here (B's own orphans still go to the container's
init, as with ``docker exec``: a subreaper in the parent PID namespace is
not theirs).

B, before any instruction of the client's command:

1. joins the container's cgroups and the session's own (writes ``0`` to the
   ``cgroup.procs`` descriptors the gateway opened), then the container's
   cgroup namespace; starts a new session;
2. resolves ``user:`` in the container's own ``/etc/passwd`` and
   ``/etc/group`` (read inside the container's mount namespace: regular files
   only, no symlink as the last component, ``O_NONBLOCK``, at most 1 MiB);
3. on a PTY: opens ``/dev/pts/ptmx`` in the container's devpts (as
   ``docker exec -t`` does), gets the slave with ``TIOCGPTPEER`` (no path
   lookup), sends the master to the gateway and makes the slave its
   controlling terminal;
4. unless the action is ``privileged``, takes the container's confinement:
   seccomp (before the capability drop when ``no_new_privs`` is off, since
   loading it then needs CAP_SYS_ADMIN; after ``no_new_privs`` otherwise),
   the bounding set, the uid and gids, the capability sets, no ambient caps;
5. says ``ready`` and execs the command (found on the child's ``PATH`` in
   the container), with the clean environment the gateway chose.

A refusal in B (an unknown user, a FIFO as ``/etc/passwd``) is one message
and exit 126; nothing of the client's ran. Messages to the gateway are JSON
on the request's own control socket.
"""

from __future__ import annotations

import array  # noqa: F401 - socket.send_fds imports it lazily; after setns the host's stdlib is gone
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import socket
import stat
import struct
import sys
import termios
import time

PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2
CAP_VERSION_3 = 0x20080522
TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431
PTMX = os.makedev(5, 2)
READ_LIMIT = 1 << 20
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000
#: one classic BPF instruction (struct sock_filter)
INSTRUCTION = 8
MAX_FILTERS = 64
#: how long a P waits for the container's process to stop, and for another tracer to let go
STOP_SECONDS = 1.0
SEIZE_SECONDS = 3.0
SEIZE_RETRY = 0.002
NS_ORDER = ("user", "ipc", "uts", "net", "pid", "mnt")
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: root as ``docker exec`` starts it: uid and gid 0, group 0 alone
ROOT = (0, 0, [0])

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


class _Refused(Exception):
    def __init__(self, public: str, reason: str) -> None:
        super().__init__(reason)
        self.public = public
        self.reason = reason


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    """prctl(2); OSError when it fails (the network worker's lockdown uses it too)."""
    _check(_libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), 0, 0), f"prctl {option}")


def _send(control: socket.socket, message: dict[str, object], fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    try:
        if fds:
            socket.send_fds(control, [data], list(fds))
        else:
            control.send(data)
    except OSError:
        pass  # the gateway went away: the pty or pipes tell the child


# ---------------------------------------------------------------- the spawner loop


def main(argv: list[str]) -> None:
    """``zygote.py FD``: serve the gateway that started it, on its socket, until it goes away.

    ``zygote.py --listen PATH``: a daemon of its own (the unit's ``ExecStartPre=+``, outside the unit's
    sandbox): listen on PATH (0600), say so by exiting the first process, serve every root process that
    connects, each connection as one gateway.
    """
    if argv[:1] == ["--listen"] and len(argv) == 2:
        listener, first = _daemon(argv[1]), None
    else:
        listener, first = None, socket.socket(fileno=int(argv[0]))
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)  # a handler: the wake-up fd is written
    _Loop(listener, first, wake_r).run()


class _Loop:
    """The spawner's one thread: requests from each gateway, births, and the children it reaps."""

    def __init__(self, listener: socket.socket | None, first: socket.socket | None, wake: int) -> None:
        self.listener, self.wake = listener, wake
        self.births = _Births()
        self.poller = select.poll()
        self.gateways: dict[int, socket.socket] = {}
        for fd in (wake, self.births.read_end):
            self.poller.register(fd, select.POLLIN)
        if listener is not None:
            self.poller.register(listener.fileno(), select.POLLIN)
        if first is not None:
            self._add(first)

    def _add(self, gateway: socket.socket) -> None:
        self.gateways[gateway.fileno()] = gateway
        self.poller.register(gateway.fileno(), select.POLLIN)

    def run(self) -> None:
        """Until the gateway that started it has gone (a daemon: for ever)."""
        while True:
            for fd, _event in self.poller.poll():
                if fd == self.wake:
                    with contextlib.suppress(OSError):
                        os.read(self.wake, 4096)
                    self.births.reap()
                elif fd == self.births.read_end:
                    self.births.read()
                elif self.listener is not None and fd == self.listener.fileno():
                    accepted = _accept(self.listener)
                    if accepted is not None:
                        self._add(accepted)
                elif fd in self.gateways and not _serve_one(self.gateways[fd], self.births):
                    self.poller.unregister(fd)
                    self.gateways.pop(fd).close()
                    if self.listener is None:
                        return


def _daemon(path: str) -> socket.socket:
    """Listen on *path* (only root may connect) from a process of its own, then leave the foreground:
    the caller's exit 0 says the socket is there, and SO_PEERCRED names the process that serves it."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # noqa: PTH108 - no pathlib: the spawner stays small and cheap to fork
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    said, say = os.pipe()
    if os.fork() != 0:
        os.close(say)
        os._exit(0 if os.read(said, 1) == b"!" else 1)
    os.close(said)
    os.setsid()
    listener.listen(64)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1):
        os.dup2(null, target)
    os.close(null)
    os.write(say, b"!")
    os.close(say)
    return listener


def _accept(listener: socket.socket) -> socket.socket | None:
    """A gateway's connection; None for anything but a root process of this host."""
    try:
        conn, _addr = listener.accept()
    except OSError:
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.getuid():
        conn.close()
        return None
    return conn


def _serve_one(server: socket.socket, births: _Births) -> bool:
    """Fork A (or P, for a profile) for one request; False once the gateway has gone."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(server, 1 << 20, 64)
    except InterruptedError:
        return True
    except OSError:
        return False
    if not data:
        return False
    reader = data.startswith(b'{"profile"')
    try:
        pid = os.fork()
    except OSError:
        pid = -1
    if pid == 0:
        server.close()
        if reader:
            _p(data, fds)  # never returns
        _a(data, fds, births.write_end)  # never returns
    for fd in fds[1:]:
        with contextlib.suppress(OSError):
            os.close(fd)
    if fds and pid > 0 and not reader:
        births.expect(pid, socket.socket(fileno=fds[0]))  # kept until B's status is reported
    elif fds:
        with contextlib.suppress(OSError):
            os.close(fds[0])
    if reader and pid > 0:
        births.readers.add(pid)
    return True


class _Births:
    """Which A started which B (A writes ``A B`` on a pipe), and whose control socket B's status goes to."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_end, False)
        os.set_inheritable(self.write_end, True)
        self._by_a: dict[int, socket.socket] = {}
        self._by_b: dict[int, socket.socket] = {}
        self._early: dict[int, int] = {}  # a B reaped before its A's line was read
        self.readers: set[int] = set()  # P processes: reaped, nothing to report
        self._partial = b""

    def expect(self, a: int, control: socket.socket) -> None:
        self._by_a[a] = control

    def read(self) -> None:
        try:
            data = os.read(self.read_end, 65536)
        except OSError:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            with contextlib.suppress(ValueError):
                a, b = (int(word) for word in line.split())
                control = self._by_a.pop(a, None)
                if control is None:
                    continue
                if b in self._early:
                    _report(control, self._early.pop(b))
                else:
                    self._by_b[b] = control

    def reap(self) -> None:
        self.read()  # an A writes its line before it exits: read it before reaping A
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.readers:
                self.readers.discard(pid)
            elif pid in self._by_b:
                _report(self._by_b.pop(pid), status)
            elif pid in self._by_a:  # an A that started no B (it said why on the control socket)
                control = self._by_a.pop(pid)
                if os.waitstatus_to_exitcode(status) != 0:
                    control.close()
                else:  # its B's line is still on its way
                    self._by_a[pid] = control
            else:
                self._early[pid] = status


def _report(control: socket.socket, status: int) -> None:
    _send(control, {"exit": status})
    control.close()


# ---------------------------------------------------------------- A: enter, fork, report, leave


def _a(data: bytes, fds: list[int], births: int) -> None:
    code = 1
    try:
        for sig in RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        request = json.loads(data)
        control = socket.socket(fileno=fds[0])
        namespaces = dict(zip(request["ns"], fds[1 : 1 + len(request["ns"])], strict=True))
        rest = fds[1 + len(request["ns"]) :]
        for name in NS_ORDER:
            if name in namespaces:
                _check(_libc.setns(namespaces[name], 0), f"setns {name}")
        child = os.fork()
        if child == 0:
            os.close(births)
            _b(request, control, namespaces.get("cgroup"), rest)  # never returns
        for fd in fds[1:]:
            os.close(fd)
        os.write(births, f"{os.getpid()} {child}\n".encode())  # before the pid: the spawner reaps B
        _send(control, {"pid": child})
        code = 0
    except BaseException as exc:  # A must always end, and say why
        with contextlib.suppress(OSError):
            _send(socket.socket(fileno=fds[0]), {"error": str(exc)})
    os._exit(code)


# ---------------------------------------------------------------- P: read a container's confinement


def _p(data: bytes, fds: list[int]) -> None:
    """What docker exec would give a process in the container, read from its pinned main process:
    its bounding set, ``no_new_privs`` and its seccomp filters, copied exactly (``PTRACE_SECCOMP_GET_FILTER``
    during a brief ``PTRACE_SEIZE``). Here, because reading them needs CAP_SYS_ADMIN and a reader that is
    not itself under seccomp, which the gateway's unit is. Answers ``profile`` or ``error``, then exits."""
    code = 1
    try:
        for sig in RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        control = socket.socket(fileno=fds[0])
        pid = int(json.loads(data)["profile"])
        status = _status(pid)
        programs = _filters(pid, int(status.get("Seccomp", "0")), int(status.get("Seccomp_filters", "0")))
        signal.pidfd_send_signal(fds[1], 0)  # still the pinned process: what was read was its
        _send(control, {"profile": {"bounding": int(status["CapBnd"], 16),
                                    "nnp": status.get("NoNewPrivs", "0") == "1",
                                    "seccomp": [program.hex() for program in programs]}})  # fmt: skip
        code = 0
    except BaseException as exc:  # P must always end, and say why
        with contextlib.suppress(OSError):
            _send(socket.socket(fileno=fds[0]), {"error": str(exc) or type(exc).__name__})
    os._exit(code)


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as status:  # noqa: PTH123 - no pathlib (as above)
        for line in status:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _filters(pid: int, mode: int, count: int) -> list[bytes]:
    if mode == 0:
        return []
    if mode != 2:
        raise OSError(f"seccomp mode {mode} cannot be copied")
    if not 0 < count <= MAX_FILTERS:
        raise OSError(f"{count} seccomp filters")
    _seize(pid)
    try:
        _stop(pid)
        programs = [_filter(pid, index) for index in range(count)]
        return programs[::-1]  # index 0 is the newest; they are loaded oldest first
    finally:
        _libc.ptrace(PTRACE_DETACH, pid, None, None)


def _seize(pid: int) -> None:
    """Become the process's tracer; while another holds it (another P reading the same container at
    this moment), EPERM: wait for its brief read to end, bounded."""
    deadline = time.monotonic() + SEIZE_SECONDS
    while _libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
        code = ctypes.get_errno()
        if code != errno.EPERM or time.monotonic() >= deadline:
            raise OSError(f"cannot trace the container's process: {os.strerror(code)}")
        time.sleep(SEIZE_RETRY)


def _stop(pid: int) -> None:
    _check(_libc.ptrace(PTRACE_INTERRUPT, pid, None, None), "cannot stop the container's process")
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        waited, _ = os.waitpid(pid, os.WNOHANG | WALL)
        if waited == pid:
            return
        time.sleep(0.001)
    raise OSError("the container's process did not stop (is it paused?)")


def _filter(pid: int, index: int) -> bytes:
    size = _libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(index), None)
    if size <= 0:
        code = ctypes.get_errno()
        hint = " (is the spawner itself under seccomp?)" if code == errno.EACCES else ""
        raise OSError(f"cannot read seccomp filter {index}: {os.strerror(code)}{hint}")
    buffer = ctypes.create_string_buffer(size * INSTRUCTION)
    if _libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(index), buffer) != size:
        raise OSError(f"seccomp filter {index} changed while it was read")
    return buffer.raw


# ---------------------------------------------------------------- B: confine, exec


def _b(request: dict[str, object], control: socket.socket, cgroupns: int | None, fds: list[int]) -> None:
    try:
        joins = int(request["cgroups"])  # type: ignore[call-overload]
        for fd in fds[:joins]:
            os.write(fd, b"0")  # this process, into the container's and the session's cgroups
            os.close(fd)
        if cgroupns is not None:
            _check(_libc.setns(cgroupns, 0), "setns cgroup")
        os.setsid()
        os.chdir("/")
        user = _user(request.get("user"))
        stdio = fds[joins:]
        if request.get("pty") is not None:
            stdio = _pty(request["pty"], control, user)  # type: ignore[arg-type]
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        confinement = request.get("confine")
        if isinstance(confinement, dict):
            _confine(confinement, user)
        else:
            _set_ids(user or ROOT)
        argv = [str(word) for word in request["argv"]]  # type: ignore[attr-defined]
        env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
        _send(control, {"ready": os.getuid()})
    except _Refused as refused:
        _send(control, {"refuse": refused.public, "reason": refused.reason})
        os._exit(126)
    except BaseException as exc:
        _send(control, {"refuse": "could not confine the session; nothing was run", "reason": str(exc)})
        os._exit(126)
    control.close()
    os.closerange(3, 1 << 30)  # nothing of the gateway's (namespaces, cgroups) crosses the exec
    _exec(argv, env)


def _exec(argv: list[str], env: dict[str, str]) -> None:
    """execvpe without os.execvpe, which imports ``warnings`` (not in the container)."""
    name = argv[0]
    found: OSError = FileNotFoundError(errno.ENOENT, "No such file or directory")
    places = [name] if "/" in name else [f"{d or '.'}/{name}" for d in env.get("PATH", "").split(":")]
    for path in places:
        try:
            os.execve(path, argv, env)  # noqa: S606 - an argv, never a shell
        except OSError as exc:
            if exc.errno != errno.ENOENT or found.errno == errno.ENOENT:
                found = exc if exc.errno != errno.ENOENT else found
    os.write(2, f"gateway: cannot run {name}: {found.strerror}\r\n".encode(errors="replace"))
    os._exit(127 if found.errno == errno.ENOENT else 126)


def read_container_file(path: str) -> str:
    """A small regular file of the container's (inside its mount namespace); _Refused otherwise."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Refused(f"{path} in the container is a symbolic link", f"{path}: symlink") from None
        if exc.errno == errno.ENOENT:
            return ""
        raise _Refused(f"cannot read {path} in the container", f"{path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(f"{path} in the container is not a regular file", f"{path}: not a regular file")
        if info.st_size > READ_LIMIT:
            raise _Refused(f"{path} in the container is too large", f"{path}: {info.st_size} bytes")
        data = os.read(fd, READ_LIMIT + 1)
        if len(data) > READ_LIMIT:
            raise _Refused(f"{path} in the container is too large", f"{path}: over {READ_LIMIT} bytes")
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


def _user(spec: object) -> tuple[int, int, list[int]] | None:
    """``user:`` -> (uid, gid, groups), read in the container; None for root as it is."""
    if spec is None:
        return None
    name = str(spec)
    if name[:1].isdigit():
        number, _, group = name.partition(":")
        return int(number), int(group or number), [int(group or number)]
    for line in read_container_file("/etc/passwd").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            try:
                uid, gid = int(fields[2]), int(fields[3])
            except ValueError:
                break
            return uid, gid, _groups(name, gid)
    raise _Refused(f"no user {name} in the container", f"unknown user {name!r}")


def _groups(name: str, gid: int) -> list[int]:
    groups = [gid]
    for line in read_container_file("/etc/group").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and name in fields[3].split(","):
            try:
                number = int(fields[2])
            except ValueError:
                continue
            if number not in groups:
                groups.append(number)
    return groups


def _pty(size: list[int], control: socket.socket, user: tuple[int, int, list[int]] | None) -> list[int]:
    """A PTY in the container's own devpts; the master goes to the gateway; the slave is ours."""
    try:
        master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _Refused("the container has no terminal device", f"/dev/pts/ptmx: {exc.strerror}") from None
    info = os.fstat(master)
    if not stat.S_ISCHR(info.st_mode) or info.st_rdev != PTMX:
        raise _Refused("the container has no terminal device", "/dev/pts/ptmx is not a ptmx")
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    cols, rows, xpix, ypix = (int(v) for v in size)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", max(rows, 1), max(cols, 1), xpix, ypix))
    if user is not None:
        os.fchown(slave, user[0], -1)
    _send(control, {"pty": True}, (master,))
    os.close(master)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    return [slave, slave, slave]


def _set_ids(user: tuple[int, int, list[int]]) -> None:
    uid, gid, groups = user
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _confine(spec: dict[str, object], user: tuple[int, int, list[int]] | None) -> None:
    """The container's seccomp, bounding set, ids and capability sets, in runc's order."""
    programs = [bytes.fromhex(str(p)) for p in spec["seccomp"]]  # type: ignore[attr-defined]
    nnp = bool(spec["nnp"])
    if not nnp:
        load_filters(programs)  # needs CAP_SYS_ADMIN, so before the drop
    bounding = int(spec["bounding"])  # type: ignore[call-overload]
    last = int(read_container_file("/proc/sys/kernel/cap_last_cap"))
    for cap in range(last + 1):
        if not bounding >> cap & 1:
            prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_SET_KEEPCAPS, 1)
    _set_ids(user or ROOT)
    prctl(PR_SET_KEEPCAPS, 0)
    sets = [int(spec[k]) for k in ("effective", "permitted", "inheritable")]  # type: ignore[call-overload]
    header = _CapHeader(CAP_VERSION_3, 0)
    data = (_CapData * 2)(
        _CapData(*(s & 0xFFFFFFFF for s in sets)), _CapData(*(s >> 32 & 0xFFFFFFFF for s in sets))
    )
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if nnp:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        load_filters(programs)


def load_filters(programs: list[bytes]) -> None:
    """Load each classic BPF program as a seccomp filter (no_new_privs set, or CAP_SYS_ADMIN)."""
    for program in programs:
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p).value)
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


if __name__ == "__main__":
    main(sys.argv[1:])
