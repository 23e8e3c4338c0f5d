"""The intake's CPU group (bo_tools.cpu_group): which hierarchy holds the cpu controller,
and a real group that takes processes in and gives them back when removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bo_tools import cpu_group
from bo_tools.cpu_group import Hierarchy, find_hierarchy

V1_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
V1_OWN = "4:memory:/process_api/x\n2:cpuacct:/\n1:cpu:/ci/job\n0::/\n"


def test_v1_the_mount_whose_options_name_cpu_and_this_process_s_cgroup_in_it() -> None:
    found = find_hierarchy(V1_MOUNTS, V1_OWN)
    assert found == Hierarchy(Path("/sys/fs/cgroup/cpu"), 1, "/ci/job")
    assert found.parent == Path("/sys/fs/cgroup/cpu/ci/job")
    # cpu and cpuacct mounted together
    joint = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n"
    assert find_hierarchy(joint, "3:cpu,cpuacct:/\n") == Hierarchy(
        Path("/sys/fs/cgroup/cpu,cpuacct"), 1, "/"
    )


def test_v2_only_where_the_cpu_controller_is_offered(tmp_path: Path) -> None:
    root = tmp_path / "sys/fs/cgroup"
    root.mkdir(parents=True)
    mounts = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev 0 0\n"
    own = "0::/user.slice/bo\n"
    (root / "cgroup.controllers").write_text("cpuset io memory pids\n")
    assert find_hierarchy(mounts, own, mount_root=tmp_path) is None
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert find_hierarchy(mounts, own, mount_root=tmp_path) == Hierarchy(root, 2, "/user.slice/bo")


def test_v1_cpu_is_chosen_over_a_v2_mount_without_it(tmp_path: Path) -> None:
    (tmp_path / "sys/fs/cgroup/unified").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/unified/cgroup.controllers").write_text("")
    found = find_hierarchy(V1_MOUNTS, V1_OWN, mount_root=tmp_path)
    assert found is not None and found.version == 1


def test_no_cpu_controller_anywhere() -> None:
    mounts = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\nproc /proc proc rw 0 0\n"
    assert find_hierarchy(mounts, "1:memory:/\n") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups are Linux's")
def test_a_group_takes_a_process_weighs_ten_sessions_and_gives_it_back_when_removed() -> None:
    group, why = cpu_group.create(f"{os.getpid()}-test")
    if group is None:
        pytest.skip(f"no cgroup can be made here: {why}")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert group.weight == (10240 if group.version == 1 else 1000)
        assert group.add(child.pid)
        assert group.members() == {child.pid}
        assert group.path.name in Path(f"/proc/{child.pid}/cgroup").read_text()
        group.remove()
        assert not group.path.exists()
        # back in the group it came from, and still running
        assert group.path.name not in Path(f"/proc/{child.pid}/cgroup").read_text()
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
        group.remove()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups are Linux's")
def test_a_group_left_by_a_killed_stack_is_removed_by_the_next() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, why = cpu_group.create(f"{dead.pid}-stale")
    if stale is None:
        pytest.skip(f"no cgroup can be made here: {why}")
    assert stale.path.exists()
    group, _ = cpu_group.create(f"{os.getpid()}-next")
    assert group is not None
    try:
        assert not stale.path.exists()
    finally:
        group.remove()
        stale.remove()
