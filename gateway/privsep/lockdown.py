"""What a network worker gives up before it reads a byte from the network.

The monitor starts it as root with nothing but the listening socket and its
own end of the monitor's socket; it imports what it will run (the Python it
runs may live where the account cannot read), then becomes the account: no
supplementary groups, real, effective and saved ids the account's, so no
capability survives (the kernel clears them at the switch away from uid 0).
Then it sets ``no_new_privs`` (no setuid binary, no file
capability can give any back) and loads a seccomp filter: a deny-list of the
system calls a compromised worker would reach for (exec, ptrace and reading
other processes' memory, namespaces, mounts, modules, keys, BPF, io_uring,
identity changes), each answered EPERM; any other ABI than the native one is
killed. The worker then holds no capability, cannot exec, and cannot open what
its account cannot (the host key, the Docker socket and the audit keys are
root's, mode 0600 or 0660).
"""

from __future__ import annotations

import os
import platform
import struct

from gateway.confine.zygote import PR_SET_NO_NEW_PRIVS, load_filters, prctl

PR_SET_DUMPABLE = 4

AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_EPERM = 0x00050000 | 1
RET_ENOSYS = 0x00050000 | 38
CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
CLONE = 56
CLONE3 = 435

#: x86_64 numbers: exec, tracing and other processes' memory, namespaces and mounts, modules,
#: kexec and reboot, keys, BPF and perf, io_uring, identity and capability changes, clocks, swap,
#: raw I/O, handles, personality, device nodes
DENIED_X86_64 = (
    59, 322,  # execve, execveat
    101, 310, 311, 438, 212,  # ptrace, process_vm_readv/writev, pidfd_getfd, lookup_dcookie
    308, 272, 165, 166, 155, 161,  # setns, unshare, mount, umount2, pivot_root, chroot
    428, 429, 430, 431, 432, 433,  # open_tree, move_mount, fsopen, fsconfig, fsmount, fspick
    175, 313, 176, 246, 320, 169,  # init/finit/delete_module, kexec_load, kexec_file_load, reboot
    248, 249, 250, 321, 298, 323,  # add_key, request_key, keyctl, bpf, perf_event_open, userfaultfd
    425, 426, 427,  # io_uring_setup, io_uring_enter, io_uring_register
    105, 106, 113, 114, 116, 117, 119, 122, 123, 126,  # setuid ... setfsgid, capset
    164, 227, 159, 305, 163, 179,  # settimeofday, clock_settime, adjtimex, clock_adjtime, acct, quotactl
    167, 168, 172, 173, 303, 304,  # swapon, swapoff, iopl, ioperm, name_to/open_by_handle_at
    135, 153, 103, 133, 259, 154, 134, 300,  # personality, vhangup, syslog, mknod(at), modify_ldt,
)  # uselib, fanotify_init  # fmt: skip

_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_NR, _ARCH, _ARG0 = 0, 4, 16


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def network_filter(denied: tuple[int, ...] = DENIED_X86_64) -> bytes:
    """The classic BPF program: native ABI only, *denied* and namespace clones EPERM, clone3 ENOSYS."""
    program = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ, AUDIT_ARCH_X86_64, 1, 0),
        _op(_RET, RET_KILL_PROCESS),
        _op(_LD_W_ABS, _NR),
        _op(_JGE, X32_BIT, 0, 1),
        _op(_RET, RET_KILL_PROCESS),
        _op(_JEQ, CLONE3, 0, 1),
        _op(_RET, RET_ENOSYS),  # glibc falls back to clone, whose flags are checked below
    ]
    for number in denied:
        program += [_op(_JEQ, number, 0, 1), _op(_RET, RET_EPERM)]
    program += [
        _op(_JEQ, CLONE, 0, 3),
        _op(_LD_W_ABS, _ARG0),
        _op(_JSET, CLONE_NAMESPACES, 0, 1),
        _op(_RET, RET_EPERM),
        _op(_RET, RET_ALLOW),
    ]
    return b"".join(program)


def supported() -> bool:
    """Whether this machine's system call numbers are the filter's."""
    return platform.machine() == "x86_64"


def lock_down(uid: int, gid: int) -> None:
    """Become *uid*:*gid*, then no_new_privs, not dumpable and the filter; OSError when any step fails
    (the worker must stop)."""
    if uid == 0 or gid == 0:
        raise OSError("a network worker must not run as root")
    if os.getuid() != uid:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise OSError("the worker's identity did not change")
    if not supported():
        raise OSError(f"no system call filter for {platform.machine()}")
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)
    load_filters([network_filter()])
