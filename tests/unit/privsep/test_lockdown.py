"""A process locked down as a network worker is: the account's ids, no capability, no exec, no namespace."""

from __future__ import annotations

import json
import pwd
import subprocess
import sys

import pytest

from gateway.privsep.lockdown import lock_down, network_filter, supported

PROBE = """
import json, os, socket, sys
from gateway.privsep.lockdown import lock_down
lock_down(int(sys.argv[1]), int(sys.argv[2]))
out = {}
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
out["status"] = {k: status[k].strip() for k in ("Uid", "CapEff", "CapPrm", "NoNewPrivs", "Seccomp")}
for name, call in (("exec", lambda: os.execv("/bin/true", ["true"])),
                   ("setuid", lambda: os.setuid(0)),
                   ("fork_newns", lambda: os.unshare(os.CLONE_NEWNS) if hasattr(os, "unshare") else None)):
    try:
        call()
        out[name] = "allowed"
    except OSError as exc:
        out[name] = exc.errno
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    out["socket"] = "ok"
pid = os.fork()
if pid == 0:
    os._exit(0)
out["fork"] = os.waitpid(pid, 0)[1]
print(json.dumps(out))
"""


@pytest.mark.skipif(not supported(), reason="the filter is written for x86_64")
def test_a_locked_down_worker_holds_nothing_and_cannot_exec() -> None:
    entry = pwd.getpwnam("nobody")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(entry.pw_uid), str(entry.pw_gid)],
        capture_output=True, text=True, check=True, cwd="/",
    )  # fmt: skip
    out = json.loads(result.stdout)
    assert out["status"]["Uid"].split() == [str(entry.pw_uid)] * 4
    assert out["status"]["CapEff"] == out["status"]["CapPrm"] == "0000000000000000"
    assert (out["status"]["NoNewPrivs"], out["status"]["Seccomp"]) == ("1", "2")
    assert out["exec"] == 1 and out["setuid"] == 1  # EPERM
    assert out["socket"] == "ok" and out["fork"] == 0


def test_root_is_refused() -> None:
    with pytest.raises(OSError, match="must not run as root"):
        lock_down(0, 0)


def test_the_filter_is_whole_instructions_and_ends_allowing() -> None:
    program = network_filter()
    assert len(program) % 8 == 0 and len(program) // 8 < 4096
    assert program[-8:] == bytes.fromhex("06000000") + (0x7FFF0000).to_bytes(4, "little")
