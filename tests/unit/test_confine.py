"""The confinement pieces on their own: cgroup parsing, the identity check."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.confine.cgroups import SessionCgroup, mounts
from gateway.confine.pin import belongs

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
