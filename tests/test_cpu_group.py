"""The intake's CPU group (bo_tools.cpu_group): which hierarchy holds the cpu controller,
and a real group that takes processes in and gives them back when removed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from bo_tools import cpu_group
from bo_tools.cpu_group import Hierarchy, find_hierarchy

# /proc/self/mountinfo of a machine with cgroup v1 (cpu apart) and an empty v2 mount
V1_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_OWN = "4:memory:/process_api/x\n2:cpuacct:/\n1:cpu:/ci/job\n0::/\n"


def test_v1_the_mount_whose_options_name_cpu_and_this_process_s_cgroup_in_it() -> None:
    found = find_hierarchy(V1_MOUNTS, V1_OWN)
    assert found == Hierarchy(Path("/sys/fs/cgroup/cpu"), "/", 1, "/ci/job")
    assert found.parent == Path("/sys/fs/cgroup/cpu/ci/job")
    # cpu and cpuacct mounted together
    joint = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    found = find_hierarchy(joint, "3:cpu,cpuacct:/\n")
    assert found == Hierarchy(Path("/sys/fs/cgroup/cpu,cpuacct"), "/", 1, "/")
    assert found.parent == Path("/sys/fs/cgroup/cpu,cpuacct")


def test_a_mount_that_shows_a_subtree_is_not_joined_twice() -> None:
    # A container's bind mount shows /docker/abc at the mount point, and its processes'
    # cgroup is /docker/abc: the group goes under the mount point itself.
    mounts = "50 40 0:29 /docker/abc /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu\n"
    found = find_hierarchy(mounts, "1:cpu:/docker/abc\n")
    assert found is not None
    assert found.parent == Path("/sys/fs/cgroup/cpu")
    assert found.path_of("/docker/abc/job") == Path("/sys/fs/cgroup/cpu/job")
    # A cgroup outside what the mount shows has no path.
    assert found.path_of("/") is None
    assert found.path_of("/docker/abd") is None


def test_v2_only_where_the_cpu_controller_is_offered(tmp_path: Path) -> None:
    root = tmp_path / "sys/fs/cgroup"
    root.mkdir(parents=True)
    mounts = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    own = "0::/user.slice/bo\n"
    (root / "cgroup.controllers").write_text("cpuset io memory pids\n")
    assert find_hierarchy(mounts, own, mount_root=tmp_path) is None
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    found = find_hierarchy(mounts, own, mount_root=tmp_path)
    assert found == Hierarchy(root, "/", 2, "/user.slice/bo")
    assert found.parent == root / "user.slice/bo"


def test_v1_cpu_is_chosen_over_a_v2_mount_without_it(tmp_path: Path) -> None:
    (tmp_path / "sys/fs/cgroup/unified").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/unified/cgroup.controllers").write_text("")
    found = find_hierarchy(V1_MOUNTS, V1_OWN, mount_root=tmp_path)
    assert found is not None and found.version == 1


def test_no_cpu_controller_anywhere() -> None:
    mounts = (
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
    )
    assert find_hierarchy(mounts, "1:memory:/\n") is None


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups")


def _cpu_cgroup(pid: int, version: int) -> str | None:
    return cpu_group._own_cgroup(Path(f"/proc/{pid}/cgroup").read_text(), version)


@linux_only
def test_a_group_takes_a_process_weighs_ten_sessions_and_gives_it_back_when_removed() -> None:
    group, why = cpu_group.create("test")
    if group is None:
        pytest.skip(f"no cgroup can be made here: {why}")
    version = group.hierarchy.version
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = _cpu_cgroup(child.pid, version)
        assert group.path.name.startswith(f"bo-intake-{os.getpid()}.")
        assert group.weight == (10240 if version == 1 else 1000)
        assert group.add(child.pid)
        assert group.members() == {child.pid}
        assert _cpu_cgroup(child.pid, version) != before
        assert group.remove()
        assert not group.path.exists()
        # back in the cgroup it came from, and still running
        assert _cpu_cgroup(child.pid, version) == before
        assert child.poll() is None
        # ... also when that is not this process's own cgroup
        first, _ = cpu_group.create("first")
        second, _ = cpu_group.create("second")
        assert first is not None and second is not None
        assert first.path != second.path
        try:
            first.add(child.pid)
            second.add(child.pid)
            assert second.remove()
            assert first.members() == {child.pid}
        finally:
            second.remove()
            first.remove()
    finally:
        child.kill()
        child.wait()
        group.remove()


def test_the_server_s_processes_are_those_at_the_other_end_and_never_a_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    psutil = pytest.importorskip("psutil")
    addr = namedtuple("addr", "ip port")
    conn = namedtuple("conn", "laddr raddr status pid")

    def tcp(
        pid: int, local: tuple[str, int], remote: tuple[str, int] | None, status: str
    ) -> object:
        return conn(addr(*local), addr(*remote) if remote else (), status, pid)

    ends = frozenset(
        {("127.0.0.1", 40001, "127.0.0.1", 5432), ("127.0.0.1", 40002, "127.0.0.1", 5432)}
    )
    table = [
        tcp(10, ("127.0.0.1", 5432), None, psutil.CONN_LISTEN),  # the postmaster
        tcp(11, ("127.0.0.1", 5432), ("127.0.0.1", 40001), psutil.CONN_ESTABLISHED),
        tcp(12, ("::ffff:127.0.0.1", 5432), ("::ffff:127.0.0.1", 40002), psutil.CONN_ESTABLISHED),
        tcp(
            13, ("127.0.0.1", 5432), ("127.0.0.1", 40003), psutil.CONN_ESTABLISHED
        ),  # another client's
        # a proxy that listens and holds the other end of one of ours
        tcp(20, ("0.0.0.0", 5432), None, psutil.CONN_LISTEN),
        tcp(20, ("127.0.0.1", 5432), ("127.0.0.1", 40001), psutil.CONN_ESTABLISHED),
        tcp(30, ("127.0.0.1", 40001), ("127.0.0.1", 5432), psutil.CONN_ESTABLISHED),  # the API
    ]
    monkeypatch.setattr(psutil, "net_connections", lambda kind="inet": table)
    assert cpu_group.serving(ends, 5432) == {11, 12}
    assert cpu_group.serving(frozenset(), 5432) == set()


@linux_only
def test_a_group_left_by_a_killed_stack_is_removed_by_the_next_and_a_live_one_is_kept() -> None:
    mine, why = cpu_group.create("live")
    if mine is None:
        pytest.skip(f"no cgroup can be made here: {why}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # A group named for a process that has exited, and one for a pid now used by a process
    # started after the one that made it.
    stale = mine.path.parent / f"{cpu_group.PREFIX}{dead.pid}.1-stale"
    reused = mine.path.parent / f"{cpu_group.PREFIX}{os.getpid()}.1-reused"
    stale.mkdir()
    reused.mkdir()
    group, _ = cpu_group.create("next")
    assert group is not None
    try:
        assert not stale.exists()
        assert not reused.exists()
        assert mine.path.exists()
    finally:
        group.remove()
        mine.remove()
        for path in (stale, reused):
            if path.exists():
                path.rmdir()
