"""The cores this process may use, and how much of them other programs keep busy (Linux).

What ``--threads auto`` (charrnn/threads.py) starts from and watches: the CPU affinity
(``taskset``, a scheduler's cpuset), capped by a container's CPU quota (cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us``), shared among torchrun's processes on a node; and the busy time of those
CPUs that is not this process's own. Everything here only reads files; nothing changes threads.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """The cores this process may use: its affinity, capped by its cgroup's CPU quota (rounded up)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # macOS, Windows: no affinity to read
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    return max(1, cores)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The CPU quota in cores of this process's cgroup and its ancestors (the tightest), or None.

    cgroup v2 writes "QUOTA PERIOD" (or "max PERIOD") to ``cpu.max``; v1 writes the two numbers
    to ``cpu.cfs_quota_us`` (-1: none) and ``cpu.cfs_period_us``. Inside a container the root is
    usually the container's own cgroup, so the root's files are read as well as the listed path's.
    """
    quotas = []
    for directory in _cgroup_directories(cgroup_root, proc_self_cgroup):
        quota = _read_quota(directory)
        if quota is not None:
            quotas.append(quota)
    return min(quotas) if quotas else None


def _cgroup_directories(root: Path, proc_self_cgroup: Path) -> list[Path]:
    """The cgroup directories that may hold this process's CPU limits: its own, its ancestors, the root."""
    relative: list[str] = []
    try:
        for line in proc_self_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "" or "cpu" in controllers.split(","):  # v2's one line, or v1's cpu line
                relative.append(path)
    except (OSError, ValueError):
        pass
    bases = [root, root / "cpu", root / "cpu,cpuacct"]
    directories: list[Path] = []
    for base in bases:
        for path in relative:
            parts = [part for part in path.split("/") if part]
            directories += [base.joinpath(*parts[:depth]) for depth in range(len(parts), 0, -1)]
        directories.append(base)
    return directories


def _read_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


class OtherLoad:
    """How many of this process's cores other programs kept busy since the last call (Linux).

    The busy time of the CPUs this process may run on (``/proc/stat``) less this process's own
    CPU time, over the wall time between calls: 1.0 means another program held one core the whole
    time. None where that cannot be read (another system, an unreadable file, a first call).
    """

    def __init__(self, cpus: set[int] | None = None, stat: Path = Path("/proc/stat")):
        if cpus is None and hasattr(os, "sched_getaffinity"):
            cpus = set(os.sched_getaffinity(0))
        self.cpus, self.stat = cpus, stat
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        """(wall seconds, busy seconds of our CPUs, this process's CPU seconds), or None."""
        if not self.cpus:
            return None
        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cpus:
                numbers = [int(field) for field in fields[:8]]  # user nice system idle iowait irq softirq steal
                busy += sum(numbers) - numbers[3] - numbers[4]
        return time.perf_counter(), busy / self.tick, time.process_time()

    def __call__(self) -> float | None:
        now, last = self._read(), self._last
        self._last = now
        if now is None or last is None or now[0] - last[0] < 0.05:
            return None
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0]))


def cores_for_this_process() -> int:
    """``usable_cores``, shared among torchrun's processes on this node; outside torchrun, capped by
    an ``OMP_NUM_THREADS`` the user set (torchrun sets it to 1 for every process on its own)."""
    cores = usable_cores()
    processes_here = os.environ.get("LOCAL_WORLD_SIZE")  # set by torchrun
    if processes_here and processes_here.isdigit() and int(processes_here) > 0:
        return max(1, cores // int(processes_here))
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(cap)) if cap.isdigit() and int(cap) > 0 else cores
