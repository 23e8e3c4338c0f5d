"""A CPU control group for the intake path when the whole stack shares one machine
(docs/architecture.md, "The intake path and CPU on a shared machine").

With autogroup scheduling the kernel shares the CPU first between sessions as equals:
PostgreSQL's processes are one such group, the stack's processes another. The intake
API's statements run in PostgreSQL's group beside every worker's, and the API itself
shares the stack's group with the bench's client. A cgroup weighted `WEIGHT_FACTOR` times a
session group, holding the API process and the server processes of its connections, is
served first whenever it has work; the rest keep the CPU it leaves.

Linux only, and only where this process may write a cgroup with the `cpu` controller (as
root, or with a delegated subtree): cgroup v1 (`cpu.shares`) or v2 (`cpu.weight`).
Anywhere else `create` says why not, and the stack runs without it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

# Weighed against a session's group (cgroup v1: 1024 shares; v2: weight 100).
WEIGHT_FACTOR = 10
PREFIX = "bo-intake-"


@dataclass(frozen=True)
class Hierarchy:
    """Where the cpu controller is mounted, and this process's cgroup in it."""

    mount: Path
    version: int
    own: str  # this process's cgroup, relative to the mount ("/" for the root)

    @property
    def parent(self) -> Path:
        return self.mount / self.own.lstrip("/")


def find_hierarchy(mounts: str, own_cgroups: str, mount_root: Path = Path("/")) -> Hierarchy | None:
    """The hierarchy of the cpu controller from /proc/self/mounts and /proc/self/cgroup:
    a v1 mount whose options name `cpu`, else a v2 mount whose `cgroup.controllers` does."""
    v2_mount: Path | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mount, fstype, options = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup" and "cpu" in options:
            for entry in own_cgroups.splitlines():
                _, controllers, path = entry.split(":", 2)
                if "cpu" in controllers.split(","):
                    return Hierarchy(mount_root / mount.lstrip("/"), 1, path)
            return Hierarchy(mount_root / mount.lstrip("/"), 1, "/")
        if fstype == "cgroup2" and v2_mount is None:
            v2_mount = mount_root / mount.lstrip("/")
    if v2_mount is not None:
        with contextlib.suppress(OSError):
            if "cpu" in (v2_mount / "cgroup.controllers").read_text().split():
                own = next(
                    (e.split(":", 2)[2] for e in own_cgroups.splitlines() if e.startswith("0::")),
                    "/",
                )
                return Hierarchy(v2_mount, 2, own)
    return None


@dataclass(frozen=True)
class CpuGroup:
    path: Path
    version: int

    def add(self, pid: int) -> bool:
        """Move a process (all its threads) into the group; False if it is gone."""
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except ProcessLookupError:
            return False
        return True

    def members(self) -> set[int]:
        try:
            return {int(p) for p in (self.path / "cgroup.procs").read_text().split()}
        except FileNotFoundError:
            return set()

    @property
    def weight(self) -> int:
        name = "cpu.shares" if self.version == 1 else "cpu.weight"
        return int((self.path / name).read_text())

    def remove(self) -> None:
        """Give any process still in the group back to the parent, then remove it."""
        for _ in range(50):
            members = self.members()
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    (self.path.parent / "cgroup.procs").write_text(f"{pid}\n")
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # a process was still leaving (EBUSY): try again
                continue


def create(name: str, *, factor: int = WEIGHT_FACTOR) -> tuple[CpuGroup | None, str]:
    """A new group under this process's own cgroup, or None and the reason."""
    if not os.path.exists("/proc/self/cgroup"):
        return None, "no cgroups on this system"
    try:
        hierarchy = find_hierarchy(
            Path("/proc/self/mounts").read_text(), Path("/proc/self/cgroup").read_text()
        )
    except OSError as error:
        return None, f"cgroups unreadable ({error})"
    if hierarchy is None:
        return None, "no cgroup hierarchy with the cpu controller"
    _remove_stale(hierarchy.parent)
    path = hierarchy.parent / f"{PREFIX}{name}"
    try:
        if hierarchy.version == 2:
            # Children of this cgroup get the cpu controller (refused where the cgroup
            # holds processes itself and is not the root: then there is no group).
            subtree = hierarchy.parent / "cgroup.subtree_control"
            if "cpu" not in subtree.read_text().split():
                subtree.write_text("+cpu\n")
        path.mkdir(exist_ok=True)
        if hierarchy.version == 1:
            (path / "cpu.shares").write_text(f"{1024 * factor}\n")
        else:
            (path / "cpu.weight").write_text(f"{min(100 * factor, 10_000)}\n")
    except OSError as error:
        with contextlib.suppress(OSError):
            path.rmdir()
        return None, f"cannot make {path} ({error.strerror or error})"
    return CpuGroup(path, hierarchy.version), ""


def _remove_stale(parent: Path) -> None:
    """Groups of stacks whose process is gone (killed before it could remove its own)."""
    with contextlib.suppress(OSError):
        for path in parent.glob(f"{PREFIX}*"):
            owner = path.name.removeprefix(PREFIX).split("-", 1)[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    CpuGroup(path, 0).remove()


def server_processes(pid: int, server_port: int) -> set[int]:
    """The local processes at the other end of `pid`'s TCP connections to `server_port`:
    the database server's processes serving its connections (none if the server is
    elsewhere, or if their processes cannot be seen)."""
    import psutil

    try:
        process = psutil.Process(pid)
        connections = getattr(process, "net_connections", process.connections)(kind="tcp")
        ours = {
            (c.laddr.ip, c.laddr.port, c.raddr.ip, c.raddr.port)
            for c in connections
            if c.raddr and c.raddr.port == server_port
        }
        if not ours:
            return set()
        found = set()
        for c in psutil.net_connections(kind="tcp"):
            if c.pid and c.raddr and (c.raddr.ip, c.raddr.port, c.laddr.ip, c.laddr.port) in ours:
                found.add(c.pid)
        return found - {pid}
    except (psutil.Error, OSError):
        return set()
