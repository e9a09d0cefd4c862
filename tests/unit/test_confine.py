"""The confinement pieces on their own: cgroup parsing, the identity check."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.confine import warm
from gateway.confine.cgroups import SessionCgroup, mounts
from gateway.confine.pin import belongs
from gateway.confine.warm import Warmer

CID = "ab" * 32


@pytest.mark.parametrize(
    ("lines", "ok"),
    [
        ((("memory", f"/docker/{CID}"), ("", f"/docker/{CID}")), True),
        ((("", f"/system.slice/docker-{CID}.scope"),), True),
        ((("memory", "/user.slice"), ("", f"/docker/{CID}")), False),  # one controller elsewhere: not it
        ((("name=systemd", "/"), ("", f"/docker/{CID}")), True),  # named hierarchies carry no limits
        ((), False),
    ],
)
def test_belongs_requires_every_path_to_name_the_container(
    lines: tuple[tuple[str, str], ...], ok: bool
) -> None:
    assert belongs(lines, CID) is ok


def test_mounts_and_session_cgroup_layout(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    root = tmp_path / "cg"
    info.write_text(
        f"32 31 0:29 / {root}/memory rw - cgroup cgroup rw,memory\n"
        f"37 31 0:34 / {root}/freezer rw - cgroup cgroup rw,freezer\n"
        f"41 31 0:38 / {root}/unified rw - cgroup2 cgroup2 rw\n"
    )
    table = mounts(info)
    for ctrl in ("memory", "freezer"):
        (root / ctrl / "docker" / CID).mkdir(parents=True)
    (root / "unified" / "docker" / CID).mkdir(parents=True)
    lines = (("memory", f"/docker/{CID}"), ("freezer", f"/docker/{CID}"), ("", f"/docker/{CID}"))
    made = SessionCgroup.create(lines, "gateway-s", table)
    assert made.freezer and made.own == root / "freezer" / "docker" / CID / "gateway-s"
    assert made.own.is_dir()
    assert root / "memory" / "docker" / CID / "cgroup.procs" in made.join  # the container's limits
    assert made.own / "cgroup.procs" in made.join


def test_the_warmer_moves_nothing_and_stops_when_the_child_has_joined(tmp_path: Path) -> None:
    """A no-op move into this process's own cgroup, over and over, only while a login is on its way."""
    before = Path("/proc/self/cgroup").read_text()
    warmer = Warmer()
    warmer.soon(seconds=5)
    time.sleep(0.05)
    assert warmer._thread is not None and warmer._thread.is_alive() and not warmer._broken
    warmer.done()
    for _ in range(100):
        if warmer._thread is None:
            break
        time.sleep(0.01)
    assert warmer._thread is None  # done: no thread left, long before the 5 s
    assert Path("/proc/self/cgroup").read_text() == before


def test_the_warmer_ends_at_its_deadline_and_a_host_without_the_file_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warmer = Warmer()
    warmer.soon(seconds=0.05)  # a login that never starts a child (refused, a host action)
    time.sleep(0.3)
    assert warmer._thread is None
    monkeypatch.setattr(warm, "MOUNTED", tmp_path)  # no cgroup file there
    other = Warmer()
    other.soon()
    time.sleep(0.1)
    assert other._broken and other._thread is not None and not other._thread.is_alive()
    other.soon()  # nothing more is tried
