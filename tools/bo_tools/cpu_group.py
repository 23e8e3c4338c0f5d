"""A CPU control group for the intake path when the whole stack shares one machine
(docs/architecture.md, "The intake path and CPU on a shared machine").

With autogroup scheduling the kernel shares the CPU first between sessions as equals:
PostgreSQL's processes are one such group, the stack's processes another. The intake
API's statements run in PostgreSQL's group beside every worker's, and the API itself
shares the stack's group with the bench's client. A cgroup weighted `WEIGHT_FACTOR` times a
session's group, holding the API process and the server processes of its connections, is
served first whenever it has work; the rest keep the CPU it leaves.

Linux only, and only where this process may make a child of its own cgroup with the `cpu`
controller: cgroup v1 (`cpu.shares`; as root, or in a delegated subtree) or v2
(`cpu.weight`; where this cgroup's `cgroup.subtree_control` already offers `cpu`: it is
never switched on here). Anywhere else `create` says why not, and the stack runs without.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# Weighed against a session's group (cgroup v1: 1024 shares; v2: weight 100).
WEIGHT_FACTOR = 10
PREFIX = "bo-intake-"


@dataclass(frozen=True)
class Hierarchy:
    """Where the cpu controller is mounted, and this process's cgroup in it."""

    mount: Path  # the mount point
    root: str  # the cgroup the mount shows at its mount point ("/" unless bind-mounted)
    version: int
    own: str  # this process's cgroup in the hierarchy (/proc/self/cgroup)

    def path_of(self, cgroup: str) -> Path | None:
        """Where a cgroup of this hierarchy is under the mount, if the mount shows it."""
        relative = os.path.relpath(cgroup, self.root)
        if relative == ".":
            return self.mount
        if relative == ".." or relative.startswith("../"):
            return None
        return self.mount / relative

    @property
    def parent(self) -> Path | None:
        return self.path_of(self.own)

    def cgroup_of(self, pid: int) -> str | None:
        """A process's cgroup in this hierarchy (None if it is gone)."""
        try:
            entries = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return None
        return _own_cgroup(entries, self.version)


def _own_cgroup(entries: str, version: int) -> str | None:
    for entry in entries.splitlines():
        hierarchy_id, controllers, path = entry.split(":", 2)
        if version == 1 and "cpu" in controllers.split(","):
            return path
        if version == 2 and hierarchy_id == "0" and controllers == "":
            return path
    return None


def find_hierarchy(
    mountinfo: str, own_cgroups: str, mount_root: Path = Path("/")
) -> Hierarchy | None:
    """The hierarchy of the cpu controller from /proc/self/mountinfo and /proc/self/cgroup:
    a v1 mount whose options name `cpu`, else a v2 mount whose `cgroup.controllers` does."""
    v2: list[tuple[Path, str]] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if len(fields) < dash + 4 or dash < 5:
            continue
        root, mount = fields[3], mount_root / fields[4].lstrip("/")
        fstype, options = fields[dash + 1], fields[dash + 3].split(",")
        if fstype == "cgroup" and "cpu" in options:
            own = _own_cgroup(own_cgroups, 1)
            return Hierarchy(mount, root, 1, own or "/")
        if fstype == "cgroup2":
            v2.append((mount, root))
    for mount, root in v2:
        with contextlib.suppress(OSError):
            if "cpu" in (mount / "cgroup.controllers").read_text().split():
                own = _own_cgroup(own_cgroups, 2)
                return Hierarchy(mount, root, 2, own or "/")
    return None


@dataclass
class CpuGroup:
    path: Path
    hierarchy: Hierarchy
    # Where each process added came from, to be given back there.
    came_from: dict[int, Path] = field(default_factory=dict)

    def add(self, pid: int) -> bool:
        """Move a process (all its threads) into the group; False if it is gone."""
        origin = self.hierarchy.cgroup_of(pid)
        if origin is None:
            return False
        where = self.hierarchy.path_of(origin)
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except ProcessLookupError:
            return False
        if where is not None and where != self.path:
            self.came_from[pid] = where
        return True

    def members(self) -> set[int]:
        try:
            return {int(p) for p in (self.path / "cgroup.procs").read_text().split()}
        except FileNotFoundError:
            return set()

    @property
    def weight(self) -> int:
        name = "cpu.shares" if self.hierarchy.version == 1 else "cpu.weight"
        return int((self.path / name).read_text())

    def remove(self, timeout_s: float = 5.0) -> bool:
        """Give every process still in the group back to the cgroup it came from (else to
        the parent), then remove the group. A process that is exiting may stay listed for
        a moment: tried until `timeout_s`. False if the group is still there."""
        deadline = time.monotonic() + timeout_s
        while True:
            for pid in self.members():
                for target in (self.came_from.get(pid), self.path.parent):
                    if target is None:
                        continue
                    try:
                        (target / "cgroup.procs").write_text(f"{pid}\n")
                        break
                    except OSError:  # gone, or that cgroup is gone: the next, or later
                        continue
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:  # still busy: a process was leaving
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)


def _started_at(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, /proc/<pid>/stat field 22): with
    the pid, it names one process for good, where a pid alone is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


_made = itertools.count(1)


def group_name(label: str) -> str:
    """`<pid>.<start time>-<n>-<label>` of this process (n counts the groups it made): a
    later stack can tell whether the stack that made a group is still running."""
    return f"{os.getpid()}.{_started_at(os.getpid())}-{next(_made)}-{label}"


def create(label: str, *, factor: int = WEIGHT_FACTOR) -> tuple[CpuGroup | None, str]:
    """A new group under this process's own cgroup, or None and the reason."""
    try:
        hierarchy = find_hierarchy(
            Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text()
        )
    except OSError as error:
        return None, f"no cgroups to read ({error.strerror or error})"
    if hierarchy is None:
        return None, "no cgroup hierarchy with the cpu controller"
    parent = hierarchy.parent
    if parent is None:
        return None, f"this process's cgroup {hierarchy.own} is not under {hierarchy.mount}"
    if hierarchy.version == 2:
        try:
            offered = (parent / "cgroup.subtree_control").read_text().split()
        except OSError as error:
            return None, f"cannot read {parent / 'cgroup.subtree_control'} ({error.strerror})"
        if "cpu" not in offered:
            return None, f"{parent} does not offer the cpu controller to its children"
    _remove_stale(hierarchy)
    path = parent / f"{PREFIX}{group_name(label)}"
    try:
        path.mkdir()
    except OSError as error:
        return None, f"cannot make {path} ({error.strerror or error})"
    try:
        if hierarchy.version == 1:
            (path / "cpu.shares").write_text(f"{1024 * factor}\n")
        else:
            (path / "cpu.weight").write_text(f"{min(100 * factor, 10_000)}\n")
    except OSError as error:
        with contextlib.suppress(OSError):
            path.rmdir()
        return None, f"cannot make {path} ({error.strerror or error})"
    return CpuGroup(path, hierarchy), ""


def _remove_stale(hierarchy: Hierarchy) -> None:
    """Groups beside this process's own of stacks whose process is gone (killed before it
    could remove its own). A group whose processes this process cannot see (another pid
    namespace) is left."""
    parent = hierarchy.parent
    if parent is None:
        return
    with contextlib.suppress(OSError):
        for path in parent.glob(f"{PREFIX}*"):
            owner = path.name.removeprefix(PREFIX).split("-", 1)[0]
            pid, _, started = owner.partition(".")
            if not pid.isdigit() or _started_at(int(pid)) == started:
                continue
            stale = CpuGroup(path, hierarchy)
            if all(Path(f"/proc/{p}").exists() for p in stale.members()):
                with contextlib.suppress(OSError):
                    stale.remove(timeout_s=1)


Ends = frozenset[tuple[str, int, str, int]]


def _ip(address: str) -> str:
    return address.removeprefix("::ffff:")  # an IPv4 peer of a dual-stack socket


def client_ends(pid: int, server_port: int) -> Ends:
    """`pid`'s TCP connections to `server_port`, as (its address, port, the server's
    address, port)."""
    try:
        import psutil
    except ImportError:
        return frozenset()
    try:
        process = psutil.Process(pid)
        listing = getattr(process, "net_connections", None) or process.connections
        return frozenset(
            (_ip(c.laddr.ip), c.laddr.port, _ip(c.raddr.ip), c.raddr.port)
            for c in listing(kind="tcp")
            if c.raddr and c.raddr.port == server_port
        )
    except (psutil.Error, OSError):
        return frozenset()


def serving(ends: Ends, server_port: int) -> set[int]:
    """The local processes that hold the server's end of these connections, less any that
    listens on the server's port (a postmaster, a proxy or a tunnel listens; a PostgreSQL
    backend does not). Empty if the server is elsewhere or its processes cannot be seen."""
    if not ends:
        return set()
    try:
        import psutil
    except ImportError:
        return set()
    try:
        found: set[int] = set()
        listeners: set[int] = set()
        for c in psutil.net_connections(kind="tcp"):
            if not c.pid:
                continue
            if c.status == psutil.CONN_LISTEN and c.laddr.port == server_port:
                listeners.add(c.pid)
            elif c.raddr and (_ip(c.raddr.ip), c.raddr.port, _ip(c.laddr.ip), c.laddr.port) in ends:
                found.add(c.pid)
        return found - listeners
    except (psutil.Error, OSError, RuntimeError):  # RuntimeError: an unreadable /proc/net
        return set()
